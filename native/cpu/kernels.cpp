// CPU entry points: picks the row kernels for the best instruction set this CPU has.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "sophia/kernels.h"
#include "threadpool.h"

namespace sophia::cpu {

namespace base {
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB,
          float* C, int64_t ldc, bool accumulate);
void logprobs_rows(const LogprobsArgs& a);
void grpo_rows(const GrpoLossArgs& a);
double stream_read(const float* data, int64_t n, int iters);
}  // namespace base
#if defined(__x86_64__) && defined(__GNUC__)
#define SOPHIA_X86_KERNELS 1
namespace avx2 {
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB,
          float* C, int64_t ldc, bool accumulate);
void logprobs_rows(const LogprobsArgs& a);
void grpo_rows(const GrpoLossArgs& a);
double stream_read(const float* data, int64_t n, int iters);
}  // namespace avx2
namespace avx512 {
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB,
          float* C, int64_t ldc, bool accumulate);
void logprobs_rows(const LogprobsArgs& a);
void grpo_rows(const GrpoLossArgs& a);
double stream_read(const float* data, int64_t n, int iters);
}  // namespace avx512
#endif

enum class Isa { Base, Avx2, Avx512 };

static bool cpu_has(Isa isa) {
#ifdef SOPHIA_X86_KERNELS
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::Avx2) return avx2;
  if (isa == Isa::Avx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  return isa == Isa::Base;
}

static bool parse_isa(const char* s, Isa* out) {
  if (std::strcmp(s, "base") == 0) return *out = Isa::Base, true;
  if (std::strcmp(s, "avx2") == 0) return *out = Isa::Avx2, true;
  if (std::strcmp(s, "avx512") == 0) return *out = Isa::Avx512, true;
  return false;
}

// The best the CPU has, or SOPHIA_CPU_ISA (base|avx2|avx512) when set and supported.
static Isa detect() {
  Isa wanted;
  const char* env = std::getenv("SOPHIA_CPU_ISA");
  if (env && parse_isa(env, &wanted) && cpu_has(wanted)) return wanted;
  return cpu_has(Isa::Avx512) ? Isa::Avx512 : cpu_has(Isa::Avx2) ? Isa::Avx2 : Isa::Base;
}

static Isa current = detect();

bool set_isa(const char* name) {
  Isa isa;
  if (!parse_isa(name, &isa) || !cpu_has(isa)) return false;
  current = isa;
  return true;
}

const char* simd_level() { return current == Isa::Avx512 ? "avx512" : current == Isa::Avx2 ? "avx2" : "base"; }

#ifdef SOPHIA_X86_KERNELS
#define SOPHIA_DISPATCH(fn, ...) \
  (current == Isa::Avx512 ? avx512::fn(__VA_ARGS__) : current == Isa::Avx2 ? avx2::fn(__VA_ARGS__) : base::fn(__VA_ARGS__))
#else
#define SOPHIA_DISPATCH(fn, ...) base::fn(__VA_ARGS__)
#endif

void logprobs(const LogprobsArgs& a) { SOPHIA_DISPATCH(logprobs_rows, a); }
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB, float* C,
          int64_t ldc, bool accumulate) {
  SOPHIA_DISPATCH(gemm, M, N, K, A, lda, tA, B, ldb, tB, C, ldc, accumulate);
}
double stream_read(const float* data, int64_t n, int iters) { return SOPHIA_DISPATCH(stream_read, data, n, iters); }

void grpo_loss(const GrpoLossArgs& a) {
  if (a.logits) return SOPHIA_DISPATCH(grpo_rows, a);
  // The log-prob-only variant: O(N), no rows to read.
  for (int64_t t = 0; t < a.N; ++t) grpo_logp_token(a, t);
}

int num_threads() { return ThreadPool::instance().size(); }

}  // namespace sophia::cpu
