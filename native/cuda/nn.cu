// The layers of the embedded model on the GPU (shapes and contract in nn.cuh; the readable
// reference is native/cpu/nn.cpp). No atomics: every output element has a single writer.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "check.cuh"
#include "nn.cuh"

namespace sophia::cuda {

namespace {

constexpr unsigned kFull = 0xffffffffu;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid for grid-stride loops over n items.
unsigned grid_for(int64_t n, int threads) { return unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), 1 << 20))); }

void check_launch() { SOPHIA_CUDA_CHECK(cudaGetLastError()); }

// Butterfly sum: every lane ends with the same bits (each level adds the same pair of values).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// a · b over n floats by one warp; the result is in every lane.
__device__ __forceinline__ float warp_dot(const float* __restrict__ a, const float* __restrict__ b, int64_t n, int lane) {
  float s = 0.f;
  for (int64_t i = lane; i < n; i += 32) s += a[i] * b[i];
  return warp_sum(s);
}

// ---------------------------------------------------------------------------------------------
// SGEMM: 64×64 output tiles, K in slices of 16 staged in shared memory, 256 threads each owning a
// 4×4 block of the tile. Tiles of op(A) and op(B) are loaded along the memory-contiguous axis of
// each operand (so loads coalesce whatever the transposes) and stored k-major. blockIdx.y is the
// K split: each split writes its own partial tile, and a second kernel adds the splits in order.

constexpr int kBM = 64, kBN = 64, kBK = 16, kGemmThreads = 256;

template <bool TA, bool TB>
__global__ void __launch_bounds__(kGemmThreads)
    sgemm_kernel(int64_t M, int64_t N, int64_t K, const float* __restrict__ A, int64_t lda, const float* __restrict__ B,
                 int64_t ldb, float* D, int64_t ldd, int64_t splitStride, int64_t kPer, bool acc, int64_t tilesN) {
  __shared__ __align__(16) float As[kBK][kBM + 4];
  __shared__ __align__(16) float Bs[kBK][kBN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t tile = blockIdx.x;
  const int64_t m0 = (tile / tilesN) * kBM, n0 = (tile % tilesN) * kBN;
  const int64_t kb = int64_t(blockIdx.y) * kPer, ke = min(K, kb + kPer);
  D += int64_t(blockIdx.y) * splitStride;
  float c[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) c[i][j] = 0.f;

  for (int64_t k0 = kb; k0 < ke; k0 += kBK) {
#pragma unroll
    for (int q = 0; q < (kBM * kBK) / kGemmThreads; ++q) {
      const int e = tid + kGemmThreads * q;
      const int r = TA ? e % kBM : e / kBK;  // row of op(A) in the tile
      const int kk = TA ? e / kBM : e % kBK;
      const int64_t gm = m0 + r, gk = k0 + kk;
      float v = 0.f;
      if (gm < M && gk < ke) v = TA ? A[gk * lda + gm] : A[gm * lda + gk];
      As[kk][r] = v;
    }
#pragma unroll
    for (int q = 0; q < (kBN * kBK) / kGemmThreads; ++q) {
      const int e = tid + kGemmThreads * q;
      const int col = TB ? e / kBK : e % kBN;  // column of op(B) in the tile
      const int kk = TB ? e % kBK : e / kBN;
      const int64_t gn = n0 + col, gk = k0 + kk;
      float v = 0.f;
      if (gn < N && gk < ke) v = TB ? B[gn * ldb + gk] : B[gk * ldb + gn];
      Bs[kk][col] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) c[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t gm = m0 + ty * 4 + i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t gn = n0 + tx * 4 + j;
      if (gn >= N) continue;
      float* p = D + gm * ldd + gn;
      *p = acc ? *p + c[i][j] : c[i][j];
    }
  }
}

// C[M, N] (+)= Σ_s part[s][M, N], the splits added in index order.
__global__ void split_reduce_kernel(float* C, int64_t ldc, const float* __restrict__ part, int64_t M, int64_t N, int64_t splits,
                                    bool acc) {
  const int64_t total = M * N, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += stride) {
    float s = part[e];
    for (int64_t k = 1; k < splits; ++k) s += part[k * total + e];
    float* p = C + (e / N) * ldc + e % N;
    *p = acc ? *p + s : s;
  }
}

