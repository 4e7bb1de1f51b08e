// Trust weights (method.md §1.4-1.7 and §2), per group of responses.
//   outcome [n], thinking [n] (NaN = missing), groups as order [n] + groupStarts [G+1]
//   -> rewards [n], gamma / thinkingWeight / muCorrect / muWrong [G]
#include <cmath>

#include "sophia/kernels.h"

namespace sophia::cpu {

// Whether the reference preset skips the reward model for the whole group.
static bool group_all_same(const float* outcome, const int32_t* idx, int64_t count, float hi, float lo) {
  bool allHigh = true, allLow = true;
  for (int64_t k = 0; k < count; ++k) {
    float ro = outcome[idx[k]];
    allHigh &= ro >= hi;
    allLow &= ro <= lo;
  }
  return count > 0 && (allHigh || allLow);
}

void trust_rewards(const TrustArgs& a) {
  for (int64_t g = 0; g < a.G; ++g) {
    const int32_t* idx = a.order + a.groupStarts[g];
    const int64_t count = a.groupStarts[g + 1] - a.groupStarts[g];
    bool skip = a.referenceMode && group_all_same(a.outcome, idx, count, a.allSameHigh, a.allSameLow);
    // Thinking score as the mode sees it: NaN = missing (excluded from the means, adds 0).
    auto rt = [&](int32_t i) -> float {
      if (a.referenceMode && (skip || a.outcome[i] < a.gate)) return 0.f;  // the RM is not asked
      return a.thinking[i];
    };
    double sumC = 0, sumW = 0;
    int64_t nC = 0, nW = 0;
    for (int64_t k = 0; k < count; ++k) {
      float v = rt(idx[k]);
      if (std::isnan(v)) continue;
      if (a.outcome[idx[k]] >= a.threshold) {
        sumC += v;
        ++nC;
      } else {
        sumW += v;
        ++nW;
      }
    }
    double muC = nC ? sumC / nC : (a.referenceMode ? 0.0 : NAN);
    double muW = nW ? sumW / nW : (a.referenceMode ? 0.0 : NAN);
    double gamma = 1.0;
    if (a.referenceMode) {
      if (nC > 0 && muC < muW) gamma = std::exp(muC - muW);
    } else if (nC > 0 && nW > 0 && muC < muW) {
      gamma = std::exp(muC - muW);
    }
    double weight = skip ? 0.0 : gamma * double(a.alpha) * double(a.anneal);
    a.gamma[g] = float(gamma);
    a.thinkingWeight[g] = float(weight);
    a.muCorrect[g] = float(muC);
    a.muWrong[g] = float(muW);
    for (int64_t k = 0; k < count; ++k) {
      int32_t i = idx[k];
      float v = rt(i);
      a.rewards[i] = float(double(a.outcome[i]) + (std::isnan(v) ? 0.0 : weight * double(v)));
    }
  }
}

void thinking_needed(const NeededArgs& a) {
  for (int64_t g = 0; g < a.G; ++g) {
    const int32_t* idx = a.order + a.groupStarts[g];
    const int64_t count = a.groupStarts[g + 1] - a.groupStarts[g];
    bool skip = a.referenceMode && group_all_same(a.outcome, idx, count, a.allSameHigh, a.allSameLow);
    for (int64_t k = 0; k < count; ++k) {
      int32_t i = idx[k];
      a.needed[i] = (!a.referenceMode || (!skip && a.outcome[i] >= a.gate)) ? 1 : 0;
    }
  }
}

}  // namespace sophia::cpu
