// Kernel argument structs and entry points. The CPU backend (native/cpu) and the CUDA backend
// (native/cuda) implement the same functions; the addon validates every field before a call.
//
// Shapes: N tokens, V vocabulary entries, B sequences, G groups.
#pragma once
#include <cstdint>
#include "common.h"
#include "grpo_math.h"

namespace sophia {

// Per-row softmax statistics of z = logits[t] * invTemp.
struct LogprobsArgs {
  const void* logits = nullptr;  // [N, V], dtype
  DType dtype = DType::F32;
  int64_t N = 0, V = 0;
  const int32_t* labels = nullptr;  // [N], 0 <= label < V
  float invTemp = 1.f;
  float* logp = nullptr;     // [N] out
  float* entropy = nullptr;  // [N] out, optional
};

// The fused GRPO loss. Per-token inputs are already expanded (advantage per token) and the
// aggregation is folded into weight[t] = d loss / d loss_t, so the kernel is row-local.
struct GrpoLossArgs {
  // Either logits (+labels) or logpIn.
  const void* logits = nullptr;  // [N, V]
  DType dtype = DType::F32;
  int64_t N = 0, V = 0;
  const int32_t* labels = nullptr;  // [N]
  float invTemp = 1.f;
  const float* logpIn = nullptr;  // [N] (log-prob-only variant)

  const float* oldLogp = nullptr;  // [N]
  const float* refLogp = nullptr;  // [N] or null
  const float* adv = nullptr;      // [N]
  const float* weight = nullptr;   // [N] aggregation weight d loss / d loss_t
  const float* mask = nullptr;     // [N] the caller's mask: 0 = token ignored (weight may underflow to 0 while active)
  GrpoCoefs coefs;

  void* gradLogits = nullptr;  // [N, V] in dtype, may alias logits; null = forward only
  float* gradLogp = nullptr;   // [N] (log-prob-only variant)

  // Per-token outputs [N]; the host reduces them in float64 in a fixed order.
  float* tokLoss = nullptr;
  float* tokPg = nullptr;
  float* tokKl = nullptr;
  float* tokEntropy = nullptr;  // logits variant only
  float* tokLogRatio = nullptr;
  uint8_t* tokClipped = nullptr;
};

// One token of the log-prob-only variant (no logits to read): the same code on both backends.
SOPHIA_HD void grpo_logp_token(const GrpoLossArgs& a, int64_t t) {
  if (a.mask[t] == 0.f) {
    a.tokLoss[t] = a.tokPg[t] = a.tokKl[t] = a.tokLogRatio[t] = 0.f;
    a.tokClipped[t] = 0;
    if (a.gradLogp) a.gradLogp[t] = 0.f;
    return;
  }
  TokenLoss tl = token_loss(a.logpIn[t], a.oldLogp[t], a.refLogp ? a.refLogp[t] : 0.f, a.adv[t], a.coefs);
  a.tokLoss[t] = tl.loss;
  a.tokPg[t] = tl.pg;
  a.tokKl[t] = tl.kl;
  a.tokLogRatio[t] = tl.logRatio;
  a.tokClipped[t] = tl.clipped ? 1 : 0;
  if (a.gradLogp) a.gradLogp[t] = a.weight[t] * tl.dLogp;
}

// Trust weights (method.md §1.4-1.6, §2). Groups are given as offsets: group g owns
// responses groupStarts[g] .. groupStarts[g+1]-1 (the addon builds them from groupSize or groupIds,
// with `order` mapping position -> response index so groups need not be contiguous).
struct TrustArgs {
  const float* outcome = nullptr;   // [n]
  const float* thinking = nullptr;  // [n], NaN = missing
  const int32_t* order = nullptr;   // [n] response indices sorted by group
  const int32_t* groupStarts = nullptr;  // [G+1] offsets into order
  int64_t n = 0, G = 0;
  bool referenceMode = false;
  float alpha = 0.3f, anneal = 1.f;  // anneal = exp(-step/T)
  float threshold = 0.5f, gate = 0.2f, allSameHigh = 0.9f, allSameLow = 0.1f;
  float* rewards = nullptr;         // [n] out
  float* gamma = nullptr;           // [G] out
  float* thinkingWeight = nullptr;  // [G] out: gamma * alpha * anneal as applied
  float* muCorrect = nullptr;       // [G] out (NaN when the set is empty in paper mode)
  float* muWrong = nullptr;         // [G] out
};

struct NeededArgs {
  const float* outcome = nullptr;
  const int32_t* order = nullptr;
  const int32_t* groupStarts = nullptr;
  int64_t n = 0, G = 0;
  bool referenceMode = false;
  float gate = 0.2f, allSameHigh = 0.9f, allSameLow = 0.1f;
  uint8_t* needed = nullptr;  // [n] out
};

enum class AdvScale : int32_t { Group = 0, Batch = 1, None = 2 };

struct AdvantageArgs {
  const float* rewards = nullptr;  // [n]
  const int32_t* order = nullptr;
  const int32_t* groupStarts = nullptr;
  int64_t n = 0, G = 0;
  AdvScale scale = AdvScale::Group;
  float eps = 1e-6f;
  float* advantages = nullptr;  // [n] out
};

namespace cpu {
void logprobs(const LogprobsArgs& a);
void grpo_loss(const GrpoLossArgs& a);
void trust_rewards(const TrustArgs& a);
void thinking_needed(const NeededArgs& a);
void group_advantages(const AdvantageArgs& a);
// Streams `bytes` of memory `iters` times; returns the checksum so the reads are not elided.
double stream_read(const float* data, int64_t n, int iters);
int num_threads();
// The instruction set the row kernels use: "avx2" (x86-64 with AVX2+FMA, picked at load) or "base".
const char* simd_level();
// Switches the row kernels ("base" or "avx2"); false if this CPU cannot run the requested one.
bool set_isa(const char* isa);
}  // namespace cpu

}  // namespace sophia