__global__ void set_rows_kernel(float* C, int64_t ldc, int64_t M, int64_t N, float v) {
  const int64_t total = M * N, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += stride) C[(e / N) * ldc + e % N] = v;
}

// ---------------------------------------------------------------------------------------------
// Column reductions: out[c] (+)= Σ_n term(n, c). A block owns 32 columns; its 16 row lanes each sum
// a fixed stride of rows, then lane 0 adds the 16 partials in order. With a workspace, blockIdx.y
// takes one chunk of rows and a second pass adds the chunks in order.

constexpr int kColRows = 16;

struct PlainTerm {
  const float* x;
  __device__ float operator()(int64_t n, int64_t c, int64_t C) const { return x[n * C + c]; }
};
struct RmsDwTerm {  // the RMSNorm weight gradient g ⊙ x · r, in the CPU's operation order
  const float *g, *x, *rstd;
  __device__ float operator()(int64_t n, int64_t c, int64_t C) const { return g[n * C + c] * x[n * C + c] * rstd[n]; }
};

template <class Term>
__global__ void __launch_bounds__(32 * kColRows)
    colsum_kernel(float* dst, Term term, int64_t N, int64_t C, int64_t rowsPerChunk, bool acc) {
  __shared__ float part[kColRows][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t n0 = int64_t(blockIdx.y) * rowsPerChunk, n1 = min(N, n0 + rowsPerChunk);
  float s = 0.f;
  if (c < C)
    for (int64_t n = n0 + threadIdx.y; n < n1; n += kColRows) s += term(n, c, C);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = part[0][threadIdx.x];
    for (int k = 1; k < kColRows; ++k) t += part[k][threadIdx.x];
    float* p = dst + int64_t(blockIdx.y) * C + c;
    *p = acc ? *p + t : t;
  }
}

template <class Term>
void column_reduce(float* out, Term term, int64_t N, int64_t C, const Exec& ex) {
  if (N <= 0 || C <= 0) return;
  const int64_t colBlocks = ceil_div(C, 32);
  if (colBlocks > INT_MAX) throw Error("E_RANGE", "column sum: too many columns (" + std::to_string(C) + ")");
  const dim3 block{32, unsigned(kColRows)};
  int64_t chunks = 1, rows = N;
  if (ex.work && N >= 1024 && colBlocks < 128) {
    const int64_t maxChunks = std::min<int64_t>(ex.workFloats / C, 65535);
    rows = 256;
    chunks = ceil_div(N, rows);
    if (chunks > maxChunks && maxChunks >= 2) {
      rows = ceil_div(N, maxChunks);
      chunks = ceil_div(N, rows);
    }
    if (chunks > maxChunks || chunks < 2) chunks = 1, rows = N;
  }
  if (chunks == 1) {
    colsum_kernel<<<dim3(unsigned(colBlocks), 1), block, 0, ex.stream>>>(out, term, N, C, N, true);
    check_launch();
    return;
  }
  colsum_kernel<<<dim3(unsigned(colBlocks), unsigned(chunks)), block, 0, ex.stream>>>(ex.work, term, N, C, rows, false);
  check_launch();
  colsum_kernel<<<dim3(unsigned(colBlocks), 1), block, 0, ex.stream>>>(out, PlainTerm{ex.work}, chunks, C, chunks, true);
  check_launch();
}

// ---------------------------------------------------------------------------------------------

__global__ void bias_rows_kernel(float* out, const float* __restrict__ bias, int64_t N, int64_t O) {
  const int64_t total = N * O, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += stride) out[e] = bias[e % O];
}

constexpr int kRowWarps = 8;  // rows (one per warp) per block for the row kernels

__global__ void __launch_bounds__(32 * kRowWarps)
    rmsnorm_forward_kernel(float* out, float* rstd, const float* __restrict__ x, const float* __restrict__ w, int64_t N, int64_t C,
                           float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  if (n >= N) return;
  const float* xr = x + n * C;
  float ss = 0.f;
  for (int64_t i = lane; i < C; i += 32) ss += xr[i] * xr[i];
  ss = warp_sum(ss);
  const float r = 1.f / sqrtf(ss / float(C) + eps);
  if (lane == 0) rstd[n] = r;
  float* o = out + n * C;
  for (int64_t i = lane; i < C; i += 32) o[i] = xr[i] * r * w[i];
}

