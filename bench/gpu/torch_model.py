#!/usr/bin/env python3
"""A PyTorch twin of sophia-rl's embedded vision-language model (native/cpu/model.cpp, nn.cpp).

Same architecture, parameter names, shapes and conventions as the native model, so a checkpoint
folder (config.json + model.safetensors) loads as it is:
  vision   image [C, S, S] - 0.5 -> P x P patches (row-major over the grid; channel, y, x inside a
           patch) -> linear patch embedding + learned 2-D position [g, g, dim] -> bidirectional
           blocks (visionHeads heads, no rotary positions) -> RMSNorm -> linear projector
  decoder  token embedding, the `<image>` positions of a sequence with an image take that image's
           visual tokens in order; pre-norm blocks: RMSNorm -> causal grouped-query attention with
           rotary positions (interleaved pairs (2i, 2i+1), positions restart at 0 in every packed
           sequence, query head h reads kv head h // (heads / kvHeads)) -> residual -> RMSNorm ->
           SwiGLU -> residual; final RMSNorm on the requested rows only
  heads    LM head (the token embedding when tied) with the `<image>` logit set to -inf, or the
           reward head: sigmoid(score.w . h + score.b) on each sequence's last token
  RMSNorm  x * w / sqrt(mean(x^2) + eps)
Packed sequences never attend across each other: they are laid out on a padded [B, T] grid.

Modes:
  --check CASE.json [...]  forward and gradients of L = sum(out * R) in float64 on the CPU against a
                           case from bench/gpu/dump_model_case.mjs (the native CPU model); exits 1
                           when logits differ by more than 1e-4 or a gradient by more than 1e-3
                           (max |twin - native| / max |native| per tensor)
  --bench                  training and sampling throughput and MFU on the benchmark's batch shapes
                           (bench/gpu/model_parity.cu, the default case), eager and torch.compile
Works with torch 1.13 (no torch.compile, no scaled_dot_product_attention) and torch 2.x.
"""
import argparse
import base64
import json
import math
import os
import platform
import random
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Configuration and parameter layout (native/include/sophia/model.h, layout() in model.cpp)

DEFAULT_CONFIG = {
    "vocab": 104, "dim": 192, "layers": 4, "heads": 6, "kvHeads": 2, "ffn": 512, "context": 256,
    "imageSize": 32, "channels": 3, "patch": 8, "visionLayers": 2, "visionHeads": 6, "visionFfn": 512,
    "tieEmbeddings": True, "rewardHead": False, "ropeTheta": 10000.0, "normEps": 1e-5, "imageToken": 3,
}
CHECKPOINT_FORMAT = "sophia-rl-model"


