// The layers of the embedded model on the GPU (nn.cu): the functions of native/cpu/nn.h with the
// same names, arguments and semantics, on device pointers, plus a trailing Exec (stream and an
// optional workspace). Row-major float32, 64-bit offsets. Backward functions accumulate (+=) into
// parameter gradients and overwrite input gradients unless noted.
//
// Deterministic: no atomics anywhere. Every output element has one writer that sums in a fixed
// order; reductions over rows (weight gradients, column sums) split the rows into chunks that
// depend only on the sizes and on Exec::workFloats, and add the chunks in index order.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace sophia::cuda {

// Where a call runs. `work` (device, `workFloats` floats) lets gemm split K and column sums split
// rows when there are too few output tiles to fill the GPU; without it they run unsplit (slower,
// equally correct, a different but fixed summation order). One workspace must not be shared by
// calls in flight on different streams.
struct Exec {
  cudaStream_t stream = nullptr;
  float* work = nullptr;
  int64_t workFloats = 0;
};

// C[M, N] (+)= op(A)[M, K] · op(B)[K, N]; op = transpose when tA / tB; leading dimensions in floats.
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB,
          float* C, int64_t ldc, bool accumulate, const Exec& ex = {});

namespace nn {

// out[N, O] = inp[N, I] · W[O, I]ᵀ + bias[O]   (bias may be null)
void matmul_forward(float* out, const float* inp, const float* W, const float* bias, int64_t N, int64_t I, int64_t O,
                    const Exec& ex = {});
// dinp[N, I] (+)= dout · W;  dW[O, I] += doutᵀ · inp;  dbias[O] += Σ_n dout[n].  dinp may be null.
void matmul_backward(float* dinp, float* dW, float* dbias, const float* dout, const float* inp, const float* W, int64_t N,
                     int64_t I, int64_t O, bool accumulateInput = false, const Exec& ex = {});

// out[n] = x[n] · rstd[n] · w,  rstd[n] = 1 / sqrt(mean(x[n]²) + eps)
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps,
                     const Exec& ex = {});
// dx[N, C] (+= when accumulate), dw[C] +=
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int64_t N,
                      int64_t C, bool accumulate, const Exec& ex = {});

// Rotary positions on x[N, heads, hd] in place; pos[N] on the device. inverse = true turns back.
void rope(float* x, const int32_t* pos, int64_t N, int64_t heads, int64_t hd, float theta, bool inverse,
          const Exec& ex = {});

// As cpu::nn::AttnShape; seq [S + 1] and probOff [S] are DEVICE pointers.
struct AttnShape {
  int64_t N = 0, S = 0, H = 0, Hkv = 0, hd = 0;
  const int32_t* seq = nullptr;
  const int64_t* probOff = nullptr;
  bool causal = true;
};
// The probabilities are kept, exactly as on the CPU: for sequence s, head h, a [len, len] block at
// probOff[s] + h·len² (rows past the causal end hold 0).
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, const AttnShape& s,
                       const Exec& ex = {});
// dq (overwritten), dk, dv (overwritten) from dout; probs from the forward pass. dq doubles as the
// store of each row's Σ_u P·dP between the kernels, so it must not alias an input.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, const AttnShape& s, const Exec& ex = {});

// One new query per row against its stream's cache (all device pointers): q[R, H, hd]; the cache
// of row r starts at kc + slot[r]·stride (vc likewise) and holds len[r] positions of [Hkv, hd].
void attention_decode(float* out, const float* q, const float* kc, const float* vc, int64_t stride, const int32_t* slot,
                      const int32_t* len, int64_t R, int64_t H, int64_t Hkv, int64_t hd, const Exec& ex = {});

// h = silu(g) · u over n elements
void swiglu_forward(float* h, const float* g, const float* u, int64_t n, const Exec& ex = {});
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n, const Exec& ex = {});

// Σ_n x[n, c] into out[c] (+=), in a fixed order.
void column_sum(float* out, const float* x, int64_t N, int64_t C, const Exec& ex = {});

}  // namespace nn
}  // namespace sophia::cuda
