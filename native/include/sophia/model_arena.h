// The activation arena of the embedded model, shared by the CPU and CUDA backends: the per-block
// views, their order and sizes, and the backward scratch. One layout, so both backends allocate
// exactly what plan_training reports. Pointers are plain float*: host memory on the CPU, device
// memory on CUDA; a null base only counts.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model.h"

namespace sophia::model {

// Every arena allocation is rounded to 16 floats (64 bytes).
inline int64_t arena_align(int64_t n) { return (n + 15) & ~int64_t(15); }

struct BlockW {
  const float *n1, *wq, *wk, *wv, *wo, *n2, *wg, *wu, *wd;
};
struct BlockG {
  float *n1, *wq, *wk, *wv, *wo, *n2, *wg, *wu, *wd;
};
struct BlockShape {
  int64_t N, d, H, Hkv, hd, F;
  bool causal, rope;
};
// What one block keeps from forward for backward.
struct BlockA {
  float *xin, *ln1, *rstd1, *q, *k, *v, *att, *ao, *xmid, *ln2, *rstd2, *g, *u, *h;
};

// Positions within each packed sequence and the offsets of its [len, len] probability blocks per
// head; returns the probability floats of one attention layer (all sequences and heads).
inline int64_t stack_index(const std::vector<int32_t>& seq, int64_t H, std::vector<int64_t>& probOff, std::vector<int32_t>& pos) {
  const int64_t S = int64_t(seq.size()) - 1;
  probOff.assign(static_cast<size_t>(S), 0);
  pos.assign(static_cast<size_t>(seq.back()), 0);
  int64_t off = 0;
  for (int64_t q = 0; q < S; ++q) {
    probOff[q] = off;
    const int64_t len = seq[q + 1] - seq[q];
    off += H * len * len;
    for (int64_t n = seq[q]; n < seq[q + 1]; ++n) pos[n] = int32_t(n - seq[q]);
  }
  return off;
}

// The views of L blocks of shape s, then the stack's output [N, d], from base + used.
inline void plan_blocks(std::vector<BlockA>& blocks, float*& out, const BlockShape& s, int64_t L, int64_t probFloats, float* base,
                        int64_t& used) {
  const int64_t kvd = s.Hkv * s.hd;
  auto take = [&](int64_t n) -> float* {
    float* p = base ? base + used : nullptr;
    used += arena_align(n);
    return p;
  };
  blocks.assign(static_cast<size_t>(L), BlockA{});
  for (BlockA& A : blocks) {
    A.xin = take(s.N * s.d);
    A.ln1 = take(s.N * s.d);
    A.rstd1 = take(s.N);
    A.q = take(s.N * s.d);
    A.k = take(s.N * kvd);
    A.v = take(s.N * kvd);
    A.ao = take(s.N * s.d);
    A.xmid = take(s.N * s.d);
    A.ln2 = take(s.N * s.d);
    A.rstd2 = take(s.N);
    A.g = take(s.N * s.F);
    A.u = take(s.N * s.F);
    A.h = take(s.N * s.F);
    A.att = take(probFloats);
  }
  out = take(s.N * s.d);
}

// Floats of L blocks and the output, without the attention probabilities.
inline int64_t stack_floats(int64_t N, int64_t d, int64_t kvd, int64_t F, int64_t L) {
  std::vector<BlockA> blocks;
  float* out = nullptr;
  int64_t used = 0;
  plan_blocks(blocks, out, BlockShape{N, d, 1, 1, kvd, F, false, false}, L, 0, nullptr, used);
  return used;
}

// Backward scratch of one block: dh, dg, du [n, F], dln, dq, dao [n, d], dk, dv [n, kvd].
inline int64_t block_scratch_floats(int64_t n, int64_t d, int64_t kvd, int64_t F) {
  return 3 * arena_align(n * F) + 3 * arena_align(n * d) + 2 * arena_align(n * kvd);
}
// Before it: dx [N, d], dsel and dselN [R, d], dvtok, dvisN, dvx [NV, d].
inline int64_t scratch_front_floats(const Config& c, int64_t N, int64_t R, int64_t NV) {
  return arena_align(N * c.dim) + 2 * arena_align(R * c.dim) + 3 * arena_align(NV * c.dim);
}
// The whole backward scratch; the block scratch is shared by both towers.
inline int64_t scratch_floats(const Config& c, int64_t N, int64_t R, int64_t NV) {
  int64_t blk = block_scratch_floats(N, c.dim, c.kvDim(), c.ffn);
  if (NV > 0) blk = std::max(blk, block_scratch_floats(NV, c.dim, c.dim, c.visionFfn));
  return scratch_front_floats(c, N, R, NV) + blk;
}

}  // namespace sophia::model