class Config:
    """The model configuration: DEFAULT_CONFIG overridden by `fields` (as lib/model/config.ts
    resolves it: kvHeads follows heads when only heads is given)."""

    def __init__(self, fields=None):
        fields = dict(fields or {})
        unknown = sorted(set(fields) - set(DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"model config: unknown fields {unknown}")
        merged = dict(DEFAULT_CONFIG)
        if "heads" in fields and "kvHeads" not in fields:
            merged["kvHeads"] = fields["heads"]
        merged.update(fields)
        for k, v in merged.items():
            setattr(self, k, type(DEFAULT_CONFIG[k])(v))
        self.validate()

    def as_dict(self):
        return {k: getattr(self, k) for k in DEFAULT_CONFIG}

    @property
    def head_dim(self):
        return self.dim // self.heads

    @property
    def kv_dim(self):
        return self.kvHeads * self.head_dim

    @property
    def grid(self):
        return self.imageSize // self.patch if self.imageSize > 0 else 0

    @property
    def visual_tokens(self):
        return self.grid * self.grid

    @property
    def patch_dim(self):
        return self.channels * self.patch * self.patch

    def validate(self):
        def need(ok, field, msg):
            if not ok:
                raise ValueError(f"model config: {field} {msg}")

        need(self.dim % self.heads == 0, "dim", f"must be a multiple of heads ({self.heads})")
        need(self.heads % self.kvHeads == 0, "kvHeads", f"must divide heads ({self.heads})")
        need(self.head_dim % 2 == 0, "dim", "/ heads must be even for rotary positions")
        if self.imageSize > 0:
            need(self.imageSize % self.patch == 0, "imageSize", f"must be a multiple of patch ({self.patch})")
            need(self.dim % self.visionHeads == 0, "visionHeads", f"must divide dim ({self.dim})")
            need(self.visual_tokens < self.context, "context", "must exceed the visual tokens per image")
        need(0 <= self.imageToken < self.vocab, "imageToken", "must be a token id in [0, vocab)")


def layout(c):
    """[(name, shape, decay)] in the order of the native flat parameter buffer."""
    out = []

    def block(prefix, heads, kv_heads, ffn):
        d = c.dim
        kv = kv_heads * (d // heads)
        out.extend([
            (prefix + "norm1", [d], False),
            (prefix + "attn.wq", [d, d], True),
            (prefix + "attn.wk", [kv, d], True),
            (prefix + "attn.wv", [kv, d], True),
            (prefix + "attn.wo", [d, d], True),
            (prefix + "norm2", [d], False),
            (prefix + "mlp.w_gate", [ffn, d], True),
            (prefix + "mlp.w_up", [ffn, d], True),
            (prefix + "mlp.w_down", [d, ffn], True),
        ])

    out.append(("tok_emb", [c.vocab, c.dim], True))
    if c.imageSize > 0:
        out.append(("vis.patch.w", [c.dim, c.patch_dim], True))
        out.append(("vis.patch.b", [c.dim], False))
        out.append(("vis.pos", [c.grid, c.grid, c.dim], False))
        for i in range(c.visionLayers):
            block(f"vis.blocks.{i}.", c.visionHeads, c.visionHeads, c.visionFfn)
        out.append(("vis.norm", [c.dim], False))
        out.append(("vis.proj.w", [c.dim, c.dim], True))
        out.append(("vis.proj.b", [c.dim], False))
    for i in range(c.layers):
        block(f"blocks.{i}.", c.heads, c.kvHeads, c.ffn)
    out.append(("norm", [c.dim], False))
    if c.rewardHead:
        out.append(("score.w", [1, c.dim], False))
        out.append(("score.b", [1], False))
    elif not c.tieEmbeddings:
        out.append(("lm_head", [c.vocab, c.dim], True))
    return out


# ---------------------------------------------------------------------------------------------
# Layers

HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(pos, head_dim, theta, dtype):
    """cos and sin [N, 1, head_dim / 2] for integer positions pos [N]; frequency i is theta^(-2i/hd)."""
    i = torch.arange(head_dim // 2, dtype=torch.float64, device=pos.device)
    angle = pos.to(torch.float64)[:, None] * theta ** (-2.0 * i / head_dim)[None, :]
    return angle.cos().to(dtype)[:, None, :], angle.sin().to(dtype)[:, None, :]


def apply_rope(x, cos, sin):
    """Rotates the pairs (x[2i], x[2i+1]) of x [N, heads, head_dim] by the angles of cos/sin."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Packing:
    """Packed sequences (sequence b owns rows starts[b] .. starts[b+1]-1) laid out on a padded
    [B, T] grid for batched attention, and each row's position within its sequence. Built once per
    batch on the host, so the forward pass has static shapes and no host synchronisation."""

    def __init__(self, starts, causal, device):
        lengths = [b - a for a, b in zip(starts[:-1], starts[1:])]
        self.B, self.T, self.N = len(lengths), max(lengths), starts[-1]
        self.causal = causal
        self.lengths = lengths
        slot, pos = [], []
        for b, (a, n) in enumerate(zip(starts[:-1], lengths)):
            slot.extend(range(b * self.T, b * self.T + n))
            pos.extend(range(n))
        self.dense = self.N == self.B * self.T  # equal lengths: the grid is a view of the rows
        self.slot = torch.tensor(slot, dtype=torch.long, device=device)
        self.pos = torch.tensor(pos, dtype=torch.long, device=device)
        self.key_valid = None  # bidirectional attention over unequal lengths must not see padding
        if not causal and not self.dense:
            valid = torch.zeros(self.B * self.T, dtype=torch.bool, device=device)
            valid[self.slot] = True
            self.key_valid = valid.view(self.B, 1, 1, self.T)

    def to_grid(self, x):
        """[N, h, hd] -> [B, h, T, hd] (padding rows are zeros)."""
        h, hd = x.shape[1], x.shape[2]
        if not self.dense:
            x = x.new_zeros(self.B * self.T, h, hd).index_copy(0, self.slot, x)
        return x.view(self.B, self.T, h, hd).transpose(1, 2)

    def from_grid(self, g):
        """[B, h, T, hd] -> [N, h, hd]."""
        x = g.transpose(1, 2).reshape(self.B * self.T, g.shape[1], g.shape[3])
        return x if self.dense else x.index_select(0, self.slot)

    def attend(self, q, k, v):
        """softmax(q k^T / sqrt(hd)) v within each sequence; q [N, H, hd], k and v [N, Hkv, hd]."""
        group = q.shape[1] // k.shape[1]
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        qg, kg, vg = self.to_grid(q), self.to_grid(k), self.to_grid(v)
        if HAVE_SDPA:
            out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=self.key_valid, is_causal=self.causal)
        else:
            scores = qg @ kg.transpose(-1, -2) / math.sqrt(q.shape[-1])
            if self.causal:
                future = torch.ones(self.T, self.T, dtype=torch.bool, device=q.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            if self.key_valid is not None:
                scores = scores.masked_fill(~self.key_valid, float("-inf"))
            out = scores.softmax(-1) @ vg
        # Padding query rows (causal case) see only real keys or zero padding: finite, then dropped.
        return self.from_grid(out)


def param(*shape):
    return nn.Parameter(torch.empty(*shape))


class Affine(nn.Module):
    """y = x w^T + b with w [out, in], b [out] (the native matmul_forward with a bias)."""

    def __init__(self, out_features, in_features):
        super().__init__()
        self.w = param(out_features, in_features)
        self.b = param(out_features)

    def forward(self, x):
        return torch.addmm(self.b, x, self.w.t())


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.wq = param(dim, dim)
        self.wk = param(kv_heads * self.head_dim, dim)
        self.wv = param(kv_heads * self.head_dim, dim)
        self.wo = param(dim, dim)

    def qkv(self, x, rope):
        n = x.shape[0]
        q = (x @ self.wq.t()).view(n, self.heads, self.head_dim)
        k = (x @ self.wk.t()).view(n, self.kv_heads, self.head_dim)
        v = (x @ self.wv.t()).view(n, self.kv_heads, self.head_dim)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def forward(self, x, packing, rope, kv_out=None):
        q, k, v = self.qkv(x, rope)
        if kv_out is not None:
            kv_out.append((k, v))
        return packing.attend(q, k, v).reshape(x.shape[0], -1) @ self.wo.t()

    def decode(self, x, rope, cache_k, cache_v, pos, span):
        """One new token per stream: x [S, dim] at positions pos [S]; cache_k/v [S, context, Hkv, hd]
        get this step's keys and values, then each stream attends to its first pos + 1 entries
        (span >= max(pos) + 1 of the cache is read)."""
        s = x.shape[0]
        q, k, v = self.qkv(x, rope)
        streams = torch.arange(s, device=x.device)
        cache_k[streams, pos] = k
        cache_v[streams, pos] = v
        group = self.heads // self.kv_heads
        keys, values = cache_k[:, :span], cache_v[:, :span]  # [S, U, Hkv, hd]
        qg = q.view(s, self.kv_heads, group, self.head_dim)
        scores = torch.einsum("skgd,sukd->skgu", qg, keys) / math.sqrt(self.head_dim)
        later = torch.arange(span, device=x.device)[None, :] > pos[:, None]  # [S, U]
        scores = scores.masked_fill(later[:, None, None, :], float("-inf"))
        out = torch.einsum("skgu,sukd->skgd", scores.softmax(-1), values)
        return out.reshape(s, -1) @ self.wo.t()


class SwiGLU(nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.w_gate = param(ffn, dim)
        self.w_up = param(ffn, dim)
        self.w_down = param(dim, ffn)

    def forward(self, x):
        return (F.silu(x @ self.w_gate.t()) * (x @ self.w_up.t())) @ self.w_down.t()


class Block(nn.Module):
    """Pre-norm transformer block (parameter order as in the native layout)."""

    def __init__(self, dim, heads, kv_heads, ffn, eps):
        super().__init__()
        self.eps = eps
        self.norm1 = param(dim)
        self.attn = Attention(dim, heads, kv_heads)
        self.norm2 = param(dim)
        self.mlp = SwiGLU(dim, ffn)

    def forward(self, x, packing, rope, kv_out=None):
        x = x + self.attn(rms_norm(x, self.norm1, self.eps), packing, rope, kv_out)
        return x + self.mlp(rms_norm(x, self.norm2, self.eps))

    def decode(self, x, rope, cache_k, cache_v, pos, span):
        x = x + self.attn.decode(rms_norm(x, self.norm1, self.eps), rope, cache_k, cache_v, pos, span)
        return x + self.mlp(rms_norm(x, self.norm2, self.eps))


class VisionTower(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.patch = Affine(c.dim, c.patch_dim)
        self.pos = param(c.grid, c.grid, c.dim)
        self.blocks = nn.ModuleList(Block(c.dim, c.visionHeads, c.visionHeads, c.visionFfn, c.normEps) for _ in range(c.visionLayers))
        self.norm = param(c.dim)
        self.proj = Affine(c.dim, c.dim)

    def patches(self, pixels):
        """[I, C, S, S] in [0, 1] -> [I * g * g, C * P * P], centred on 0."""
        c, n = self.c, pixels.shape[0]
        g, p = c.grid, c.patch
        x = (pixels - 0.5).reshape(n, c.channels, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n * g * g, c.patch_dim)

    def forward(self, pixels, packing):
        c, n = self.c, pixels.shape[0]
        x = self.patch(self.patches(pixels))
        x = (x.view(n, c.visual_tokens, c.dim) + self.pos.view(1, c.visual_tokens, c.dim)).view(n * c.visual_tokens, c.dim)
        for blk in self.blocks:
            x = blk(x, packing, None)
        return self.proj(rms_norm(x, self.norm, c.normEps))


class Batch:
    """A packed batch on a device (the native model::Batch), with the indices forward() needs.
    rows: the LM head's logit rows (row r predicts the token at r + 1); a reward model reads each
    sequence's last row instead."""

    def __init__(self, c, tokens, starts, pixels=None, image_of=None, rows=None, device="cpu", dtype=torch.float32):
        tokens, starts = [int(t) for t in tokens], [int(s) for s in starts]
        n, nseq, nv = len(tokens), len(starts) - 1, c.visual_tokens
        if starts[0] != 0 or starts[-1] != n or any(b <= a for a, b in zip(starts[:-1], starts[1:])):
            raise ValueError("seqStarts must rise strictly from 0 to the number of tokens")
        self.tokens = torch.tensor(tokens, dtype=torch.long, device=device)
        self.starts = starts
        self.num_tokens = n
        self.dec = Packing(starts, causal=True, device=device)
        self.rope = rope_tables(self.dec.pos, c.head_dim, c.ropeTheta, dtype)
        self.images = 0
        if image_of is not None and pixels is not None and any(i >= 0 for i in image_of):
            self.images = int(pixels.shape[0])
            img_row = [-1] * n
            for q in range(nseq):
                if image_of[q] < 0:
                    continue
                j = 0
                for r in range(starts[q], starts[q + 1]):
                    if tokens[r] == c.imageToken:
                        img_row[r] = image_of[q] * nv + j
                        j += 1
                if j != nv:
                    raise ValueError(f"sequence {q} has an image and {j} <image> tokens, not {nv}")
            self.pixels = pixels.to(device=device, dtype=dtype)
            self.is_image = torch.tensor([r >= 0 for r in img_row], dtype=torch.bool, device=device)[:, None]
            self.image_row = torch.tensor([max(r, 0) for r in img_row], dtype=torch.long, device=device)
            self.vis = Packing([i * nv for i in range(self.images + 1)], causal=False, device=device)
        if c.rewardHead:
            rows = [s - 1 for s in starts[1:]]
        if rows is None or len(rows) == 0:
            raise ValueError("rows: the LM head needs at least one logit row")
        self.rows = torch.tensor([int(r) for r in rows], dtype=torch.long, device=device)
        self.seq_lengths = self.dec.lengths


class VisionLanguageModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.tok_emb = param(c.vocab, c.dim)
        if c.imageSize > 0:
            self.vis = VisionTower(c)
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.kvHeads, c.ffn, c.normEps) for _ in range(c.layers))
        self.norm = param(c.dim)
        if c.rewardHead:
            self.score = Affine(1, c.dim)
        elif not c.tieEmbeddings:
            self.lm_head = param(c.vocab, c.dim)
        image_logit = torch.zeros(c.vocab, dtype=torch.bool)
        if c.imageSize > 0:
            image_logit[c.imageToken] = True  # never predicted: a sampled one has no visual tokens
        self.register_buffer("image_logit", image_logit, persistent=False)
        got = {name: list(p.shape) for name, p in self.named_parameters()}
        want = {name: shape for name, shape, _ in layout(c)}
        if got != want:
            raise AssertionError(f"parameters differ from the native layout: {got} vs {want}")
        self.init_weights()

    def layout_parameters(self):
        """[(name, parameter)] in the native layout's order (named_parameters() lists a module's
        own parameters before its children's, which is not that order)."""
        params = dict(self.named_parameters())
        return [(name, params[name]) for name, _, _ in layout(self.c)]

    def init_weights(self, generator=None):
        """The native scheme (not its random stream): N(0, 0.02) matrices, residual projections
        0.02 / sqrt(2 layers), norms 1, biases and the reward head 0."""
        resid = 0.02 / math.sqrt(2 * self.c.layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name:
                    p.fill_(1.0)
                elif name.endswith(".b") or name.startswith("score."):
                    p.zero_()
                else:
                    sd = resid if ("attn.wo" in name or "mlp.w_down" in name) else 0.02
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * sd)

    def head_weight(self):
        return self.tok_emb if self.c.tieEmbeddings else self.lm_head

    def embed(self, b):
        x = F.embedding(b.tokens, self.tok_emb)
        if b.images > 0:
            visual = self.vis(b.pixels, b.vis)
            x = torch.where(b.is_image, visual.index_select(0, b.image_row), x)
        return x

    def forward(self, b, kv_out=None):
        """LM head: logits [rows, vocab]. Reward head: score logits [sequences] (scores = sigmoid).
        kv_out: a list that receives each decoder layer's (k, v) [N, kvHeads, hd], rotated."""
        x = self.embed(b)
        for blk in self.blocks:
            x = blk(x, b.dec, b.rope, kv_out)
        h = rms_norm(x.index_select(0, b.rows), self.norm, self.c.normEps)
        if self.c.rewardHead:
            return self.score(h).squeeze(-1)
        return (h @ self.head_weight().t()).masked_fill(self.image_logit, float("-inf"))

    @torch.no_grad()
    def generate(self, b, samples, max_new, temperature=1.0, generator=None, eos=None):
        """Samples `samples` streams per prompt (stream s = p * samples + g) with a KV cache: one
        prompt pass whose keys and values seed every stream's cache, then one token per stream and
        step. b.rows must be each prompt's last row. Returns tokens [S, max_new], their log-probs
        under the temperature-scaled distribution, and lengths [S] (eos stops a stream; None: never)."""
        c, dev = self.c, b.tokens.device
        S = (len(b.starts) - 1) * samples
        if max(b.seq_lengths) + max_new > c.context:
            raise ValueError("prompt + max_new exceeds the context")
        prompt_len = torch.tensor(b.seq_lengths, device=dev).repeat_interleave(samples)
        kv = []
        logits = self.forward(b, kv).repeat_interleave(samples, dim=0)
        dtype, T = logits.dtype, b.dec.T
        cache = []
        for k, v in kv:  # each prompt's rows -> the first entries of its streams' caches
            shape = (S, c.context, c.kvHeads, c.head_dim)
            ck, cv = torch.zeros(shape, dtype=dtype, device=dev), torch.zeros(shape, dtype=dtype, device=dev)
            ck[:, :T] = b.dec.to_grid(k).transpose(1, 2).repeat_interleave(samples, dim=0)
            cv[:, :T] = b.dec.to_grid(v).transpose(1, 2).repeat_interleave(samples, dim=0)
            cache.append((ck, cv))
        out = torch.zeros(S, max_new, dtype=torch.long, device=dev)
        out_logp = torch.zeros(S, max_new, dtype=dtype, device=dev)
        alive = torch.ones(S, dtype=torch.bool, device=dev)
        lengths = torch.zeros(S, dtype=torch.long, device=dev)
        for step in range(max_new):
            logp_all = torch.log_softmax(logits / temperature, dim=-1)
            tok = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
            out[:, step] = torch.where(alive, tok, torch.zeros_like(tok))
            out_logp[:, step] = torch.where(alive, logp_all.gather(-1, tok[:, None]).squeeze(-1), torch.zeros_like(logits[:, 0]))
            lengths += alive.long()
            if eos is not None:
                alive = alive & (tok != eos)
            if step + 1 == max_new:
                break
            # Every stream steps (a finished one computes and is ignored): fixed shapes, no syncs.
            pos = prompt_len + step
            x = F.embedding(tok, self.tok_emb)
            rope = rope_tables(pos, c.head_dim, c.ropeTheta, dtype)
            span = T + step + 1
            for blk, (ck, cv) in zip(self.blocks, cache):
                x = blk.decode(x, rope, ck, cv, pos, span)
            logits = (rms_norm(x, self.norm, c.normEps) @ self.head_weight().t()).masked_fill(self.image_logit, float("-inf"))
        return out, out_logp, lengths


# ---------------------------------------------------------------------------------------------
# Checkpoints (lib/model/checkpoint.ts): config.json + model.safetensors

SAFE_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}


