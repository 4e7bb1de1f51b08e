// logprobs: logp[t] = z[t, label] - lse(z[t]), entropy[t] = -sum p log p, z = logits * invTemp.
//   logits [N, V] f32|bf16|f16, labels [N] int32  ->  logp [N] f32, entropy [N] f32 (optional)
#include "softmax_row.h"
#include "sophia/kernels.h"
#include "threadpool.h"

#include <vector>

namespace sophia::cpu {

template <DType D>
static void logprobs_impl(const LogprobsArgs& a) {
  using T = typename Elem<D>::T;
  const T* logits = static_cast<const T*>(a.logits);
  int64_t grain = a.V >= 8192 ? 1 : 8;
  ThreadPool::instance().parallel_for(a.N, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const T* row = logits + t * a.V;
      RowStats st = row_stats<D>(row, a.V, a.invTemp);
      a.logp[t] = st.bad ? NAN : Elem<D>::load(row, a.labels[t]) * a.invTemp - st.lse;
      if (a.entropy) a.entropy[t] = st.entropy;
    }
  });
}

void logprobs(const LogprobsArgs& a) {
  switch (a.dtype) {
    case DType::F32: return logprobs_impl<DType::F32>(a);
    case DType::BF16: return logprobs_impl<DType::BF16>(a);
    case DType::F16: return logprobs_impl<DType::F16>(a);
  }
}

double stream_read(const float* data, int64_t n, int iters) {
  const int64_t block = 1 << 16;
  const int64_t blocks = (n + block - 1) / block;
  std::vector<double> part(blocks, 0.0);
  for (int it = 0; it < iters; ++it) {
    ThreadPool::instance().parallel_for(blocks, 4, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        float acc[kLanes] = {};
        int64_t j0 = blk * block, j1 = j0 + block < n ? j0 + block : n, j = j0;
        for (; j + kLanes <= j1; j += kLanes)
          for (int k = 0; k < kLanes; ++k) acc[k] += data[j + k];
        for (; j < j1; ++j) acc[0] += data[j];
        float s = 0;
        for (int k = 0; k < kLanes; ++k) s += acc[k];
        part[blk] += s;
      }
    });
  }
  double total = 0;
  for (double p : part) total += p;
  return total;
}

int num_threads() { return ThreadPool::instance().size(); }

const char* simd_level() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__SSE2__)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

}  // namespace sophia::cpu
