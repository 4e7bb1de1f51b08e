// Row-wise softmax statistics and the softmax gradient row, for the CPU backend. Included by
// row_kernels.inc once per instruction set, inside namespace sophia::cpu::SOPHIA_ISA.
//
// One row z = x * invTemp of V entries is read from memory once: it is walked in chunks that
// stay in L1, each chunk first for its max, then for the rescaled sums. Sums run in 16 lanes
// so the compiler vectorises them; exp is a polynomial (no libm call inside the loops).

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
  bool bad = false;
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < V ? c0 + kChunk : V;
    // Per-lane max, and per-lane "saw NaN or +inf" (max of z and of a flag, no branches).
    float cm[kLanes], flag[kLanes];
    for (int k = 0; k < kLanes; ++k) cm[k] = -INFINITY, flag[k] = 0.f;
    int64_t j = c0;
    for (; j + kLanes <= c1; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        float z = Elem<D>::load(row, j + k) * invTemp;
        float f = z <= FLT_MAX ? 0.f : 1.f;
        flag[k] = f > flag[k] ? f : flag[k];
        cm[k] = z > cm[k] ? z : cm[k];
      }
    }
    for (; j < c1; ++j) {
      float z = Elem<D>::load(row, j) * invTemp;
      if (!(z <= FLT_MAX)) flag[0] = 1.f;
      cm[0] = z > cm[0] ? z : cm[0];
    }
    float chunkMax = cm[0];
    for (int k = 1; k < kLanes; ++k) {
      chunkMax = cm[k] > chunkMax ? cm[k] : chunkMax;
      bad |= flag[k] != 0.f;
    }
    bad |= flag[0] != 0.f;
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
    // Chunk-local sums stay in registers; they join the running sums after the chunk.
    float cs[kLanes], ct[kLanes];
    for (int k = 0; k < kLanes; ++k) cs[k] = ct[k] = 0.f;
    j = c0;
    for (; j + kLanes <= c1; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        float d = Elem<D>::load(row, j + k) * invTemp - m;
        float e = exp_neg(d);
        cs[k] += e;
        ct[k] += e * (d > -88.f ? d : -88.f);  // e is exactly 0 below -87: -inf adds 0, never 0 * -inf
      }
    }
    for (; j < c1; ++j) {
      float d = Elem<D>::load(row, j) * invTemp - m;
      float e = exp_neg(d);
      cs[0] += e;
      ct[0] += e * (d > -88.f ? d : -88.f);
    }
    for (int k = 0; k < kLanes; ++k) s[k] += cs[k], t[k] += ct[k];
  }
  RowStats r;
  r.bad = bad;
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
  // p is exactly 0 below -87, so the clamp only keeps 0 * -inf out of the entropy term.
  auto f = [=](float x) {
    float lp = x * invTemp - lse;
    float p = exp_neg(lp);
    return cs * p * ((lp > -88.f ? lp : -88.f) + H) - gs * p;
  };
  // The gradient buffer is either the logits themselves or disjoint from them; each loop form
  // lets the compiler vectorise without a run-time alias check.
  using T = typename Elem<D>::T;
  if (static_cast<const void*>(out) == static_cast<const void*>(row)) {
    for (int64_t j = 0; j < V; ++j) Elem<D>::store(out, j, f(Elem<D>::load(out, j)));
  } else {
    const T* __restrict in = row;
    T* __restrict o = out;
    for (int64_t j = 0; j < V; ++j) Elem<D>::store(o, j, f(Elem<D>::load(in, j)));
  }
  // The label's own term, from the label's logit read before the row was overwritten.
  float pl = exp_neg(labelZ - lse);
  float entL = (ce != 0.f && pl > 0.f) ? cs * pl * ((labelZ - lse) + H) : 0.f;
  Elem<D>::store(out, label, gs * (1.f - pl) + entL);
}