def read_safetensors(path):
    """{name: tensor} from a safetensors file: an 8-byte little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw little-endian data."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a valid safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: not a valid safetensors file (header length {n} past the end)")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFE_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"]) if info["shape"] else 1
        if end - begin != count * torch.empty((), dtype=dtype).element_size() or end > len(data):
            raise ValueError(f"{path}: tensor {name} has data_offsets {begin}..{end} that do not fit its shape {info['shape']}")
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if count else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def read_config_file(path):
    """A Config from a checkpoint's config.json ({format, kind, model}) or a bare model config."""
    with open(path) as f:
        raw = json.load(f)
    if "format" in raw:
        if raw["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: format must be {CHECKPOINT_FORMAT!r}, got {raw['format']!r}")
        c = Config(raw["model"])
        if c.rewardHead != (raw.get("kind") == "reward"):
            raise ValueError(f"{path}: kind {raw.get('kind')!r} disagrees with rewardHead = {c.rewardHead}")
        return c
    return Config(raw)


def load_weights(model, path):
    """Copies model.safetensors into the model, checking names, shapes and dtypes."""
    tensors = read_safetensors(path)
    params = dict(model.named_parameters())
    missing = [n for n in params if n not in tensors]
    extra = [n for n in tensors if n not in params]
    if missing or extra:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unexpected tensors {extra[:5]}")
    with torch.no_grad():
        for name, p in params.items():
            t = tensors[name]
            if list(t.shape) != list(p.shape) or t.dtype != torch.float32:
                raise ValueError(f"{path}: {name} is {t.dtype} {list(t.shape)}, expected float32 {list(p.shape)}")
            p.copy_(t)
    return tensors


