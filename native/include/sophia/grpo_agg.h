// How the GRPO loss aggregates its per-token terms (shared/reference/kernels.md, "Aggregation"):
// the per-token weights the kernels multiply into the gradient, and the float64 reduction of the
// per-token outputs into the loss and its metrics. One definition for every backend and caller.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace sophia {

enum class LossAgg { TokenMean, SeqMeanTokenMean, SeqMeanTokenSum, SeqMeanTokenSumNorm };

// weight[t] (and the unrounded weight64[t]) for mask[N] over B sequences [starts[b], starts[b+1]):
//   token-mean                m / Σ m
//   seq-mean-token-mean       m / (Σ_seq m · sequences with any mask)
//   seq-mean-token-sum        m / sequences with any mask
//   seq-mean-token-sum-norm   m / (B · maxLen)
// Masked tokens (m = 0) weigh 0. Sums in float64, in a fixed order.
inline void grpo_weights(const float* mask, const int32_t* starts, int64_t B, LossAgg agg, int64_t maxLen, float* weight,
                         double* weight64) {
  double total = 0;
  int64_t active = 0;
  std::vector<double> seqSum(size_t(B), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = starts[b]; t < starts[b + 1]; ++t) seqSum[b] += mask[t];
    total += seqSum[b];
    active += seqSum[b] > 0;
  }
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = starts[b]; t < starts[b + 1]; ++t) {
      const double m = mask[t];
      double w = 0;
      if (m != 0) {
        switch (agg) {
          case LossAgg::TokenMean: w = m / total; break;
          case LossAgg::SeqMeanTokenMean: w = m / (seqSum[b] * double(active)); break;
          case LossAgg::SeqMeanTokenSum: w = m / double(active); break;
          case LossAgg::SeqMeanTokenSumNorm: w = m / (double(B) * double(maxLen)); break;
        }
      }
      weight[t] = float(w);
      weight64[t] = w;
    }
  }
}

// The loss and the metrics of one call, from the per-token outputs of the kernel.
struct GrpoTotals {
  double loss = 0, pgLoss = 0, klLoss = 0, entropy = 0;
  double maskSum = 0, clipped = 0, negLogRatio = 0;  // clipFrac = clipped / maskSum, ppoKl = negLogRatio / maskSum
  int64_t nonFinite = 0;                              // tokens whose loss is not finite
};

// Σ_t w_t · (loss, pg, kl, H) and the mask-weighted clip count and −log ratio, in float64 in token
// order; entropy may be null (log-prob input has none).
inline GrpoTotals grpo_reduce(int64_t N, const float* mask, const double* weight64, const float* tokLoss, const float* tokPg,
                              const float* tokKl, const float* tokEntropy, const float* tokLogRatio, const uint8_t* tokClipped) {
  GrpoTotals r;
  for (int64_t t = 0; t < N; ++t) {
    const double m = mask[t];
    if (m == 0) continue;
    const double w = weight64[t];
    if (!std::isfinite(tokLoss[t])) ++r.nonFinite;
    r.loss += w * tokLoss[t];
    r.pgLoss += w * tokPg[t];
    r.klLoss += w * tokKl[t];
    if (tokEntropy) r.entropy += w * tokEntropy[t];
    r.maskSum += m;
    r.clipped += m * tokClipped[t];
    r.negLogRatio -= m * tokLogRatio[t];
  }
  return r;
}

}  // namespace sophia
