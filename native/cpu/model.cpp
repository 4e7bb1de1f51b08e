// The embedded vision-language model on the CPU: layout, forward, backward, AdamW and batched
// sampling with a KV cache (model.h). Layers are in nn.cpp.
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>

#include "nn.h"
#include "sophia/model_arena.h"
#include "sophia/sampling.h"
#include "threadpool.h"

namespace sophia::model {

[[noreturn]] static void bad(const std::string& field, const std::string& msg) {
  throw Error("E_CONFIG", "model config: " + field + " " + msg);
}

void validate(const Config& c) {
  auto range = [](const char* f, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) bad(f, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(v));
  };
  range("vocab", c.vocab, 2, 1 << 22);
  range("dim", c.dim, 2, 16384);
  range("layers", c.layers, 1, 256);
  range("heads", c.heads, 1, 256);
  range("kvHeads", c.kvHeads, 1, 256);
  range("ffn", c.ffn, 1, 65536);
  range("context", c.context, 2, 65536);
  range("imageSize", c.imageSize, 0, 4096);
  if (c.dim % c.heads) bad("dim", "must be a multiple of heads (" + std::to_string(c.heads) + "), got " + std::to_string(c.dim));
  if (c.heads % c.kvHeads) bad("kvHeads", "must divide heads (" + std::to_string(c.heads) + "), got " + std::to_string(c.kvHeads));
  if (c.headDim() % 2) bad("dim", "/ heads must be even for rotary positions, got head size " + std::to_string(c.headDim()));
  if (c.imageSize > 0) {
    range("channels", c.channels, 1, 16);
    range("patch", c.patch, 1, c.imageSize);
    range("visionLayers", c.visionLayers, 0, 64);
    range("visionHeads", c.visionHeads, 1, 256);
    range("visionFfn", c.visionFfn, 1, 65536);
    if (c.imageSize % c.patch) bad("imageSize", "must be a multiple of patch (" + std::to_string(c.patch) + "), got " + std::to_string(c.imageSize));
    if (c.dim % c.visionHeads) bad("visionHeads", "must divide dim (" + std::to_string(c.dim) + "), got " + std::to_string(c.visionHeads));
    if (c.visualTokens() >= c.context) bad("context", "must exceed the visual tokens per image (" + std::to_string(c.visualTokens()) + "), got " + std::to_string(c.context));
  }
  if (c.imageToken < 0 || c.imageToken >= c.vocab) bad("imageToken", "must be a token id in [0, vocab), got " + std::to_string(c.imageToken));
  if (!(c.ropeTheta > 1.f) || !std::isfinite(c.ropeTheta)) bad("ropeTheta", "must be a finite number > 1, got " + std::to_string(c.ropeTheta));
  if (!(c.normEps > 0.f) || !(c.normEps < 1.f)) bad("normEps", "must be in (0, 1), got " + std::to_string(c.normEps));
}

std::vector<TensorInfo> layout(const Config& c) {
  validate(c);
  std::vector<TensorInfo> t;
  int64_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    t.push_back({name, std::move(shape), off, n, decay});
    off += n;
  };
  auto block = [&](const std::string& p, int64_t H, int64_t Hkv, int64_t F) {
    const int64_t d = c.dim, kv = Hkv * (d / H);
    add(p + "norm1", {d}, false);
    add(p + "attn.wq", {d, d}, true);
    add(p + "attn.wk", {kv, d}, true);
    add(p + "attn.wv", {kv, d}, true);
    add(p + "attn.wo", {d, d}, true);
    add(p + "norm2", {d}, false);
    add(p + "mlp.w_gate", {F, d}, true);
    add(p + "mlp.w_up", {F, d}, true);
    add(p + "mlp.w_down", {d, F}, true);
  };
  add("tok_emb", {c.vocab, c.dim}, true);
  if (c.imageSize > 0) {
    add("vis.patch.w", {c.dim, c.patchDim()}, true);
    add("vis.patch.b", {c.dim}, false);
    add("vis.pos", {c.patchesPerSide(), c.patchesPerSide(), c.dim}, false);
    for (int64_t i = 0; i < c.visionLayers; ++i) block("vis.blocks." + std::to_string(i) + ".", c.visionHeads, c.visionHeads, c.visionFfn);
    add("vis.norm", {c.dim}, false);
    add("vis.proj.w", {c.dim, c.dim}, true);
    add("vis.proj.b", {c.dim}, false);
  }
  for (int64_t i = 0; i < c.layers; ++i) block("blocks." + std::to_string(i) + ".", c.heads, c.kvHeads, c.ffn);
  add("norm", {c.dim}, false);
  if (c.rewardHead) {
    add("score.w", {1, c.dim}, false);
    add("score.b", {1}, false);
  } else if (!c.tieEmbeddings) {
    add("lm_head", {c.vocab, c.dim}, true);
  }
  if (off > (int64_t(1) << 31)) bad("dim", "and the other sizes give " + std::to_string(off) + " parameters, more than 2^31");
  return t;
}

