// Row-wise softmax statistics and the softmax gradient row, for the CPU backend.
//
// One row z = x * invTemp of V entries is read from memory once: it is walked in chunks that
// stay in L1, each chunk first for its max, then for the rescaled sums. Sums run in 16 lanes
// so the compiler vectorises them; exp is a polynomial (no libm call inside the loops).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "sophia/common.h"

namespace sophia::cpu {

constexpr int kLanes = 16;
constexpr int64_t kChunk = 2048;

// exp(x) for x <= 0 (the only use here), about 2 ulp; exactly 0 below -87 and for -inf.
static inline float exp_neg(float x) {
  float xc = x < -87.f ? -87.f : x;
  float kf = xc * 1.44269504088896341f;
  float n = (kf + 12582912.f) - 12582912.f;  // round to nearest without libm: n in [-126, 0], |r| <= ln2/2
  float r = xc - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  int32_t ni = int32_t(n);
  float scale = bits_f32(uint32_t(ni + 127) << 23);
  float e = p * scale;
  return x < -87.f ? 0.f : e;
}

struct RowStats {
  float lse;      // log sum exp z (-inf when every entry is -inf)
  float entropy;  // -sum p log p
  bool bad;       // a NaN or +inf entry: the row's statistics are NaN
};

template <DType D>
RowStats row_stats(const typename Elem<D>::T* row, int64_t V, float invTemp) {
  float m = -INFINITY;  // the running max starts at -inf, never 0: all-negative rows stay exact
  float s[kLanes], t[kLanes];  // sum e^(z-m) and sum e^(z-m)(z-m), relative to the running max
  for (int k = 0; k < kLanes; ++k) s[k] = t[k] = 0.f;
  int bad = 0;
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < V ? c0 + kChunk : V;
    float cm[kLanes];
    for (int k = 0; k < kLanes; ++k) cm[k] = -INFINITY;
    int64_t j = c0;
    for (; j + kLanes <= c1; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        float z = Elem<D>::load(row, j + k) * invTemp;
        bad |= !(z <= FLT_MAX);
        cm[k] = z > cm[k] ? z : cm[k];
      }
    }
    for (; j < c1; ++j) {
      float z = Elem<D>::load(row, j) * invTemp;
      bad |= !(z <= FLT_MAX);
      cm[0] = z > cm[0] ? z : cm[0];
    }
    float chunkMax = cm[0];
    for (int k = 1; k < kLanes; ++k) chunkMax = cm[k] > chunkMax ? cm[k] : chunkMax;
    if (bad) break;
    if (chunkMax > m) {
      if (m != -INFINITY) {
        float scale = std::exp(m - chunkMax), shift = m - chunkMax;
        for (int k = 0; k < kLanes; ++k) {
          t[k] = scale * (t[k] + shift * s[k]);
          s[k] *= scale;
        }
      }
      m = chunkMax;
    }
    if (m == -INFINITY) continue;  // so far every entry is -inf
    j = c0;
    for (; j + kLanes <= c1; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        float d = Elem<D>::load(row, j + k) * invTemp - m;
        float e = exp_neg(d);
        s[k] += e;
        t[k] += e > 0.f ? e * d : 0.f;  // -inf entries add nothing (never 0 * -inf)
      }
    }
    for (; j < c1; ++j) {
      float d = Elem<D>::load(row, j) * invTemp - m;
      float e = exp_neg(d);
      s[0] += e;
      t[0] += e > 0.f ? e * d : 0.f;
    }
  }
  RowStats r;
  r.bad = bad != 0;
  if (r.bad) {
    r.lse = r.entropy = NAN;
    return r;
  }
  double S = 0, Tt = 0;
  for (int k = 0; k < kLanes; ++k) {
    S += s[k];
    Tt += t[k];
  }
  if (m == -INFINITY) {  // no finite entry: no distribution
    r.lse = -INFINITY;
    r.entropy = NAN;
    return r;
  }
  double logS = std::log(S);
  r.lse = float(m + logS);
  r.entropy = float(logS - Tt / S);
  return r;
}

// d loss / d logits for one row: (g (1[j=label] - p_j) + ce p_j (log p_j + H)) * invTemp,
// with ce = entropyCoef * w. Written in the logits' dtype; may overwrite the row being read.
template <DType D>
void row_grad(const typename Elem<D>::T* row, typename Elem<D>::T* out, int64_t V, float invTemp,
              const RowStats& st, int32_t label, float g, float ce) {
  const float lse = st.lse, H = st.entropy;
  const float gs = g * invTemp, cs = ce * invTemp;
  const float labelZ = Elem<D>::load(row, label) * invTemp;
  if (ce == 0.f) {
    for (int64_t j = 0; j < V; ++j) {
      float p = exp_neg(Elem<D>::load(row, j) * invTemp - lse);
      Elem<D>::store(out, j, -gs * p);
    }
  } else {
    for (int64_t j = 0; j < V; ++j) {
      float lp = Elem<D>::load(row, j) * invTemp - lse;
      float p = exp_neg(lp);
      float ent = p > 0.f ? cs * p * (lp + H) : 0.f;
      Elem<D>::store(out, j, ent - gs * p);
    }
  }
  // The label's own term, from the label's logit read before the row was overwritten.
  float pl = exp_neg(labelZ - lse);
  float entL = (ce != 0.f && pl > 0.f) ? cs * pl * ((labelZ - lse) + H) : 0.f;
  Elem<D>::store(out, label, gs * (1.f - pl) + entL);
}

}  // namespace sophia::cpu
