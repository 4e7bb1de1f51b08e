// Group-normalised advantages (method.md §1.7): A = (R - mean_g) / (std + eps).
//   rewards [n], groups as order [n] + groupStarts [G+1] -> advantages [n]
// std is unbiased (n-1); a group of one has mean 0 and std 1, as in the reference code.
#include <cmath>

#include "sophia/kernels.h"

namespace sophia::cpu {

void group_advantages(const AdvantageArgs& a) {
  double batchStd = 1.0;
  if (a.scale == AdvScale::Batch && a.n > 1) {
    double mean = 0, ss = 0;
    for (int64_t i = 0; i < a.n; ++i) mean += a.rewards[i];
    mean /= double(a.n);
    for (int64_t i = 0; i < a.n; ++i) ss += (a.rewards[i] - mean) * (a.rewards[i] - mean);
    batchStd = std::sqrt(ss / double(a.n - 1));
  }
  for (int64_t g = 0; g < a.G; ++g) {
    const int32_t* idx = a.order + a.groupStarts[g];
    const int64_t count = a.groupStarts[g + 1] - a.groupStarts[g];
    double mean = 0, std = 1;
    if (count > 1) {
      for (int64_t k = 0; k < count; ++k) mean += a.rewards[idx[k]];
      mean /= double(count);
      double ss = 0;
      for (int64_t k = 0; k < count; ++k) {
        double d = a.rewards[idx[k]] - mean;
        ss += d * d;
      }
      std = std::sqrt(ss / double(count - 1));
    }
    double denom = a.scale == AdvScale::Group ? std + a.eps : a.scale == AdvScale::Batch ? batchStd + a.eps : 1.0;
    for (int64_t k = 0; k < count; ++k) {
      int32_t i = idx[k];
      a.advantages[i] = float((a.rewards[i] - mean) / denom);
    }
  }
}

}  // namespace sophia::cpu