__global__ void __launch_bounds__(32 * kRowWarps)
    rmsnorm_dx_kernel(float* dx, const float* __restrict__ dout, const float* __restrict__ x, const float* __restrict__ w,
                      const float* __restrict__ rstd, int64_t N, int64_t C, bool accumulate) {
  const int lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  if (n >= N) return;
  const float* xr = x + n * C;
  const float* g = dout + n * C;
  const float r = rstd[n];
  float dot = 0.f;
  for (int64_t i = lane; i < C; i += 32) dot += w[i] * g[i] * xr[i];
  dot = warp_sum(dot);
  const float k = r * r * dot / float(C);
  float* d = dx + n * C;
  for (int64_t i = lane; i < C; i += 32) {
    const float v = r * (w[i] * g[i] - xr[i] * k);
    d[i] = accumulate ? d[i] + v : v;
  }
}

// One thread per (row, pair): the angle in float as on the CPU, its sine and cosine in double
// (rounded once to float, as close to the CPU's correctly rounded float functions as it gets).
__global__ void rope_kernel(float* x, const int32_t* __restrict__ pos, int64_t N, int64_t heads, int64_t hd, float theta,
                            bool inverse) {
  const int64_t half = hd / 2, total = N * half, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += stride) {
    const int64_t n = e / half, i = e % half;
    const float invFreq = float(pow(double(theta), -2.0 * double(i) / double(hd)));
    const float a = float(pos[n]) * invFreq;
    double sd, cd;
    sincos(double(a), &sd, &cd);
    const float cs = float(cd), sn = inverse ? -float(sd) : float(sd);
    for (int64_t h = 0; h < heads; ++h) {
      float* r = x + (n * heads + h) * hd;
      const float x0 = r[2 * i], x1 = r[2 * i + 1];
      r[2 * i] = x0 * cs - x1 * sn;
      r[2 * i + 1] = x0 * sn + x1 * cs;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attention. A block of kAttnWarps warps per (sequence, head) — or per (sequence, kv head) for
// dk/dv — and gridDim.y blocks splitting its rows; one warp per row, lanes across the head
// dimension, so every dot product is a coalesced load and a butterfly sum. Row sums run over u in
// increasing order like the CPU loops.

constexpr int kAttnWarps = 4;
constexpr int kDimChunk = 128;  // head dims accumulated in registers per pass (4 per lane)

__global__ void __launch_bounds__(32 * kAttnWarps)
    attention_forward_kernel(float* out, float* probs, const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, nn::AttnShape s, float scale) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = H / Hkv;
  const int64_t sq = blockIdx.x / H, h = blockIdx.x % H, kvh = h / group;
  const int64_t start = s.seq[sq], len = s.seq[sq + 1] - start;
  float* P = probs + s.probOff[sq] + h * len * len;
  const int lane = threadIdx.x % 32;
  const int64_t rowStride = int64_t(gridDim.y) * kAttnWarps;
  for (int64_t t = int64_t(blockIdx.y) * kAttnWarps + threadIdx.x / 32; t < len; t += rowStride) {
    const float* qr = q + ((start + t) * H + h) * hd;
    float* row = P + t * len;
    const int64_t end = s.causal ? t + 1 : len;
    float mx = -INFINITY;
    for (int64_t u = 0; u < end; ++u) {
      const float sc = warp_dot(qr, k + ((start + u) * Hkv + kvh) * hd, hd, lane) * scale;
      if (lane == 0) row[u] = sc;
      mx = fmaxf(mx, sc);
    }
    __syncwarp();
    float sum = 0.f;
    for (int64_t u = lane; u < end; u += 32) {
      const float e = expf(row[u] - mx);
      row[u] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    const float inv = 1.f / sum;
    for (int64_t u = lane; u < len; u += 32) row[u] = u < end ? row[u] * inv : 0.f;
    __syncwarp();
    float* o = out + ((start + t) * H + h) * hd;
    for (int64_t i = lane; i < hd; i += 32) {
      float acc = 0.f;
      for (int64_t u = 0; u < end; ++u) acc += row[u] * v[((start + u) * Hkv + kvh) * hd + i];
      o[i] = acc;
    }
  }
}

// Backward, pass 1: acc[t] = Σ_u P[t, u] · (dout[t] · v[u]), kept in dq[t, h, 0] until pass 3.
__global__ void __launch_bounds__(32 * kAttnWarps)
    attention_rowsum_kernel(float* dq, const float* __restrict__ dout, const float* __restrict__ probs,
                            const float* __restrict__ v, nn::AttnShape s) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = H / Hkv;
  const int64_t sq = blockIdx.x / H, h = blockIdx.x % H, kvh = h / group;
  const int64_t start = s.seq[sq], len = s.seq[sq + 1] - start;
  const float* P = probs + s.probOff[sq] + h * len * len;
  const int lane = threadIdx.x % 32;
  const int64_t rowStride = int64_t(gridDim.y) * kAttnWarps;
  for (int64_t t = int64_t(blockIdx.y) * kAttnWarps + threadIdx.x / 32; t < len; t += rowStride) {
    const float* g = dout + ((start + t) * H + h) * hd;
    const float* row = P + t * len;
    const int64_t end = s.causal ? t + 1 : len;
    float acc = 0.f;
    for (int64_t u = 0; u < end; ++u) acc += row[u] * warp_dot(g, v + ((start + u) * Hkv + kvh) * hd, hd, lane);
    if (lane == 0) dq[((start + t) * H + h) * hd] = acc;
  }
}

// Pass 2: one warp per key row u of a kv head, over every query head of its group and every query
// row that sees u: dk[u] = Σ dS[t, u] · q[t] · scale, dv[u] = Σ P[t, u] · dout[t] (heads, then rows,
// in order, as on the CPU).
__global__ void __launch_bounds__(32 * kAttnWarps)
    attention_dkv_kernel(float* dk, float* dv, const float* __restrict__ dq, const float* __restrict__ dout,
                         const float* __restrict__ probs, const float* __restrict__ q, const float* __restrict__ v,
                         nn::AttnShape s, float scale) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = H / Hkv;
  const int64_t sq = blockIdx.x / Hkv, kvh = blockIdx.x % Hkv;
  const int64_t start = s.seq[sq], len = s.seq[sq + 1] - start;
  const int lane = threadIdx.x % 32;
  const int64_t rowStride = int64_t(gridDim.y) * kAttnWarps;
  for (int64_t u = int64_t(blockIdx.y) * kAttnWarps + threadIdx.x / 32; u < len; u += rowStride) {
    const float* vr = v + ((start + u) * Hkv + kvh) * hd;
    for (int64_t c0 = 0; c0 < hd; c0 += kDimChunk) {
      float dka[kDimChunk / 32], dva[kDimChunk / 32];
#pragma unroll
      for (int j = 0; j < kDimChunk / 32; ++j) dka[j] = dva[j] = 0.f;
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        const float* P = probs + s.probOff[sq] + h * len * len;
        for (int64_t t = s.causal ? u : 0; t < len; ++t) {
          const float p = P[t * len + u];
          const float* g = dout + ((start + t) * H + h) * hd;
          const float dp = warp_dot(g, vr, hd, lane);
          const float ds = p * (dp - dq[((start + t) * H + h) * hd]) * scale;
          const float* qr = q + ((start + t) * H + h) * hd;
#pragma unroll
          for (int j = 0; j < kDimChunk / 32; ++j) {
            const int64_t i = c0 + lane + 32 * j;
            if (i < hd) {
              dka[j] += ds * qr[i];
              dva[j] += p * g[i];
            }
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kDimChunk / 32; ++j) {
        const int64_t i = c0 + lane + 32 * j;
        if (i < hd) {
          dk[((start + u) * Hkv + kvh) * hd + i] = dka[j];
          dv[((start + u) * Hkv + kvh) * hd + i] = dva[j];
        }
      }
    }
  }
}

// Pass 3: dq[t] = Σ_u dS[t, u] · k[u] · scale, reading acc back from dq[t, h, 0] before overwriting.
__global__ void __launch_bounds__(32 * kAttnWarps)
    attention_dq_kernel(float* dq, const float* __restrict__ dout, const float* __restrict__ probs,
                        const float* __restrict__ k, const float* __restrict__ v, nn::AttnShape s, float scale) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = H / Hkv;
  const int64_t sq = blockIdx.x / H, h = blockIdx.x % H, kvh = h / group;
  const int64_t start = s.seq[sq], len = s.seq[sq + 1] - start;
  const float* P = probs + s.probOff[sq] + h * len * len;
  const int lane = threadIdx.x % 32;
  const int64_t rowStride = int64_t(gridDim.y) * kAttnWarps;
  for (int64_t t = int64_t(blockIdx.y) * kAttnWarps + threadIdx.x / 32; t < len; t += rowStride) {
    float* dqr = dq + ((start + t) * H + h) * hd;
    const float acc = dqr[0];
    __syncwarp();
    const float* g = dout + ((start + t) * H + h) * hd;
    const float* row = P + t * len;
    const int64_t end = s.causal ? t + 1 : len;
    for (int64_t c0 = 0; c0 < hd; c0 += kDimChunk) {
      float dqa[kDimChunk / 32];
#pragma unroll
      for (int j = 0; j < kDimChunk / 32; ++j) dqa[j] = 0.f;
      for (int64_t u = 0; u < end; ++u) {
        const float dp = warp_dot(g, v + ((start + u) * Hkv + kvh) * hd, hd, lane);
        const float ds = row[u] * (dp - acc) * scale;
        const float* kr = k + ((start + u) * Hkv + kvh) * hd;
#pragma unroll
        for (int j = 0; j < kDimChunk / 32; ++j) {
          const int64_t i = c0 + lane + 32 * j;
          if (i < hd) dqa[j] += ds * kr[i];
        }
      }
#pragma unroll
      for (int j = 0; j < kDimChunk / 32; ++j) {
        const int64_t i = c0 + lane + 32 * j;
        if (i < hd) dqr[i] = dqa[j];
      }
    }
  }
}