MemoryPlan plan_training(const Config& c, int64_t tokens, int64_t rows, int64_t images, int64_t seqSquares) {
  validate(c);
  MemoryPlan p;
  int64_t n = 0;
  for (const auto& t : layout(c)) n += t.size;
  p.params = 4 * n;
  p.grads = 4 * n;
  p.optimizer = 8 * n;
  const int64_t NV = images * c.visualTokens(), d = c.dim;
  int64_t act = 0, att = 0;
  if (NV > 0) {
    act += arena_align(NV * c.patchDim()) + arena_align(NV * d) + stack_floats(NV, d, d, c.visionFfn, c.visionLayers) + 2 * arena_align(NV * d) + arena_align(NV);
    att += c.visionLayers * arena_align(images * c.visionHeads * c.visualTokens() * c.visualTokens());
  }
  act += arena_align(tokens * d) + stack_floats(tokens, d, c.kvDim(), c.ffn, c.layers) + 2 * arena_align(rows * d) + arena_align(rows);
  att += c.layers * arena_align(c.heads * seqSquares);
  p.activations = 4 * act;
  p.attention = 4 * att;
  p.scratch = 4 * scratch_floats(c, tokens, rows, NV);
  return p;
}

int64_t plan_generate_bytes(const Config& c, int64_t promptTokens, int64_t prompts, int64_t images, int64_t streams) {
  int64_t sq = promptTokens * promptTokens;  // a bound on Σ len² over the prompts
  MemoryPlan p = plan_training(c, promptTokens, prompts, images, sq);
  const int64_t cache = 2 * c.layers * streams * c.context * c.kvDim();
  const int64_t decode = streams * (6 * c.dim + 2 * c.kvDim() + 3 * c.ffn + c.vocab + 2);
  return p.activations + p.attention + 4 * (cache + decode + prompts * c.vocab);
}

void init_params(const Config& c, uint64_t seed, float* params) {
  const std::vector<TensorInfo> tensors = layout(c);
  // N(0, 0.02) for matrices and embeddings; residual projections scaled by 1/sqrt(2·layers);
  // norms 1; biases and the reward head 0. Each tensor draws from its own stream.
  const double resid = 0.02 / std::sqrt(2.0 * double(c.layers));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    float* p = params + t.offset;
    const bool isNorm = t.name.find("norm") != std::string::npos;
    const bool isBias = t.name.size() > 2 && t.name.compare(t.name.size() - 2, 2, ".b") == 0;
    if (isNorm) {
      std::fill(p, p + t.size, 1.f);
    } else if (isBias || t.name.rfind("score.", 0) == 0) {
      std::fill(p, p + t.size, 0.f);
    } else {
      const bool isResid = t.name.find("attn.wo") != std::string::npos || t.name.find("mlp.w_down") != std::string::npos;
      sampling::Rng r(seed * 0x100000001b3ull + i + 1);
      const double sd = isResid ? resid : 0.02;
      for (int64_t j = 0; j < t.size; ++j) p[j] = float(r.normal() * sd);
    }
  }
}

}  // namespace sophia::model

