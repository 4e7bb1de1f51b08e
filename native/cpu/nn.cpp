// The layers of the embedded model on the CPU (shapes in nn.h). Matmuls go to the blocked
// GEMM; everything else is row-parallel. Reductions over rows (parameter gradients) are summed
// in fixed 64-row chunks, so results do not depend on the number of threads.
#include "nn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "threadpool.h"

namespace sophia::cpu::nn {

static ThreadPool& pool() { return ThreadPool::instance(); }
constexpr int64_t kChunk = 64;

void matmul_forward(float* out, const float* inp, const float* W, const float* bias, int64_t N, int64_t I, int64_t O) {
  if (bias) {
    pool().parallel_for(N, 256, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) std::memcpy(out + n * O, bias, sizeof(float) * O);
    });
  }
  gemm(N, O, I, inp, I, false, W, I, true, out, O, bias != nullptr);
}

void matmul_backward(float* dinp, float* dW, float* dbias, const float* dout, const float* inp, const float* W, int64_t N,
                     int64_t I, int64_t O, bool accumulateInput) {
  if (dinp) gemm(N, I, O, dout, O, false, W, I, false, dinp, I, accumulateInput);
  gemm(O, I, N, dout, O, true, inp, I, false, dW, I, true);
  if (dbias) column_sum(dbias, dout, N, O);
}

void column_sum(float* out, const float* x, int64_t N, int64_t C) {
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  std::vector<float> part(static_cast<size_t>(chunks * C), 0.f);
  pool().parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      float* p = part.data() + c * C;
      for (int64_t n = c * kChunk; n < std::min(N, (c + 1) * kChunk); ++n)
        for (int64_t j = 0; j < C; ++j) p[j] += x[n * C + j];
    }
  });
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t j = 0; j < C; ++j) out[j] += part[c * C + j];
}

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps) {
  pool().parallel_for(N, 64, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const float* xr = x + n * C;
      float ss = 0.f;
      for (int64_t i = 0; i < C; ++i) ss += xr[i] * xr[i];
      const float r = 1.f / std::sqrt(ss / float(C) + eps);
      rstd[n] = r;
      float* o = out + n * C;
      for (int64_t i = 0; i < C; ++i) o[i] = xr[i] * r * w[i];
    }
  });
}

// y = w ⊙ x · r, r = (mean x² + eps)^(-1/2):  dx = r · (w ⊙ g − x · r² · mean(w ⊙ g ⊙ x)),  dw += g ⊙ x · r
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int64_t N,
                      int64_t C, bool accumulate) {
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  std::vector<float> part(static_cast<size_t>(chunks * C), 0.f);
  pool().parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      float* p = part.data() + c * C;
      for (int64_t n = c * kChunk; n < std::min(N, (c + 1) * kChunk); ++n) {
        const float* xr = x + n * C;
        const float* g = dout + n * C;
        const float r = rstd[n];
        float dot = 0.f;
        for (int64_t i = 0; i < C; ++i) dot += w[i] * g[i] * xr[i];
        const float k = r * r * dot / float(C);
        float* d = dx + n * C;
        for (int64_t i = 0; i < C; ++i) {
          const float v = r * (w[i] * g[i] - xr[i] * k);
          d[i] = accumulate ? d[i] + v : v;
          p[i] += g[i] * xr[i] * r;
        }
      }
    }
  });
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t j = 0; j < C; ++j) dw[j] += part[c * C + j];
}

void rope(float* x, const int32_t* pos, int64_t N, int64_t heads, int64_t hd, float theta, bool inverse) {
  const int64_t half = hd / 2;
  std::vector<float> invFreq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) invFreq[i] = float(std::pow(double(theta), -2.0 * double(i) / double(hd)));
  pool().parallel_for(N, 32, [&](int64_t b, int64_t e) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t n = b; n < e; ++n) {
      for (int64_t i = 0; i < half; ++i) {
        const float a = float(pos[n]) * invFreq[i];
        cs[i] = std::cos(a);
        sn[i] = inverse ? -std::sin(a) : std::sin(a);
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* r = x + (n * heads + h) * hd;
        for (int64_t i = 0; i < half; ++i) {
          const float x0 = r[2 * i], x1 = r[2 * i + 1];
          r[2 * i] = x0 * cs[i] - x1 * sn[i];
          r[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
        }
      }
    }
  });
}

static inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, const AttnShape& s) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = H / Hkv;
  const float scale = 1.f / std::sqrt(float(hd));
  pool().parallel_for(s.S * H, 1, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t sq = task / H, h = task % H, kvh = h / group;
      const int64_t start = s.seq[sq], len = s.seq[sq + 1] - start;
      float* P = probs + s.probOff[sq] + h * len * len;
      for (int64_t t = 0; t < len; ++t) {
        const float* qr = q + ((start + t) * H + h) * hd;
        float* row = P + t * len;
        const int64_t end = s.causal ? t + 1 : len;
        float mx = -INFINITY;
        for (int64_t u = 0; u < end; ++u) {
          row[u] = dot(qr, k + ((start + u) * Hkv + kvh) * hd, hd) * scale;
          mx = std::max(mx, row[u]);
        }
        float sum = 0.f;
        for (int64_t u = 0; u < end; ++u) sum += (row[u] = std::exp(row[u] - mx));
        const float inv = 1.f / sum;
        for (int64_t u = 0; u < end; ++u) row[u] *= inv;
        for (int64_t u = end; u < len; ++u) row[u] = 0.f;
        float* o = out + ((start + t) * H + h) * hd;
        std::memset(o, 0, sizeof(float) * hd);
        for (int64_t u = 0; u < end; ++u) {
          const float p = row[u];
          const float* vr = v + ((start + u) * Hkv + kvh) * hd;
          for (int64_t i = 0; i < hd; ++i) o[i] += p * vr[i];
        }
      }
    }
  });
}