// One warp per (row, head). Pass 1 keeps a running max and sum (online softmax); pass 2 recomputes
// the scores and accumulates Σ p · v for kDimChunk dims at a time.
__global__ void __launch_bounds__(32 * kAttnWarps)
    attention_decode_kernel(float* out, const float* __restrict__ q, const float* __restrict__ kc, const float* __restrict__ vc,
                            int64_t stride, const int32_t* __restrict__ slot, const int32_t* __restrict__ len, int64_t R,
                            int64_t H, int64_t Hkv, int64_t hd, float scale) {
  const int lane = threadIdx.x % 32;
  const int64_t task = int64_t(blockIdx.x) * kAttnWarps + threadIdx.x / 32;
  if (task >= R * H) return;
  const int64_t r = task / H, h = task % H, kvh = h / (H / Hkv), L = len[r];
  const float* qr = q + (r * H + h) * hd;
  const float* K = kc + int64_t(slot[r]) * stride;
  const float* V = vc + int64_t(slot[r]) * stride;
  float mx = -INFINITY, sum = 0.f;
  for (int64_t u = 0; u < L; ++u) {
    const float sc = warp_dot(qr, K + (u * Hkv + kvh) * hd, hd, lane) * scale;
    if (sc > mx) {
      sum = mx == -INFINITY ? 0.f : sum * expf(mx - sc);
      mx = sc;
    }
    sum += expf(sc - mx);
  }
  const float inv = 1.f / sum;
  float* o = out + (r * H + h) * hd;
  for (int64_t c0 = 0; c0 < hd; c0 += kDimChunk) {
    float oa[kDimChunk / 32];
#pragma unroll
    for (int j = 0; j < kDimChunk / 32; ++j) oa[j] = 0.f;
    for (int64_t u = 0; u < L; ++u) {
      const float p = expf(warp_dot(qr, K + (u * Hkv + kvh) * hd, hd, lane) * scale - mx) * inv;
      const float* vr = V + (u * Hkv + kvh) * hd;
#pragma unroll
      for (int j = 0; j < kDimChunk / 32; ++j) {
        const int64_t i = c0 + lane + 32 * j;
        if (i < hd) oa[j] += p * vr[i];
      }
    }
#pragma unroll
    for (int j = 0; j < kDimChunk / 32; ++j) {
      const int64_t i = c0 + lane + 32 * j;
      if (i < hd) o[i] = oa[j];
    }
  }
}