namespace sophia::cpu {

using namespace sophia::model;

Model::Model(const Config& c, uint64_t seed) : cfg_(c), layout_(layout(c)) {
  int64_t n = 0;
  for (const auto& t : layout_) n = std::max(n, t.offset + t.size);
  params_.assign(static_cast<size_t>(n), 0.f);
  grads_.assign(static_cast<size_t>(n), 0.f);
  m_.assign(static_cast<size_t>(n), 0.f);
  v_.assign(static_cast<size_t>(n), 0.f);
  init_params(c, seed, params_.data());
}

int64_t Model::bytesAllocated() const {
  return int64_t(4 * (params_.capacity() + grads_.capacity() + m_.capacity() + v_.capacity() + arena_.capacity() +
                      scratch_.capacity() + patches_.capacity()));
}

static const TensorInfo& find(const std::vector<TensorInfo>& l, const std::string& name) {
  for (const auto& t : l)
    if (t.name == name) return t;
  throw Error("E_INTERNAL", "no parameter named " + name);
}
const float* Model::w(const std::string& name) const { return params_.data() + find(layout_, name).offset; }
float* Model::g(const std::string& name) { return grads_.data() + find(layout_, name).offset; }

Model::BlockW Model::blockW(const std::string& p) const {
  return {w(p + "norm1"), w(p + "attn.wq"), w(p + "attn.wk"), w(p + "attn.wv"), w(p + "attn.wo"),
          w(p + "norm2"), w(p + "mlp.w_gate"), w(p + "mlp.w_up"), w(p + "mlp.w_down")};
}
Model::BlockG Model::blockG(const std::string& p) {
  return {g(p + "norm1"), g(p + "attn.wq"), g(p + "attn.wk"), g(p + "attn.wv"), g(p + "attn.wo"),
          g(p + "norm2"), g(p + "mlp.w_gate"), g(p + "mlp.w_up"), g(p + "mlp.w_down")};
}

void Model::planStack(Stack& st, const BlockShape& s, int64_t L, const std::vector<int32_t>& seq, float* base, int64_t& used) {
  st.shape = s;
  st.seq = seq;
  const int64_t probFloats = stack_index(st.seq, s.H, st.probOff, st.pos);
  plan_blocks(st.blocks, st.out, s, L, probFloats, base, used);
}

void Model::blockForward(const BlockW& W, BlockA& A, const BlockShape& s, const Stack& st, float* xout) {
  const int64_t N = s.N, d = s.d, kvd = s.Hkv * s.hd, F = s.F;
  nn::rmsnorm_forward(A.ln1, A.rstd1, A.xin, W.n1, N, d, cfg_.normEps);
  nn::matmul_forward(A.q, A.ln1, W.wq, nullptr, N, d, d);
  nn::matmul_forward(A.k, A.ln1, W.wk, nullptr, N, d, kvd);
  nn::matmul_forward(A.v, A.ln1, W.wv, nullptr, N, d, kvd);
  if (s.rope) {
    nn::rope(A.q, st.pos.data(), N, s.H, s.hd, cfg_.ropeTheta, false);
    nn::rope(A.k, st.pos.data(), N, s.Hkv, s.hd, cfg_.ropeTheta, false);
  }
  nn::AttnShape as{N, int64_t(st.seq.size()) - 1, s.H, s.Hkv, s.hd, st.seq.data(), st.probOff.data(), s.causal};
  nn::attention_forward(A.ao, A.att, A.q, A.k, A.v, as);
  std::memcpy(A.xmid, A.xin, sizeof(float) * N * d);
  gemm(N, d, d, A.ao, d, false, W.wo, d, true, A.xmid, d, true);
  nn::rmsnorm_forward(A.ln2, A.rstd2, A.xmid, W.n2, N, d, cfg_.normEps);
  nn::matmul_forward(A.g, A.ln2, W.wg, nullptr, N, d, F);
  nn::matmul_forward(A.u, A.ln2, W.wu, nullptr, N, d, F);
  nn::swiglu_forward(A.h, A.g, A.u, N * F);
  std::memcpy(xout, A.xmid, sizeof(float) * N * d);
  gemm(N, d, F, A.h, F, false, W.wd, F, true, xout, d, true);
}

void Model::blockBackward(const BlockW& W, BlockG& G, const BlockA& A, const BlockShape& s, const Stack& st, float* dx) {
  const int64_t N = s.N, d = s.d, kvd = s.Hkv * s.hd, F = s.F;
  float* dh = blockScratch_;  // dh, dg, du, dln, dq, dao, dk, dv (block_scratch_floats)
  float* dg = dh + arena_align(N * F);
  float* du = dg + arena_align(N * F);
  float* dln = du + arena_align(N * F);
  float* dq = dln + arena_align(N * d);
  float* dao = dq + arena_align(N * d);
  float* dk = dao + arena_align(N * d);
  float* dv = dk + arena_align(N * kvd);
  // MLP: xout = xmid + h·Wdᵀ, h = silu(ln2·Wgᵀ) ⊙ (ln2·Wuᵀ)
  nn::matmul_backward(dh, G.wd, nullptr, dx, A.h, W.wd, N, F, d);
  nn::swiglu_backward(dg, du, dh, A.g, A.u, N * F);
  nn::matmul_backward(dln, G.wg, nullptr, dg, A.ln2, W.wg, N, d, F);
  nn::matmul_backward(dln, G.wu, nullptr, du, A.ln2, W.wu, N, d, F, true);
  nn::rmsnorm_backward(dx, G.n2, dln, A.xmid, W.n2, A.rstd2, N, d, true);
  // Attention: xmid = xin + attn(ln1)·Woᵀ
  nn::matmul_backward(dao, G.wo, nullptr, dx, A.ao, W.wo, N, d, d);
  nn::AttnShape as{N, int64_t(st.seq.size()) - 1, s.H, s.Hkv, s.hd, st.seq.data(), st.probOff.data(), s.causal};
  nn::attention_backward(dq, dk, dv, dao, A.att, A.q, A.k, A.v, as);
  if (s.rope) {
    nn::rope(dq, st.pos.data(), N, s.H, s.hd, cfg_.ropeTheta, true);
    nn::rope(dk, st.pos.data(), N, s.Hkv, s.hd, cfg_.ropeTheta, true);
  }
  nn::matmul_backward(dln, G.wq, nullptr, dq, A.ln1, W.wq, N, d, d);
  nn::matmul_backward(dln, G.wk, nullptr, dk, A.ln1, W.wk, N, d, kvd, true);
  nn::matmul_backward(dln, G.wv, nullptr, dv, A.ln1, W.wv, N, d, kvd, true);
  nn::rmsnorm_backward(dx, G.n1, dln, A.xin, W.n1, A.rstd1, N, d, true);
}

void Model::stackForward(Stack& st, const std::string& prefix, int64_t L, const float* x0) {
  std::memcpy(st.blocks.empty() ? st.out : st.blocks[0].xin, x0, sizeof(float) * st.shape.N * st.shape.d);
  for (int64_t l = 0; l < L; ++l) {
    float* xout = l + 1 < L ? st.blocks[l + 1].xin : st.out;
    blockForward(blockW(prefix + std::to_string(l) + "."), st.blocks[l], st.shape, st, xout);
  }
}

void Model::stackBackward(Stack& st, const std::string& prefix, int64_t L, float* dx) {
  for (int64_t l = L - 1; l >= 0; --l) {
    const std::string p = prefix + std::to_string(l) + ".";
    BlockG G = blockG(p);
    blockBackward(blockW(p), G, st.blocks[l], st.shape, st, dx);
  }
}

void Model::forward(const Batch& b, float* out, float* scoreLogits) {
  haveForward_ = false;
  const Config& c = cfg_;
  const int64_t d = c.dim, N = b.N, np = c.visualTokens();
  tokens_.assign(b.tokens, b.tokens + N);
  seq_.assign(b.seq, b.seq + b.B + 1);
  imageOf_.assign(static_cast<size_t>(b.B), -1);
  if (b.imageOf) imageOf_.assign(b.imageOf, b.imageOf + b.B);
  images_ = b.imageOf ? b.images : 0;
  if (c.rewardHead) {
    rows_.resize(static_cast<size_t>(b.B));
    for (int64_t q = 0; q < b.B; ++q) rows_[q] = seq_[q + 1] - 1;
  } else {
    rows_.assign(b.rows, b.rows + b.M);
  }
  const int64_t R = int64_t(rows_.size()), NV = images_ * np;
  imgRow_.assign(static_cast<size_t>(N), -1);
  for (int64_t q = 0; q < b.B; ++q) {
    if (imageOf_[q] < 0) continue;
    int64_t j = 0;
    for (int64_t n = seq_[q]; n < seq_[q + 1]; ++n)
      if (tokens_[n] == c.imageToken) imgRow_[n] = int32_t(imageOf_[q] * np + j++);
  }

  const BlockShape visShape{NV, d, c.visionHeads, c.visionHeads, d / c.visionHeads, c.visionFfn, false, false};
  const BlockShape decShape{N, d, c.heads, c.kvHeads, c.headDim(), c.ffn, true, true};
  std::vector<int32_t> visSeq(static_cast<size_t>(images_ + 1));
  for (int64_t i = 0; i <= images_; ++i) visSeq[i] = int32_t(i * np);
  // Two passes: sizes first, then pointers into the (possibly grown) arena.
  for (int pass = 0; pass < 2; ++pass) {
    const bool reserve = pass == 0;
    int64_t used = 0;
    auto take = [&](int64_t n) -> float* {
      float* p = reserve ? nullptr : arena_.data() + used;
      used += arena_align(n);
      return p;
    };
    if (NV > 0) {
      visEmb_ = take(NV * d);
      planStack(vis_, visShape, c.visionLayers, visSeq, reserve ? nullptr : arena_.data(), used);
      visNorm_ = take(NV * d);
      visRstd_ = take(NV);
      visTok_ = take(NV * d);
    }
    x0_ = take(N * d);
    planStack(dec_, decShape, c.layers, seq_, reserve ? nullptr : arena_.data(), used);
    sel_ = take(R * d);
    selNorm_ = take(R * d);
    selRstd_ = take(R);
    if (reserve) {
      // The arena must be what plan_training reports (it is what users budget with).
      int64_t sq = 0;
      for (int64_t q = 0; q < b.B; ++q) sq += int64_t(seq_[q + 1] - seq_[q]) * (seq_[q + 1] - seq_[q]);
      const MemoryPlan mp = plan_training(c, N, R, images_, sq);
      if (4 * (used + arena_align(NV * c.patchDim())) != mp.activations + mp.attention)
        throw Error("E_INTERNAL", "model arena size differs from its memory plan");
    }
    if (reserve && int64_t(arena_.size()) < used) {
      arena_.clear();
      arena_.shrink_to_fit();
      arena_.resize(static_cast<size_t>(used));
    }
  }

  if (NV > 0) {
    const int64_t P = c.patch, S = c.imageSize, gp = c.patchesPerSide(), pd = c.patchDim();
    patches_.resize(static_cast<size_t>(NV * pd));
    for (int64_t i = 0; i < images_; ++i)
      for (int64_t py = 0; py < gp; ++py)
        for (int64_t px = 0; px < gp; ++px) {
          float* dst = patches_.data() + ((i * np) + py * gp + px) * pd;
          for (int64_t ch = 0; ch < c.channels; ++ch)
            for (int64_t y = 0; y < P; ++y)
              for (int64_t x = 0; x < P; ++x)
                dst[(ch * P + y) * P + x] = b.pixels[((i * c.channels + ch) * S + py * P + y) * S + px * P + x] - 0.5f;
        }
    nn::matmul_forward(visEmb_, patches_.data(), w("vis.patch.w"), w("vis.patch.b"), NV, pd, d);
    const float* pos = w("vis.pos");
    for (int64_t r = 0; r < NV; ++r)
      for (int64_t j = 0; j < d; ++j) visEmb_[r * d + j] += pos[(r % np) * d + j];
    stackForward(vis_, "vis.blocks.", c.visionLayers, visEmb_);
    nn::rmsnorm_forward(visNorm_, visRstd_, vis_.out, w("vis.norm"), NV, d, c.normEps);
    nn::matmul_forward(visTok_, visNorm_, w("vis.proj.w"), w("vis.proj.b"), NV, d, d);
  }
  const float* emb = w("tok_emb");
  for (int64_t n = 0; n < N; ++n) {
    const float* src = imgRow_[n] >= 0 ? visTok_ + int64_t(imgRow_[n]) * d : emb + int64_t(tokens_[n]) * d;
    std::memcpy(x0_ + n * d, src, sizeof(float) * d);
  }
  stackForward(dec_, "blocks.", c.layers, x0_);
  for (int64_t r = 0; r < R; ++r) std::memcpy(sel_ + r * d, dec_.out + int64_t(rows_[r]) * d, sizeof(float) * d);
  nn::rmsnorm_forward(selNorm_, selRstd_, sel_, w("norm"), R, d, c.normEps);
  if (c.rewardHead) {
    const float* sw = w("score.w");
    const float sb = *w("score.b");
    for (int64_t r = 0; r < R; ++r) {
      double z = sb;
      for (int64_t j = 0; j < d; ++j) z += double(sw[j]) * selNorm_[r * d + j];
      if (scoreLogits) scoreLogits[r] = float(z);
      out[r] = float(1.0 / (1.0 + std::exp(-z)));
    }
  } else {
    nn::matmul_forward(out, selNorm_, w(c.tieEmbeddings ? "tok_emb" : "lm_head"), nullptr, R, d, c.vocab);
    mask_image_logit(out, R);
  }
  haveForward_ = true;
}

// The LM head never predicts <image> (a sampled one would have no visual tokens to stand for):
// its logit is -inf in training and sampling alike, a constant with zero gradient.
void Model::mask_image_logit(float* logits, int64_t R) const {
  if (cfg_.imageSize == 0) return;
  for (int64_t r = 0; r < R; ++r) logits[r * cfg_.vocab + cfg_.imageToken] = -INFINITY;
}

void Model::backward(const float* dout) {
  if (!haveForward_) throw Error("E_STATE", "backward: no forward pass to differentiate (call forward first; generate() discards it)");
  const Config& c = cfg_;
  const int64_t d = c.dim, N = int64_t(tokens_.size()), R = int64_t(rows_.size()), np = c.visualTokens(), NV = images_ * np;
  const int64_t need = scratch_floats(c, N, R, NV);
  if (int64_t(scratch_.size()) < need) scratch_.resize(static_cast<size_t>(need));
  float* dx = scratch_.data();
  float* dsel = dx + arena_align(N * d);
  float* dselN = dsel + arena_align(R * d);
  float* dvtok = dselN + arena_align(R * d);
  float* dvisN = dvtok + arena_align(NV * d);
  float* dvx = dvisN + arena_align(NV * d);
  blockScratch_ = scratch_.data() + scratch_front_floats(c, N, R, NV);
  const float* normW = w("norm");

  if (c.rewardHead) {
    const float* sw = w("score.w");
    float* gw = g("score.w");
    double gb = 0.0;
    for (int64_t r = 0; r < R; ++r) {
      gb += dout[r];
      for (int64_t j = 0; j < d; ++j) {
        dselN[r * d + j] = dout[r] * sw[j];
        gw[j] += dout[r] * selNorm_[r * d + j];
      }
    }
    *g("score.b") += float(gb);
  } else {
    const char* head = c.tieEmbeddings ? "tok_emb" : "lm_head";
    const float* dl = dout;
    if (c.imageSize > 0) {
      bool any = false;
      for (int64_t r = 0; r < R && !any; ++r) any = dout[r * c.vocab + c.imageToken] != 0.f;
      if (any) {  // the masked logit is a constant: drop what the caller put there
        maskedGrad_.assign(dout, dout + R * c.vocab);
        for (int64_t r = 0; r < R; ++r) maskedGrad_[r * c.vocab + c.imageToken] = 0.f;
        dl = maskedGrad_.data();
      }
    }
    nn::matmul_backward(dselN, g(head), nullptr, dl, selNorm_, w(head), R, d, c.vocab);
  }
  nn::rmsnorm_backward(dsel, g("norm"), dselN, sel_, normW, selRstd_, R, d, false);
  std::memset(dx, 0, sizeof(float) * N * d);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < d; ++j) dx[int64_t(rows_[r]) * d + j] += dsel[r * d + j];
  stackBackward(dec_, "blocks.", c.layers, dx);