def load_checkpoint(folder, device="cpu", dtype=torch.float32):
    c = read_config_file(os.path.join(folder, "config.json"))
    model = VisionLanguageModel(c)
    load_weights(model, os.path.join(folder, "model.safetensors"))
    return model.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# --check: against a case dumped from the native CPU model

def decode_f32(field):
    """{dtype: 'f32', shape, base64} -> float32 tensor."""
    if field["dtype"] != "f32":
        raise ValueError(f"unsupported array dtype {field['dtype']}")
    return torch.frombuffer(bytearray(base64.b64decode(field["base64"])), dtype=torch.float32).reshape(field["shape"]).clone()


def rel_diff(twin, ref):
    """(max |twin - ref|, max |ref| over finite ref, their ratio); equal entries (the masked -inf
    logits included) count as no difference, like bench/gpu/model_parity.cu's diff()."""
    twin, ref = twin.double().flatten(), ref.double().flatten()
    same = twin == ref
    d = (twin - ref).abs().masked_fill(same, 0.0)
    max_d = float(d.max()) if d.numel() else 0.0
    if math.isnan(max_d):
        max_d = math.inf
    finite = ref[torch.isfinite(ref)]
    max_ref = float(finite.abs().max()) if finite.numel() else 0.0
    rel = max_d / max_ref if max_ref > 0 else (math.inf if max_d > 0 else 0.0)
    return max_d, max_ref, rel


