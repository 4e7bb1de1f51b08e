// The CUDA backend's entry points (native/cuda). Only compiled into the CUDA-enabled binary.
// Kernel pointers are device pointers. Every function reports failures as sophia::Error.
#pragma once
#include <cstdint>
#include <string>

#include "kernels.h"

namespace sophia::cuda {

struct Status {
  bool usable = false;
  int deviceCount = 0;
  std::string reason;  // why not usable, in words
  int runtimeVersion = 0, driverVersion = 0;
};
// Never throws and never aborts: a missing driver or GPU is an answer, not a crash.
Status status();

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0, smCount = 0;
  int64_t totalMem = 0, freeMem = 0;
};
DeviceInfo device_info();

void* alloc(int64_t bytes);
void release(void* p) noexcept;
void copy_h2d(void* dst, const void* src, int64_t bytes);
void copy_d2h(void* dst, const void* src, int64_t bytes);

void logprobs(const LogprobsArgs& a);
void grpo_loss(const GrpoLossArgs& a);
// Device-to-device copy bandwidth in GB/s (read + write bytes over time), the roofline for benches.
double copy_bandwidth(int64_t bytes, int iters);

}  // namespace sophia::cuda