  float* gEmb = g("tok_emb");
  if (NV > 0) std::memset(dvtok, 0, sizeof(float) * NV * d);
  for (int64_t n = 0; n < N; ++n) {
    float* dst = imgRow_[n] >= 0 ? dvtok + int64_t(imgRow_[n]) * d : gEmb + int64_t(tokens_[n]) * d;
    for (int64_t j = 0; j < d; ++j) dst[j] += dx[n * d + j];
  }
  if (NV > 0) {
    nn::matmul_backward(dvisN, g("vis.proj.w"), g("vis.proj.b"), dvtok, visNorm_, w("vis.proj.w"), NV, d, d);
    nn::rmsnorm_backward(dvx, g("vis.norm"), dvisN, vis_.out, w("vis.norm"), visRstd_, NV, d, false);
    stackBackward(vis_, "vis.blocks.", c.visionLayers, dvx);
    float* gpos = g("vis.pos");
    for (int64_t r = 0; r < NV; ++r)
      for (int64_t j = 0; j < d; ++j) gpos[(r % np) * d + j] += dvx[r * d + j];
    nn::matmul_backward(nullptr, g("vis.patch.w"), g("vis.patch.b"), dvx, patches_.data(), w("vis.patch.w"), NV, c.patchDim(), d);
  }
}