def check_case(path, out_tol=1e-4, grad_tol=1e-3):
    with open(path) as f:
        case = json.load(f)
    c = Config(case["config"])
    kind = "reward model" if c.rewardHead else "policy"
    print(f"== {path}: {kind}, dim {c.dim}, layers {c.layers}, heads {c.heads}/{c.kvHeads}, vision {c.visionLayers} x {c.visionHeads} heads, "
          f"image {c.imageSize}/{c.patch}; {case.get('made', '')}")
    failures = []
    # The tensor table must be the native one, entry by entry.
    offset, want = 0, []
    for name, shape, decay in layout(c):
        size = math.prod(shape)
        want.append({"name": name, "shape": shape, "offset": offset, "size": size, "decay": decay})
        offset += size
    if want != case["tensors"]:
        first = next((i for i, (a, b) in enumerate(zip(want, case["tensors"])) if a != b), min(len(want), len(case["tensors"])))
        got = case["tensors"][first] if first < len(case["tensors"]) else None
        print(f"  tensor table differs at entry {first}: twin {want[first] if first < len(want) else None}, native {got}")
        failures.append("tensor table")
    else:
        print(f"  tensor table: {len(want)} tensors, {offset} parameters, names/shapes/offsets/decay identical")

    flat = decode_f32(case["params"])
    model = VisionLanguageModel(c).double()
    with torch.no_grad():
        for t, (name, p) in zip(case["tensors"], model.layout_parameters()):
            p.copy_(flat[t["offset"] : t["offset"] + t["size"]].view(t["shape"]))
    if case.get("checkpoint"):
        st = os.path.join(case["checkpoint"], "model.safetensors")
        if os.path.exists(st):
            own = read_safetensors(st)
            same = all(torch.equal(own[t["name"]].flatten(), flat[t["offset"] : t["offset"] + t["size"]]) for t in case["tensors"])
            print(f"  {st} read by this script: {'bit-identical to' if same else 'DIFFERENT from'} the weights Node loaded")
            if not same:
                failures.append("checkpoint weights")
        else:
            print(f"  checkpoint {case['checkpoint']} not found here: its safetensors loader is not checked")

    pixels = decode_f32(case["pixels"]).double() if case.get("pixels") else None
    b = Batch(c, case["tokens"], case["seqStarts"], pixels, case.get("imageOf"), case.get("rows"), dtype=torch.float64)
    print(f"  batch: {b.num_tokens} tokens, {len(b.starts) - 1} sequences (lengths {b.seq_lengths}), {b.images} images, imageOf {case.get('imageOf')}")
    R = decode_f32(case["R"]).double()
    out = model(b)
    rows = []

    def report(what, twin, ref, tol):
        max_d, max_ref, rel = rel_diff(twin, ref)
        ok = rel <= tol
        rows.append((what, max_ref, max_d, rel, tol, ok))
        if not ok:
            failures.append(what)

    if c.rewardHead:
        report("score logits", out.detach(), decode_f32(case["scoreLogits"]), out_tol)
        report("scores", torch.sigmoid(out.detach()), decode_f32(case["scores"]), out_tol)
        loss = (out * R).sum()
    else:
        ref = decode_f32(case["logits"])
        same_mask = torch.equal(torch.isinf(out.detach()), torch.isinf(ref))
        if not same_mask:
            failures.append("masked logits")
        print(f"  -inf logits: {int(torch.isinf(ref).sum())} in the native output, {'at the same places' if same_mask else 'NOT at the same places'} in the twin's")
        report("logits", out.detach(), ref, out_tol)
        loss = (out.masked_fill(torch.isinf(out), 0.0) * R).sum()
    loss.backward()
    grads = decode_f32(case["grads"])
    for t, (name, p) in zip(case["tensors"], model.layout_parameters()):
        report("grad " + name, p.grad, grads[t["offset"] : t["offset"] + t["size"]].view(t["shape"]), grad_tol)
    print(f"  {'what':<34} {'max|native|':>11} {'max|d|':>11} {'rel':>10} {'tol':>8}")
    for what, max_ref, max_d, rel, tol, ok in rows:
        print(f"  {what:<34} {max_ref:11.3e} {max_d:11.3e} {rel:10.2e} {tol:8.0e} {'ok' if ok else 'FAIL'}")
    worst_out = max(r[3] for r in rows if not r[0].startswith("grad "))
    worst_grad = max(r[3] for r in rows if r[0].startswith("grad "))
    print(f"  {'PASS' if not failures else 'FAIL: ' + ', '.join(failures)}: worst output rel {worst_out:.2e}, worst gradient rel {worst_grad:.2e}")
    return not failures


