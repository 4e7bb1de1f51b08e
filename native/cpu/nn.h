// The layers of the embedded model on the CPU, forward and backward side by side (nn.cpp).
// All tensors are row-major float32; N rows (tokens), 64-bit offsets. Backward functions
// accumulate (+=) into parameter gradients and overwrite input gradients unless noted.
#pragma once
#include <cstdint>

namespace sophia::cpu {

// C[M, N] (+)= op(A)[M, K] · op(B)[K, N]; op = transpose when tA / tB (gemm_kernel.inc).
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB,
          float* C, int64_t ldc, bool accumulate);

namespace nn {

// out[N, O] = inp[N, I] · W[O, I]ᵀ + bias[O]   (bias may be null)
void matmul_forward(float* out, const float* inp, const float* W, const float* bias, int64_t N, int64_t I, int64_t O);
// dinp[N, I] (+)= dout · W;  dW[O, I] += doutᵀ · inp;  dbias[O] += Σ_n dout[n].  dinp may be null;
// accumulateInput adds into dinp instead of overwriting it.
void matmul_backward(float* dinp, float* dW, float* dbias, const float* dout, const float* inp, const float* W, int64_t N,
                     int64_t I, int64_t O, bool accumulateInput = false);

// out[n] = x[n] · rstd[n] · w,  rstd[n] = 1 / sqrt(mean(x[n]²) + eps)
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps);
// dx[N, C] (+= when accumulate), dw[C] +=
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int64_t N,
                      int64_t C, bool accumulate);

// Rotary positions on x[N, heads, hd] in place: pairs (2i, 2i+1) of each head turn by
// pos[n] · theta^(-2i/hd). inverse = true turns back (the backward pass).
void rope(float* x, const int32_t* pos, int64_t N, int64_t heads, int64_t hd, float theta, bool inverse);

// Multi-head attention over packed sequences: sequence s owns rows seq[s] .. seq[s+1]-1.
//   q[N, H, hd], k, v [N, Hkv, hd] (head h reads kv head h / (H / Hkv)), out[N, H, hd]
//   probs: for sequence s, head h, a [len, len] block at probOff[s] + h·len² (len = its length)
struct AttnShape {
  int64_t N = 0, S = 0, H = 0, Hkv = 0, hd = 0;
  const int32_t* seq = nullptr;      // [S + 1]
  const int64_t* probOff = nullptr;  // [S]
  bool causal = true;
};
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, const AttnShape& s);
// dq (overwritten), dk, dv (overwritten) from dout; probs from the forward pass.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, const AttnShape& s);

// One new query per row against its stream's cache: q[R, H, hd]; the cache of row r starts at
// kc + slot[r]·stride (vc likewise) and holds len[r] positions of [Hkv, hd]; out[R, H, hd].
void attention_decode(float* out, const float* q, const float* kc, const float* vc, int64_t stride, const int32_t* slot,
                      const int32_t* len, int64_t R, int64_t H, int64_t Hkv, int64_t hd);

// h = silu(g) · u over n elements
void swiglu_forward(float* h, const float* g, const float* u, int64_t n);
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n);

// Σ_n x[n, c] into out[c] (+=), in a fixed order whatever the number of threads.
void column_sum(float* out, const float* x, int64_t N, int64_t C);

}  // namespace nn
}  // namespace sophia::cpu
