// Seeded streams and token sampling, shared by the CPU and CUDA models so that equal logits give
// equal tokens on both backends.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "sophia/common.h"

namespace sophia::sampling {

// splitmix64: seeds the initialisation and the sampling streams.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double normal() {
    double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
  }
};

// Samples one token from logits[V] at `temp` (0: greedy), restricted to the top-k and the top-p
// nucleus; *logp gets its log-prob under the full temperature-scaled distribution.
inline int32_t sample_token(const float* logits, int64_t V, float temp, int64_t topK, float topP, Rng& rng, float* logp,
                            std::vector<std::pair<float, int32_t>>& cand) {
  const float inv = temp > 0.f ? 1.f / temp : 1.f;
  float mx = -INFINITY;
  int32_t arg = 0;
  for (int64_t v = 0; v < V; ++v)
    if (logits[v] > mx) mx = logits[v], arg = int32_t(v);
  if (!std::isfinite(mx)) throw Error("E_NUMERIC", "generate: the model produced non-finite logits (diverged weights?)");
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(logits[v] - mx) * inv);
  const double lse = std::log(sum);
  auto lp = [&](int32_t v) { return float(double(logits[v] - mx) * inv - lse); };
  if (temp <= 0.f) {
    *logp = lp(arg);
    return arg;
  }
  const bool filter = (topK > 0 && topK < V) || topP < 1.f;
  if (!filter) {
    double u = rng.uniform() * sum, acc = 0.0;
    for (int64_t v = 0; v < V; ++v) {
      acc += std::exp(double(logits[v] - mx) * inv);
      if (u < acc) {
        *logp = lp(int32_t(v));
        return int32_t(v);
      }
    }
    *logp = lp(arg);
    return arg;
  }
  cand.resize(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) cand[v] = {logits[v], int32_t(v)};
  auto byLogit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  int64_t keep = (topK > 0 && topK < V) ? topK : V;
  std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), byLogit);
  double mass = 0.0;
  int64_t k = 0;
  for (; k < keep; ++k) {
    mass += std::exp(double(cand[k].first - mx) * inv) / sum;
    if (mass >= double(topP)) {
      ++k;
      break;
    }
  }
  keep = std::max<int64_t>(1, std::min(k, keep));
  double kept = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept += std::exp(double(cand[i].first - mx) * inv);
  double u = rng.uniform() * kept, acc = 0.0;
  int32_t tok = cand[keep - 1].second;
  for (int64_t i = 0; i < keep; ++i) {
    acc += std::exp(double(cand[i].first - mx) * inv);
    if (u < acc) {
      tok = cand[i].second;
      break;
    }
  }
  *logp = lp(tok);
  return tok;
}

}  // namespace sophia::sampling
