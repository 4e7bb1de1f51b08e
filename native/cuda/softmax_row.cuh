// Row-wise online softmax for the CUDA kernels: one thread block per row (tokens on grid-x), each
// thread walking the row in 16-byte vectors. Values are kept in base 2 (y = z * log2 e) so every
// exponential is one exp2f.
#pragma once
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "sophia/common.h"

namespace sophia::cuda {

constexpr int kThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Running statistics relative to the max m: s = sum 2^(y-m), t = sum 2^(y-m) (y-m).
struct Online {
  float m, s, t;
  int bad;
};

__device__ __forceinline__ void online_add(Online& o, float y) {
  if (!(y <= FLT_MAX)) {  // NaN or +inf (after scaling)
    if (!(y == -INFINITY)) o.bad = 1;
    return;
  }
  if (y > o.m) {
    float shift = o.m - y;  // o.m may be -inf: then s = t = 0 and the scale is irrelevant
    float scale = o.m == -INFINITY ? 0.f : exp2f(shift);
    o.t = scale * (o.t + shift * o.s);
    o.s = scale * o.s;
    o.m = y;
  }
  float d = y - o.m;
  float e = exp2f(d);
  o.s += e;
  o.t += e * d;
}

__device__ __forceinline__ Online online_merge(Online a, Online b) {
  Online r;
  r.bad = a.bad | b.bad;
  r.m = fmaxf(a.m, b.m);
  if (r.m == -INFINITY) {
    r.s = r.t = 0.f;
    return r;
  }
  float da = a.m - r.m, db = b.m - r.m;
  float sa = a.m == -INFINITY ? 0.f : exp2f(da), sb = b.m == -INFINITY ? 0.f : exp2f(db);
  r.s = sa * a.s + sb * b.s;
  r.t = (a.m == -INFINITY ? 0.f : sa * (a.t + da * a.s)) + (b.m == -INFINITY ? 0.f : sb * (b.t + db * b.s));
  return r;
}

// Loads VEC consecutive values (16 bytes) as floats.
template <DType D, int VEC>
__device__ __forceinline__ void load_vec(const typename Elem<D>::T* p, float (&out)[VEC]) {
  uint4 raw = *reinterpret_cast<const uint4*>(p);
  if constexpr (D == DType::F32) {
    const float* f = reinterpret_cast<const float*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = f[k];
  } else {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = Elem<D>::load(h, k);
  }
}

template <DType D, int VEC>
__device__ __forceinline__ void store_vec(typename Elem<D>::T* p, const float (&v)[VEC]) {
  uint4 raw;
  if constexpr (D == DType::F32) {
    float* f = reinterpret_cast<float*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC; ++k) f[k] = v[k];
  } else {
    uint16_t* h = reinterpret_cast<uint16_t*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC; ++k) Elem<D>::store(h, k, v[k]);
  }
  *reinterpret_cast<uint4*>(p) = raw;
}

// Calls f(j, y) for every entry of the row, y = x[j] * scale; vectorised when `vec`.
template <DType D, class F>
__device__ __forceinline__ void for_row(const typename Elem<D>::T* row, int64_t V, float scale, bool vec, F&& f) {
  constexpr int VEC = 16 / sizeof(typename Elem<D>::T);
  if (vec) {
    const int64_t nv = V / VEC;
    for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
      float x[VEC];
      load_vec<D, VEC>(row + i * VEC, x);
#pragma unroll
      for (int k = 0; k < VEC; ++k) f(i * VEC + k, x[k] * scale);
    }
    for (int64_t j = nv * VEC + threadIdx.x; j < V; j += blockDim.x) f(j, Elem<D>::load(row, j) * scale);
  } else {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) f(j, Elem<D>::load(row, j) * scale);
  }
}

__device__ __forceinline__ Online warp_merge(Online o) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    Online other;
    other.m = __shfl_xor_sync(0xffffffffu, o.m, off);
    other.s = __shfl_xor_sync(0xffffffffu, o.s, off);
    other.t = __shfl_xor_sync(0xffffffffu, o.t, off);
    other.bad = __shfl_xor_sync(0xffffffffu, o.bad, off);
    o = online_merge(o, other);
  }
  return o;
}

// Block-wide merge of every thread's Online; the result is returned to all threads.
__device__ __forceinline__ Online block_merge(Online o) {
  __shared__ float sm[32], ss[32], st[32];
  __shared__ int sb[32];
  o = warp_merge(o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) sm[warp] = o.m, ss[warp] = o.s, st[warp] = o.t, sb[warp] = o.bad;
  __syncthreads();
  if (warp == 0) {
    Online w = lane < warps ? Online{sm[lane], ss[lane], st[lane], sb[lane]} : Online{-INFINITY, 0.f, 0.f, 0};
    w = warp_merge(w);
    if (lane == 0) sm[0] = w.m, ss[0] = w.s, st[0] = w.t, sb[0] = w.bad;
  }
  __syncthreads();
  Online r{sm[0], ss[0], st[0], sb[0]};
  __syncthreads();  // the shared slots may be reused by the caller's next reduction
  return r;
}

struct RowResult {
  float lse2;     // log2 sum 2^y (base-2 log-sum-exp of y)
  float lse;      // natural-log lse of z
  float entropy;  // nats
  bool bad;
};

template <DType D>
__device__ __forceinline__ RowResult row_stats(const typename Elem<D>::T* row, int64_t V, float invTemp, bool vec) {
  Online o{-INFINITY, 0.f, 0.f, 0};
  for_row<D>(row, V, invTemp * kLog2e, vec, [&](int64_t, float y) { online_add(o, y); });
  o = block_merge(o);
  RowResult r;
  r.bad = o.bad != 0;
  if (r.bad) {
    r.lse2 = r.lse = r.entropy = NAN;
  } else if (o.m == -INFINITY) {
    r.lse2 = r.lse = -INFINITY;
    r.entropy = NAN;
  } else {
    float l2s = log2f(o.s);
    r.lse2 = o.m + l2s;
    r.lse = r.lse2 * kLn2;
    r.entropy = kLn2 * (l2s - o.t / o.s);
  }
  return r;
}

template <DType D>
bool row_vectorizable(const void* base, int64_t V) {
  return (reinterpret_cast<uintptr_t>(base) % 16 == 0) && ((V * int64_t(sizeof(typename Elem<D>::T))) % 16 == 0);
}

}  // namespace sophia::cuda