# ---------------------------------------------------------------------------------------------
# --bench

def make_data(c, nseq, lo, hi, pairs, rng):
    """model_parity.cu's make_data: nseq sequences of lengths in [lo, hi]; with pairs, two
    sequences share one image (every third pair has none), else every third sequence has none.
    Each starts with token 2, then the <image> tokens, then random tokens in [4, vocab)."""
    nv, tokens, starts, image_of, images = c.visual_tokens, [], [0], [], 0
    for q in range(nseq):
        pair = q // 2 if pairs else q
        io = -1
        if c.imageSize > 0 and pair % 3 != 2:
            if not pairs or q % 2 == 0:
                images += 1
            io = images - 1
        n = rng.randint(lo, hi)
        if io >= 0:
            n = max(n, nv + 2)
        n = min(n, c.context)
        tokens.append(2)
        tokens.extend(c.imageToken if io >= 0 and i <= nv else rng.randrange(4, c.vocab) for i in range(1, n))
        starts.append(len(tokens))
        image_of.append(io)
    rows = [r for q in range(nseq) for r in range(starts[q], starts[q + 1] - 1)]
    return tokens, starts, image_of, images, rows


def count_params(c):
    """(all parameters, the decoder blocks' matrices, the vision tower's matrices)."""
    t = layout(c)
    total = sum(math.prod(shape) for _, shape, _ in t)
    dec = sum(math.prod(shape) for name, shape, decay in t if decay and name.startswith("blocks."))
    vis = sum(math.prod(shape) for name, shape, decay in t if decay and name.startswith("vis."))
    return total, dec, vis


