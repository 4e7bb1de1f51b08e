// grpo_loss: fused PPO-clip GRPO loss with KL and entropy terms, and d loss / d logits.
//   logits [N, V] (or logpIn [N]), labels [N], oldLogp/refLogp/adv/weight [N]
//   -> per-token loss parts [N]; gradLogits [N, V] in the logits' dtype (or gradLogp [N])
// Each row is read once for its statistics and once more (from cache for V up to ~10^5) for
// its gradient; no [N, V] temporary exists. Rows with weight 0 are not read; their gradient is 0.
#include <cstring>

#include "softmax_row.h"
#include "sophia/kernels.h"
#include "threadpool.h"

namespace sophia::cpu {

static inline void store_token(const GrpoLossArgs& a, int64_t t, const TokenLoss& tl, float H) {
  a.tokLoss[t] = tl.loss - a.coefs.entropyCoef * H;
  a.tokPg[t] = tl.pg;
  a.tokKl[t] = tl.kl;
  if (a.tokEntropy) a.tokEntropy[t] = H;
  a.tokLogRatio[t] = tl.logRatio;
  a.tokClipped[t] = tl.clipped ? 1 : 0;
}

static inline void zero_token(const GrpoLossArgs& a, int64_t t) {
  a.tokLoss[t] = a.tokPg[t] = a.tokKl[t] = a.tokLogRatio[t] = 0.f;
  if (a.tokEntropy) a.tokEntropy[t] = 0.f;
  a.tokClipped[t] = 0;
}

template <DType D>
static void grpo_logits_impl(const GrpoLossArgs& a) {
  using T = typename Elem<D>::T;
  const T* logits = static_cast<const T*>(a.logits);
  T* grad = static_cast<T*>(a.gradLogits);
  int64_t grain = a.V >= 8192 ? 1 : 8;
  ThreadPool::instance().parallel_for(a.N, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const T* row = logits + t * a.V;
      const float w = a.weight[t];
      if (w == 0.f) {
        zero_token(a, t);
        if (grad) std::memset(grad + t * a.V, 0, size_t(a.V) * sizeof(T));
        continue;
      }
      RowStats st = row_stats<D>(row, a.V, a.invTemp);
      const int32_t label = a.labels[t];
      float logp = st.bad ? NAN : Elem<D>::load(row, label) * a.invTemp - st.lse;
      float ref = a.refLogp ? a.refLogp[t] : 0.f;
      TokenLoss tl = token_loss(logp, a.oldLogp[t], ref, a.adv[t], a.coefs);
      store_token(a, t, tl, st.entropy);
      if (!grad) continue;
      T* out = grad + t * a.V;
      if (!std::isfinite(st.lse) || std::isnan(st.entropy)) {
        for (int64_t j = 0; j < a.V; ++j) Elem<D>::store(out, j, NAN);
        continue;
      }
      row_grad<D>(row, out, a.V, a.invTemp, st, label, w * tl.dLogp, a.coefs.entropyCoef * w);
    }
  });
}

void grpo_loss(const GrpoLossArgs& a) {
  if (!a.logits) {
    for (int64_t t = 0; t < a.N; ++t) {
      const float w = a.weight[t];
      if (w == 0.f) {
        zero_token(a, t);
        if (a.gradLogp) a.gradLogp[t] = 0.f;
        continue;
      }
      float ref = a.refLogp ? a.refLogp[t] : 0.f;
      TokenLoss tl = token_loss(a.logpIn[t], a.oldLogp[t], ref, a.adv[t], a.coefs);
      store_token(a, t, tl, 0.f);
      if (a.gradLogp) a.gradLogp[t] = w * tl.dLogp;
    }
    return;
  }
  switch (a.dtype) {
    case DType::F32: return grpo_logits_impl<DType::F32>(a);
    case DType::BF16: return grpo_logits_impl<DType::BF16>(a);
    case DType::F16: return grpo_logits_impl<DType::F16>(a);
  }
}

}  // namespace sophia::cpu