__global__ void swiglu_forward_kernel(float* h, const float* __restrict__ g, const float* __restrict__ u, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) h[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

__global__ void swiglu_backward_kernel(float* dg, float* du, const float* __restrict__ dh, const float* __restrict__ g,
                                       const float* __restrict__ u, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float sg = 1.f / (1.f + expf(-g[i]));
    du[i] = dh[i] * g[i] * sg;
    dg[i] = dh[i] * u[i] * sg * (1.f + g[i] * (1.f - sg));
  }
}

// Blocks per (sequence, head) along y: enough warps for the average row count, at most 1024.
unsigned attention_row_splits(const nn::AttnShape& s) {
  const int64_t avg = s.S > 0 ? ceil_div(s.N, s.S) : 0;
  return unsigned(std::min<int64_t>(1024, std::max<int64_t>(1, ceil_div(avg, 4 * kAttnWarps))));
}

void check_attention(const nn::AttnShape& s, const char* fn) {
  if (s.H <= 0 || s.Hkv <= 0 || s.H % s.Hkv || s.hd <= 0)
    throw Error("E_INTERNAL", std::string(fn) + ": bad head counts");
  if (s.S * s.H > INT_MAX) throw Error("E_RANGE", std::string(fn) + ": sequences x heads over 2^31");
}

}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, bool tA, const float* B, int64_t ldb, bool tB,
          float* C, int64_t ldc, bool accumulate, const Exec& ex) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate) {
      set_rows_kernel<<<grid_for(M * N, 256), 256, 0, ex.stream>>>(C, ldc, M, N, 0.f);
      check_launch();
    }
    return;
  }
  const int64_t tilesN = ceil_div(N, kBN), tiles = ceil_div(M, kBM) * tilesN;
  if (tiles > INT_MAX) throw Error("E_RANGE", "gemm: " + std::to_string(M) + " x " + std::to_string(N) + " output is too large");
  // Split K when the tiles alone cannot fill the GPU and each split keeps at least 256 of K.
  int64_t splits = 1;
  if (ex.work && tiles < 128 && K >= 512) {
    splits = std::min({ceil_div(256, tiles), K / 256, ex.workFloats / (M * N), int64_t(65535)});
    if (splits < 2) splits = 1;
  }
  const int64_t kPer = splits > 1 ? ceil_div(ceil_div(K, splits), kBK) * kBK : K;
  splits = ceil_div(K, kPer);
  float* D = splits > 1 ? ex.work : C;
  const int64_t ldd = splits > 1 ? N : ldc, splitStride = M * N;
  const bool acc = splits > 1 ? false : accumulate;
  const dim3 grid{unsigned(tiles), unsigned(splits)};
  if (!tA && !tB) sgemm_kernel<false, false><<<grid, kGemmThreads, 0, ex.stream>>>(M, N, K, A, lda, B, ldb, D, ldd, splitStride, kPer, acc, tilesN);
  if (!tA && tB) sgemm_kernel<false, true><<<grid, kGemmThreads, 0, ex.stream>>>(M, N, K, A, lda, B, ldb, D, ldd, splitStride, kPer, acc, tilesN);
  if (tA && !tB) sgemm_kernel<true, false><<<grid, kGemmThreads, 0, ex.stream>>>(M, N, K, A, lda, B, ldb, D, ldd, splitStride, kPer, acc, tilesN);
  if (tA && tB) sgemm_kernel<true, true><<<grid, kGemmThreads, 0, ex.stream>>>(M, N, K, A, lda, B, ldb, D, ldd, splitStride, kPer, acc, tilesN);
  check_launch();
  if (splits > 1) {
    split_reduce_kernel<<<grid_for(M * N, 256), 256, 0, ex.stream>>>(C, ldc, ex.work, M, N, splits, accumulate);
    check_launch();
  }
}