void Model::zeroGrad() { std::fill(grads_.begin(), grads_.end(), 0.f); }

StepResult Model::step(const AdamW& o) {
  StepResult r;
  const int64_t n = numParams();
  constexpr int64_t chunk = 1 << 16;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  ThreadPool::instance().parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      double s = 0.0;
      for (int64_t i = k * chunk; i < std::min(n, (k + 1) * chunk); ++i) s += double(grads_[i]) * grads_[i];
      part[k] = s;
    }
  });
  double ss = 0.0;
  for (double p : part) ss += p;
  r.gradNorm = std::sqrt(ss);
  if (!std::isfinite(r.gradNorm)) {
    r.skipped = true;
    return r;
  }
  if (o.clipNorm > 0.f && r.gradNorm > o.clipNorm) r.clipScale = float(o.clipNorm / (r.gradNorm + 1e-6));
  ++step_;
  const float bc1 = float(1.0 - std::pow(double(o.beta1), double(step_)));
  const float bc2 = float(1.0 - std::pow(double(o.beta2), double(step_)));
  for (const auto& t : layout_) {
    const float decay = t.decay ? o.lr * o.weightDecay : 0.f;
    float* p = params_.data() + t.offset;
    float* gr = grads_.data() + t.offset;
    float* m = m_.data() + t.offset;
    float* v = v_.data() + t.offset;
    ThreadPool::instance().parallel_for(t.size, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float gi = gr[i] * r.clipScale;
        m[i] = o.beta1 * m[i] + (1.f - o.beta1) * gi;
        v[i] = o.beta2 * v[i] + (1.f - o.beta2) * gi * gi;
        const float mh = m[i] / bc1, vh = v[i] / bc2;
        p[i] -= o.lr * mh / (std::sqrt(vh) + o.eps) + decay * p[i];
      }
    });
  }
  return r;
}

