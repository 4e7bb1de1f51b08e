// grpo_loss (CUDA): fused forward + backward, one block per token row.
//   pass 1 reads the row for lse and entropy; thread 0 evaluates the token's loss (grpo_math.h,
//   shared with the CPU backend); pass 2 reads the row again and writes d loss / d logits in the
//   logits' dtype, possibly over the logits. No [N, V] temporary; per-token outputs only.
#include "check.cuh"
#include "softmax_row.cuh"
#include "sophia/cuda.h"

namespace sophia::cuda {

template <DType D>
__global__ void __launch_bounds__(kThreads) grpo_kernel(GrpoLossArgs a, bool vec) {
  using T = typename Elem<D>::T;
  constexpr int VEC = 16 / sizeof(T);
  const int64_t t = blockIdx.x;
  const T* row = static_cast<const T*>(a.logits) + t * a.V;
  T* out = a.gradLogits ? static_cast<T*>(a.gradLogits) + t * a.V : nullptr;
  const float w = a.weight[t];

  if (a.mask[t] == 0.f) {  // masked: never read, gradient 0
    if (threadIdx.x == 0) {
      a.tokLoss[t] = a.tokPg[t] = a.tokKl[t] = a.tokEntropy[t] = a.tokLogRatio[t] = 0.f;
      a.tokClipped[t] = 0;
    }
    if (out) {
      float zero[VEC] = {};
      if (vec) {
        for (int64_t i = threadIdx.x; i < a.V / VEC; i += blockDim.x) store_vec<D, VEC>(out + i * VEC, zero);
        for (int64_t j = (a.V / VEC) * VEC + threadIdx.x; j < a.V; j += blockDim.x) Elem<D>::store(out, j, 0.f);
      } else {
        for (int64_t j = threadIdx.x; j < a.V; j += blockDim.x) Elem<D>::store(out, j, 0.f);
      }
    }
    return;
  }

  __shared__ float labelY;
  const int32_t label = a.labels[t];
  if (threadIdx.x == 0) labelY = Elem<D>::load(row, label) * a.invTemp * kLog2e;  // before any write
  RowResult r = row_stats<D>(row, a.V, a.invTemp, vec);  // ends with a barrier

  __shared__ float gS, ceS;
  if (threadIdx.x == 0) {
    float logp = r.bad ? NAN : logp_out((labelY - r.lse2) * kLn2);
    float ref = a.refLogp ? a.refLogp[t] : 0.f;
    TokenLoss tl = token_loss(logp, a.oldLogp[t], ref, a.adv[t], a.coefs);
    a.tokLoss[t] = tl.loss - a.coefs.entropyCoef * entropy_out(r.entropy);
    a.tokPg[t] = tl.pg;
    a.tokKl[t] = tl.kl;
    a.tokEntropy[t] = entropy_out(r.entropy);
    a.tokLogRatio[t] = tl.logRatio;
    a.tokClipped[t] = tl.clipped ? 1 : 0;
    gS = w * tl.dLogp * a.invTemp;
    ceS = a.coefs.entropyCoef * w * a.invTemp;
  }
  __syncthreads();
  if (!out) return;
  const bool finite = !r.bad && r.lse2 != -INFINITY;
  const float g = gS, ce = ceS, lse2 = r.lse2, H = r.entropy;
  // dz_j = g (1[j = label] - p_j) + ce p_j (log p_j + H), scaled by invTemp above.
  auto grad = [&](int64_t j, float y) {
    if (!finite) return NAN;
    float d2 = y - lse2;  // log2 p_j
    float p = exp2f(d2);
    float v = -g * p;
    if (ce != 0.f && p > 0.f) v += ce * p * (d2 * kLn2 + H);
    if (j == label) v += g;
    return v;
  };
  const float scale = a.invTemp * kLog2e;
  if (vec) {
    const int64_t nv = a.V / VEC;
    for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
      float x[VEC];
      load_vec<D, VEC>(row + i * VEC, x);
#pragma unroll
      for (int k = 0; k < VEC; ++k) x[k] = grad(i * VEC + k, x[k] * scale);
      store_vec<D, VEC>(out + i * VEC, x);
    }
    for (int64_t j = nv * VEC + threadIdx.x; j < a.V; j += blockDim.x) Elem<D>::store(out, j, grad(j, Elem<D>::load(row, j) * scale));
  } else {
    for (int64_t j = threadIdx.x; j < a.V; j += blockDim.x) Elem<D>::store(out, j, grad(j, Elem<D>::load(row, j) * scale));
  }
}

// The log-prob-only variant: one thread per token.
__global__ void grpo_logp_kernel(GrpoLossArgs a) {
  int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < a.N) grpo_logp_token(a, t);
}

template <DType D>
static void launch(const GrpoLossArgs& a) {
  bool vec = row_vectorizable<D>(a.logits, a.V) && (!a.gradLogits || row_vectorizable<D>(a.gradLogits, a.V));
  grpo_kernel<D><<<unsigned(a.N), kThreads>>>(a, vec);
  SOPHIA_CUDA_CHECK(cudaGetLastError());
}

void grpo_loss(const GrpoLossArgs& a) {
  if (a.N == 0) return;
  if (!a.logits) {
    grpo_logp_kernel<<<unsigned((a.N + 255) / 256), 256>>>(a);
    SOPHIA_CUDA_CHECK(cudaGetLastError());
  } else {
    switch (a.dtype) {
      case DType::F32: launch<DType::F32>(a); break;
      case DType::BF16: launch<DType::BF16>(a); break;
      case DType::F16: launch<DType::F16>(a); break;
    }
  }
  SOPHIA_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace sophia::cuda