namespace nn {

void matmul_forward(float* out, const float* inp, const float* W, const float* bias, int64_t N, int64_t I, int64_t O,
                    const Exec& ex) {
  if (bias && N > 0 && O > 0) {
    bias_rows_kernel<<<grid_for(N * O, 256), 256, 0, ex.stream>>>(out, bias, N, O);
    check_launch();
  }
  gemm(N, O, I, inp, I, false, W, I, true, out, O, bias != nullptr, ex);
}

void matmul_backward(float* dinp, float* dW, float* dbias, const float* dout, const float* inp, const float* W, int64_t N,
                     int64_t I, int64_t O, bool accumulateInput, const Exec& ex) {
  if (dinp) gemm(N, I, O, dout, O, false, W, I, false, dinp, I, accumulateInput, ex);
  gemm(O, I, N, dout, O, true, inp, I, false, dW, I, true, ex);
  if (dbias) column_sum(dbias, dout, N, O, ex);
}

void column_sum(float* out, const float* x, int64_t N, int64_t C, const Exec& ex) { column_reduce(out, PlainTerm{x}, N, C, ex); }

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps, const Exec& ex) {
  if (N <= 0) return;
  rmsnorm_forward_kernel<<<unsigned(ceil_div(N, kRowWarps)), 32 * kRowWarps, 0, ex.stream>>>(out, rstd, x, w, N, C, eps);
  check_launch();
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int64_t N,
                      int64_t C, bool accumulate, const Exec& ex) {
  if (N <= 0) return;
  rmsnorm_dx_kernel<<<unsigned(ceil_div(N, kRowWarps)), 32 * kRowWarps, 0, ex.stream>>>(dx, dout, x, w, rstd, N, C, accumulate);
  check_launch();
  column_reduce(dw, RmsDwTerm{dout, x, rstd}, N, C, ex);
}