void Model::generate(const Generate& gen) {
  const Config& c = cfg_;
  const int64_t d = c.dim, V = c.vocab, kvd = c.kvDim(), F = c.ffn, ctx = c.context, P = gen.P, S = P * gen.G;
  std::fill(gen.outTokens, gen.outTokens + S * gen.maxNew, 0);
  std::fill(gen.outLogp, gen.outLogp + S * gen.maxNew, 0.f);
  std::fill(gen.outLen, gen.outLen + S, 0);
  if (S == 0 || gen.maxNew == 0) return;

  // One prompt pass for all prompts; its K and V seed every stream's cache.
  std::vector<int32_t> last(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) last[p] = gen.promptSeq[p + 1] - 1;
  Batch pb;
  pb.N = gen.promptSeq[P];
  pb.B = P;
  pb.tokens = gen.prompt;
  pb.seq = gen.promptSeq;
  pb.images = gen.images;
  pb.pixels = gen.pixels;
  pb.imageOf = gen.imageOf;
  pb.M = P;
  pb.rows = last.data();
  std::vector<float> logits(static_cast<size_t>(std::max(P, S) * V));
  forward(pb, logits.data());
  haveForward_ = false;

  const int64_t stride = ctx * kvd;
  std::vector<float> kc(static_cast<size_t>(c.layers * S * stride)), vc(static_cast<size_t>(c.layers * S * stride));
  for (int64_t l = 0; l < c.layers; ++l) {
    const BlockA& A = dec_.blocks[l];
    for (int64_t s = 0; s < S; ++s) {
      const int64_t p = s / gen.G, start = gen.promptSeq[p], len = gen.promptSeq[p + 1] - start;
      std::memcpy(kc.data() + (l * S + s) * stride, A.k + start * kvd, sizeof(float) * len * kvd);
      std::memcpy(vc.data() + (l * S + s) * stride, A.v + start * kvd, sizeof(float) * len * kvd);
    }
  }

  std::vector<sampling::Rng> rng;
  rng.reserve(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) rng.emplace_back(gen.seed * 0x9e3779b97f4a7c15ull + uint64_t(s) * 0xd1b54a32d192ed03ull + 1);
  std::vector<std::pair<float, int32_t>> cand;
  std::vector<int32_t> cur(static_cast<size_t>(S)), pos(static_cast<size_t>(S)), active;
  auto record = [&](int64_t s, int32_t tok, float lp) {
    const int64_t p = s / gen.G, Tp = gen.promptSeq[p + 1] - gen.promptSeq[p];
    const int64_t limit = std::min(gen.maxNew, ctx - Tp);
    gen.outTokens[s * gen.maxNew + gen.outLen[s]] = tok;
    gen.outLogp[s * gen.maxNew + gen.outLen[s]] = lp;
    ++gen.outLen[s];
    cur[s] = tok;
    pos[s] = int32_t(Tp + gen.outLen[s] - 1);  // where this token sits when fed back
    return tok != gen.eos && gen.outLen[s] < limit;
  };
  for (int64_t s = 0; s < S; ++s) {
    float lp;
    const int32_t tok = sampling::sample_token(logits.data() + (s / gen.G) * V, V, gen.temperature, gen.topK, gen.topP, rng[s], &lp, cand);
    if (record(s, tok, lp)) active.push_back(int32_t(s));
  }

  std::vector<float> x(static_cast<size_t>(S * d)), ln(static_cast<size_t>(S * d)), q(static_cast<size_t>(S * d)), k(static_cast<size_t>(S * kvd)), v(static_cast<size_t>(S * kvd)),
      ao(static_cast<size_t>(S * d)), gt(static_cast<size_t>(S * F)), up(static_cast<size_t>(S * F)), h(static_cast<size_t>(S * F)), rstd(static_cast<size_t>(S));
  std::vector<int32_t> rowPos, rowLen;
  const float* emb = w("tok_emb");
  while (!active.empty()) {
    const int64_t R = int64_t(active.size());
    rowPos.resize(static_cast<size_t>(R));
    rowLen.resize(static_cast<size_t>(R));
    for (int64_t r = 0; r < R; ++r) {
      const int64_t s = active[r];
      std::memcpy(x.data() + r * d, emb + int64_t(cur[s]) * d, sizeof(float) * d);
      rowPos[r] = pos[s];
      rowLen[r] = pos[s] + 1;
    }
    for (int64_t l = 0; l < c.layers; ++l) {
      const BlockW W = blockW("blocks." + std::to_string(l) + ".");
      nn::rmsnorm_forward(ln.data(), rstd.data(), x.data(), W.n1, R, d, c.normEps);
      nn::matmul_forward(q.data(), ln.data(), W.wq, nullptr, R, d, d);
      nn::matmul_forward(k.data(), ln.data(), W.wk, nullptr, R, d, kvd);
      nn::matmul_forward(v.data(), ln.data(), W.wv, nullptr, R, d, kvd);
      nn::rope(q.data(), rowPos.data(), R, c.heads, c.headDim(), c.ropeTheta, false);
      nn::rope(k.data(), rowPos.data(), R, c.kvHeads, c.headDim(), c.ropeTheta, false);
      float* K = kc.data() + l * S * stride;
      float* Vc = vc.data() + l * S * stride;
      for (int64_t r = 0; r < R; ++r) {
        std::memcpy(K + active[r] * stride + int64_t(rowPos[r]) * kvd, k.data() + r * kvd, sizeof(float) * kvd);
        std::memcpy(Vc + active[r] * stride + int64_t(rowPos[r]) * kvd, v.data() + r * kvd, sizeof(float) * kvd);
      }
      nn::attention_decode(ao.data(), q.data(), K, Vc, stride, active.data(), rowLen.data(), R, c.heads, c.kvHeads, c.headDim());
      gemm(R, d, d, ao.data(), d, false, W.wo, d, true, x.data(), d, true);
      nn::rmsnorm_forward(ln.data(), rstd.data(), x.data(), W.n2, R, d, c.normEps);
      nn::matmul_forward(gt.data(), ln.data(), W.wg, nullptr, R, d, F);
      nn::matmul_forward(up.data(), ln.data(), W.wu, nullptr, R, d, F);
      nn::swiglu_forward(h.data(), gt.data(), up.data(), R * F);
      gemm(R, d, F, h.data(), F, false, W.wd, F, true, x.data(), d, true);
    }
    nn::rmsnorm_forward(ln.data(), rstd.data(), x.data(), w("norm"), R, d, c.normEps);
    nn::matmul_forward(logits.data(), ln.data(), w(c.tieEmbeddings ? "tok_emb" : "lm_head"), nullptr, R, d, V);
    mask_image_logit(logits.data(), R);
    std::vector<int32_t> next;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t s = active[r];
      float lp;
      const int32_t tok = sampling::sample_token(logits.data() + r * V, V, gen.temperature, gen.topK, gen.topP, rng[s], &lp, cand);
      if (record(s, tok, lp)) next.push_back(int32_t(s));
    }
    active.swap(next);
  }
}

}  // namespace sophia::cpu
