// logprobs (CUDA): one block per token row.
//   logits [N, V] f32|bf16|f16, labels [N]  ->  logp [N], entropy [N] (optional)
#include "check.cuh"
#include "softmax_row.cuh"
#include "sophia/cuda.h"
#include "sophia/grpo_math.h"

namespace sophia::cuda {

template <DType D>
__global__ void __launch_bounds__(kThreads) logprobs_kernel(LogprobsArgs a, bool vec) {
  using T = typename Elem<D>::T;
  const int64_t t = blockIdx.x;
  const T* row = static_cast<const T*>(a.logits) + t * a.V;
  RowResult r = row_stats<D>(row, a.V, a.invTemp, vec);
  if (threadIdx.x == 0) {
    float yl = Elem<D>::load(row, a.labels[t]) * a.invTemp * kLog2e;
    a.logp[t] = r.bad ? NAN : logp_out((yl - r.lse2) * kLn2);
    if (a.entropy) a.entropy[t] = entropy_out(r.entropy);
  }
}

template <DType D>
static void launch(const LogprobsArgs& a) {
  bool vec = row_vectorizable<D>(a.logits, a.V);
  logprobs_kernel<D><<<unsigned(a.N), kThreads>>>(a, vec);
  SOPHIA_CUDA_CHECK(cudaGetLastError());
}

void logprobs(const LogprobsArgs& a) {
  if (a.N == 0) return;
  switch (a.dtype) {
    case DType::F32: launch<DType::F32>(a); break;
    case DType::BF16: launch<DType::BF16>(a); break;
    case DType::F16: launch<DType::F16>(a); break;
  }
  SOPHIA_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace sophia::cuda