FLOP_COUNT = ("2 x multiply-adds: every matrix times the rows it sees (decoder blocks: all tokens; LM or score head: "
              "the head rows; vision: the visual tokens), plus attention QK^T and PV over the causal half (keys 0..t) in "
              "the decoder and the full square in the vision blocks; no embeddings, norms, activations or softmax. "
              "Training = 3 x forward; sampling = the prompt pass + every decode step")


def forward_flops(c, seq_lengths, head_rows, images):
    """FLOPs of one forward pass, counted as FLOP_COUNT says."""
    _, dec, vis = count_params(c)
    n = sum(seq_lengths)
    head = c.dim if c.rewardHead else c.dim * c.vocab
    f = 2 * n * dec + 2 * head_rows * head
    f += c.layers * sum(4 * c.dim * L * (L + 1) // 2 for L in seq_lengths)
    nv = images * c.visual_tokens
    f += 2 * nv * vis + c.visionLayers * images * 4 * c.dim * c.visual_tokens**2
    return f


class Timer:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def median_s(self, fn, warmup, iters):
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), min(times)


def make_optimizer(model, device):
    decay = {name for name, _, d in layout(model.c) if d}
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.1},
        {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0},
    ]
    kw = {"lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8}
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError, ValueError):
            pass
    return torch.optim.AdamW(groups, **kw), "default (foreach where supported)"