void rope(float* x, const int32_t* pos, int64_t N, int64_t heads, int64_t hd, float theta, bool inverse, const Exec& ex) {
  if (N <= 0 || hd < 2) return;
  rope_kernel<<<grid_for(N * (hd / 2), 256), 256, 0, ex.stream>>>(x, pos, N, heads, hd, theta, inverse);
  check_launch();
}

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, const AttnShape& s,
                       const Exec& ex) {
  if (s.S <= 0 || s.N <= 0) return;
  check_attention(s, "attention_forward");
  const float scale = 1.f / std::sqrt(float(s.hd));
  const dim3 grid{unsigned(s.S * s.H), attention_row_splits(s)};
  attention_forward_kernel<<<grid, 32 * kAttnWarps, 0, ex.stream>>>(out, probs, q, k, v, s, scale);
  check_launch();
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, const AttnShape& s, const Exec& ex) {
  if (s.S <= 0 || s.N <= 0) return;
  check_attention(s, "attention_backward");
  const float scale = 1.f / std::sqrt(float(s.hd));
  const unsigned splits = attention_row_splits(s);
  attention_rowsum_kernel<<<dim3(unsigned(s.S * s.H), splits), 32 * kAttnWarps, 0, ex.stream>>>(dq, dout, probs, v, s);
  check_launch();
  attention_dkv_kernel<<<dim3(unsigned(s.S * s.Hkv), splits), 32 * kAttnWarps, 0, ex.stream>>>(dk, dv, dq, dout, probs, q, v, s,
                                                                                               scale);
  check_launch();
  attention_dq_kernel<<<dim3(unsigned(s.S * s.H), splits), 32 * kAttnWarps, 0, ex.stream>>>(dq, dout, probs, k, v, s, scale);
  check_launch();
}

void attention_decode(float* out, const float* q, const float* kc, const float* vc, int64_t stride, const int32_t* slot,
                      const int32_t* len, int64_t R, int64_t H, int64_t Hkv, int64_t hd, const Exec& ex) {
  if (R <= 0) return;
  if (H <= 0 || Hkv <= 0 || H % Hkv || hd <= 0) throw Error("E_INTERNAL", "attention_decode: bad head counts");
  const float scale = 1.f / std::sqrt(float(hd));
  const int64_t blocks = ceil_div(R * H, kAttnWarps);
  if (blocks > INT_MAX) throw Error("E_RANGE", "attention_decode: rows x heads over 2^31");
  attention_decode_kernel<<<unsigned(blocks), 32 * kAttnWarps, 0, ex.stream>>>(out, q, kc, vc, stride, slot, len, R, H, Hkv, hd,
                                                                               scale);
  check_launch();
}

void swiglu_forward(float* h, const float* g, const float* u, int64_t n, const Exec& ex) {
  if (n <= 0) return;
  swiglu_forward_kernel<<<grid_for(n, 256), 256, 0, ex.stream>>>(h, g, u, n);
  check_launch();
}

void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n, const Exec& ex) {
  if (n <= 0) return;
  swiglu_backward_kernel<<<grid_for(n, 256), 256, 0, ex.stream>>>(dg, du, dh, g, u, n);
  check_launch();
}

}  // namespace nn
}  // namespace sophia::cuda