// With P = softmax(S), S = q·kᵀ·scale:  dP = dout·vᵀ,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),
// dq = dS·k·scale,  dk = dSᵀ·q·scale,  dv = Pᵀ·dout. One task owns a kv head and all the query
// heads that read it, so dk and dv have a single writer.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, const AttnShape& s) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = H / Hkv;
  const float scale = 1.f / std::sqrt(float(hd));
  pool().parallel_for(s.S * Hkv, 1, [&](int64_t b, int64_t e) {
    std::vector<float> dS;
    for (int64_t task = b; task < e; ++task) {
      const int64_t sq = task / Hkv, kvh = task % Hkv;
      const int64_t start = s.seq[sq], len = s.seq[sq + 1] - start;
      dS.resize(static_cast<size_t>(len));
      for (int64_t u = 0; u < len; ++u) {
        std::memset(dk + ((start + u) * Hkv + kvh) * hd, 0, sizeof(float) * hd);
        std::memset(dv + ((start + u) * Hkv + kvh) * hd, 0, sizeof(float) * hd);
      }
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        const float* P = probs + s.probOff[sq] + h * len * len;
        for (int64_t t = 0; t < len; ++t) {
          const float* row = P + t * len;
          const float* g = dout + ((start + t) * H + h) * hd;
          const float* qr = q + ((start + t) * H + h) * hd;
          const int64_t end = s.causal ? t + 1 : len;
          float acc = 0.f;
          for (int64_t u = 0; u < end; ++u) {
            const float dp = dot(g, v + ((start + u) * Hkv + kvh) * hd, hd);
            dS[u] = dp;
            acc += row[u] * dp;
            float* dvr = dv + ((start + u) * Hkv + kvh) * hd;
            for (int64_t i = 0; i < hd; ++i) dvr[i] += row[u] * g[i];
          }
          float* dqr = dq + ((start + t) * H + h) * hd;
          std::memset(dqr, 0, sizeof(float) * hd);
          for (int64_t u = 0; u < end; ++u) {
            const float ds = row[u] * (dS[u] - acc) * scale;
            const float* kr = k + ((start + u) * Hkv + kvh) * hd;
            float* dkr = dk + ((start + u) * Hkv + kvh) * hd;
            for (int64_t i = 0; i < hd; ++i) {
              dqr[i] += ds * kr[i];
              dkr[i] += ds * qr[i];
            }
          }
        }
      }
    }
  });
}

void attention_decode(float* out, const float* q, const float* kc, const float* vc, int64_t stride, const int32_t* slot,
                      const int32_t* len, int64_t R, int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t group = H / Hkv;
  const float scale = 1.f / std::sqrt(float(hd));
  pool().parallel_for(R * H, 2, [&](int64_t b, int64_t e) {
    std::vector<float> sc;
    for (int64_t task = b; task < e; ++task) {
      const int64_t r = task / H, h = task % H, kvh = h / group, L = len[r];
      const float* qr = q + (r * H + h) * hd;
      const float* K = kc + slot[r] * stride;
      const float* Vv = vc + slot[r] * stride;
      sc.resize(static_cast<size_t>(L));
      float mx = -INFINITY;
      for (int64_t u = 0; u < L; ++u) {
        sc[u] = dot(qr, K + (u * Hkv + kvh) * hd, hd) * scale;
        mx = std::max(mx, sc[u]);
      }
      float sum = 0.f;
      for (int64_t u = 0; u < L; ++u) sum += (sc[u] = std::exp(sc[u] - mx));
      const float inv = 1.f / sum;
      float* o = out + (r * H + h) * hd;
      std::memset(o, 0, sizeof(float) * hd);
      for (int64_t u = 0; u < L; ++u) {
        const float p = sc[u] * inv;
        const float* vr = Vv + (u * Hkv + kvh) * hd;
        for (int64_t i = 0; i < hd; ++i) o[i] += p * vr[i];
      }
    }
  });
}

void swiglu_forward(float* h, const float* g, const float* u, int64_t n) {
  pool().parallel_for(n, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) h[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
  });
}

// silu(g) = g·σ(g),  silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n) {
  pool().parallel_for(n, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float sg = 1.f / (1.f + std::exp(-g[i]));
      du[i] = dh[i] * g[i] * sg;
      dg[i] = dh[i] * u[i] * sg * (1.f + g[i] * (1.f - sg));
    }
  });
}

}  // namespace sophia::cpu::nn