def run_bench(args):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    if hasattr(torch, "set_float32_matmul_precision"):
        torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = args.peak_tflops if args.peak_tflops is not None else (494.7 if args.tf32 else 67.0)
    peak_note = "given" if args.peak_tflops is not None else (
        "H100 SXM TF32 tensor-core dense; H200 the same" if args.tf32 else "H100 SXM FP32 non-tensor; H200 the same")
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    weights = None
    if args.config:
        c = read_config_file(args.config)
        beside = os.path.join(os.path.dirname(args.config), "model.safetensors")
        if args.weights or (os.path.exists(beside) and not args.random_init):
            weights = args.weights or beside
    else:
        c = Config()
    model = VisionLanguageModel(c)
    if weights:
        load_weights(model, weights)
    model = model.to(device)
    total, dec, vis = count_params(c)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"PyTorch {torch.__version__} on {device} ({dev_name}); float32, TF32 {'on' if args.tf32 else 'off'}; "
          f"SDPA {'yes' if HAVE_SDPA else 'no (manual attention)'}; threads {torch.get_num_threads()}")
    print(f"model: {'reward' if c.rewardHead else 'policy'}, {total} params ({dec} decoder-block matmul, {vis} vision matmul); "
          f"weights {'from ' + weights if weights else 'random init'}")
    if device.type == "cpu":
        print("NOTE: on the CPU these numbers only show that the benchmark runs; they say nothing about GPU throughput.")

    # (a) training: model_parity.cu's default case, 24 sequences of 96..256 tokens in image pairs
    tokens, starts, image_of, images, rows = make_data(c, args.seqs, 96, 256, True, rng)
    pixels = torch.rand(images, c.channels, c.imageSize, c.imageSize) if images else None
    b = Batch(c, tokens, starts, pixels, image_of, rows, device=device)
    head_rows = len(b.rows)
    out_shape = (head_rows,) if c.rewardHead else (head_rows, c.vocab)
    dout = (torch.randn(out_shape) / head_rows).to(device)
    fwd = forward_flops(c, b.seq_lengths, head_rows, b.images)
    train_flops = 3 * fwd  # backward = 2 x forward (the patch embedding's input gradient is not needed: a slight overcount)
    naive = 6 * total * b.num_tokens
    print(f"training batch: {b.num_tokens} tokens, {len(b.starts) - 1} sequences, {b.images} images, {head_rows} head rows; "
          f"{train_flops / 1e9:.2f} GFLOP per forward+backward (naive 6 x params x tokens: {naive / 1e9:.2f})")
    timer = Timer(device)
    opt, opt_kind = make_optimizer(model, device)
    results = {"training": {}, "sampling": {}}

    def time_training(net, label):
        def fb():
            model.zero_grad(set_to_none=True)
            net(b).backward(dout)

        def step():
            fb()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        entry = {}
        for what, fn in (("forward+backward", fb), ("forward+backward+adamw", step)):
            med, best = timer.median_s(fn, args.warmup, args.iters)
            tf = train_flops / med / 1e12
            entry[what] = {"median_ms": med * 1e3, "min_ms": best * 1e3, "tokens_per_s": b.num_tokens / med, "tflops": tf, "mfu": tf / peak}
        results["training"][label] = entry

    time_training(model, "eager")
    compile_note = None
    if not hasattr(torch, "compile"):
        compile_note = f"skipped: torch {torch.__version__} has no torch.compile"
    elif args.no_compile:
        compile_note = "skipped: --no-compile"
    else:
        try:
            compiled = torch.compile(model)
            t0 = time.perf_counter()
            compiled(b).backward(dout)
            timer.sync()
            compile_note = f"compiled in {time.perf_counter() - t0:.1f} s (default mode)"
            time_training(compiled, "compile")
        except Exception as e:  # a compiler failure is a result to report, not a reason to stop
            compile_note = f"skipped: torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    print(f"torch.compile: {compile_note}")

    # (b) sampling: 8 prompts of 8..24 tokens (6 with images) x 8 samples x 64 new tokens, eager
    if not c.rewardHead:
        ptoks, pstarts, pimage_of, pimages, _ = make_data(c, args.prompts, 8, 24, False, rng)
        ppix = torch.rand(pimages, c.channels, c.imageSize, c.imageSize) if pimages else None
        pb = Batch(c, ptoks, pstarts, ppix, pimage_of, [s - 1 for s in pstarts[1:]], device=device)
        max_new = min(args.max_new, c.context - 24 - c.visual_tokens)
        gen = torch.Generator(device=device)
        gen.manual_seed(args.seed)
        streams = args.prompts * args.samples

        def sample():
            return model.generate(pb, args.samples, max_new, 1.0, gen)

        med, best = timer.median_s(sample, 1, args.sample_iters)
        new_tokens = streams * max_new
        flops = forward_flops(c, pb.seq_lengths, len(pb.rows), pb.images)  # the prompt pass
        per_token = 2 * (dec + c.dim * c.vocab)
        for L in pb.seq_lengths:
            for _ in range(args.samples):
                flops += (max_new - 1) * per_token + c.layers * sum(4 * c.dim * (L + j + 1) for j in range(max_new - 1))
        tf = flops / med / 1e12
        results["sampling"] = {"prompts": args.prompts, "samples": args.samples, "max_new": max_new, "streams": streams,
                               "prompt_tokens": pb.num_tokens, "images": pb.images, "median_ms": med * 1e3, "min_ms": best * 1e3,
                               "tokens_per_s": new_tokens / med, "tflops": tf, "mfu": tf / peak, "flops_per_call": flops}
    del opt

    report = {
        "torch": torch.__version__, "device": str(device), "device_name": dev_name, "dtype": "float32", "tf32": args.tf32,
        "sdpa": HAVE_SDPA, "optimizer": f"AdamW {opt_kind}, clip_grad_norm_ 1.0", "compile": compile_note,
        "peak_tflops": peak, "peak_note": peak_note, "config": c.as_dict(), "weights": weights,
        "params": total, "decoder_block_matmul_params": dec, "vision_matmul_params": vis,
        "batch": {"tokens": b.num_tokens, "sequences": len(b.starts) - 1, "images": b.images, "head_rows": head_rows,
                  "lengths": b.seq_lengths, "seed": args.seed},
        "flops": {"forward": fwd, "train_step": train_flops, "naive_6_params_tokens": naive,
                  "counted": FLOP_COUNT},
        "warmup": args.warmup, "iters": args.iters, "sample_iters": args.sample_iters, **results,
    }
    print(f"\nMFU against {peak:g} TFLOP/s ({peak_note}); FLOPs: matrices x the rows they see + causal attention, training = 3 x forward")
    print(f"{'what':<42} {'median ms':>10} {'min ms':>9} {'tokens/s':>12} {'TFLOP/s':>8} {'MFU':>7}")
    for label, entry in results["training"].items():
        for what, r in entry.items():
            print(f"{'train ' + label + ' ' + what:<42} {r['median_ms']:10.2f} {r['min_ms']:9.2f} {r['tokens_per_s']:12.0f} {r['tflops']:8.3f} {100 * r['mfu']:6.2f}%")
    if results["sampling"]:
        r = results["sampling"]
        what = f"sample eager {r['streams']} streams x {r['max_new']} new"
        print(f"{what:<42} {r['median_ms']:10.2f} {r['min_ms']:9.2f} {r['tokens_per_s']:12.0f} {r['tflops']:8.3f} {100 * r['mfu']:6.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", nargs="+", metavar="CASE.json", help="compare against cases from bench/gpu/dump_model_case.mjs")
    p.add_argument("--bench", action="store_true", help="training and sampling throughput")
    p.add_argument("--config", help="a checkpoint's config.json or a bare model config (default: DEFAULT_CONFIG); "
                   "weights load from the model.safetensors beside a checkpoint's config.json")
    p.add_argument("--weights", help="model.safetensors to load (overrides the one beside --config)")
    p.add_argument("--random-init", action="store_true", help="ignore the weights beside --config")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (default off: plain float32, as the native model)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak for MFU (default 67: H100 SXM FP32 non-tensor; 494.7, TF32 dense, with --tf32)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--seqs", type=int, default=24, help="training sequences (default 24, as model_parity.cu)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--max-new", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--sample-iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default; --check uses 1)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", help="write the bench results here")
    args = p.parse_args()
    if not args.check and not args.bench:
        p.error("give --check CASE.json or --bench")
    ok = True
    if args.check:
        torch.set_num_threads(args.threads or 1)
        for path in args.check:
            ok = check_case(path) and ok
    if args.bench:
        run_bench(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
