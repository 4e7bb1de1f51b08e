// Device discovery, memory and copies for the CUDA backend. Linked with the static runtime:
// with no driver or no GPU, cudaGetDeviceCount fails and status() says why.
#include <cstdlib>

#include "check.cuh"
#include "sophia/cuda.h"

namespace sophia::cuda {

static int chosen_device() {
  const char* env = std::getenv("SOPHIA_CUDA_DEVICE");
  return env ? std::atoi(env) : 0;
}

Status status() {
  Status s;
  cudaRuntimeGetVersion(&s.runtimeVersion);
  cudaDriverGetVersion(&s.driverVersion);  // 0 when no driver is installed
  cudaError_t err = cudaGetDeviceCount(&s.deviceCount);
  if (err != cudaSuccess) {
    s.deviceCount = 0;
    s.reason = s.driverVersion == 0 ? std::string("no NVIDIA driver found (libcuda could not be loaded)")
                                    : std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return s;
  }
  if (s.deviceCount == 0) {
    s.reason = "no CUDA device found";
    return s;
  }
  int dev = chosen_device();
  if (dev < 0 || dev >= s.deviceCount) {
    s.reason = "SOPHIA_CUDA_DEVICE=" + std::to_string(dev) + " but only " + std::to_string(s.deviceCount) + " device(s) exist";
    return s;
  }
  err = cudaSetDevice(dev);
  if (err == cudaSuccess) err = cudaFree(nullptr);  // creates the context: catches unusable devices now
  if (err != cudaSuccess) {
    s.reason = std::string("device ") + std::to_string(dev) + " is not usable: " + cudaGetErrorString(err);
    cudaGetLastError();
    return s;
  }
  s.usable = true;
  s.reason = "ok";
  return s;
}

DeviceInfo device_info() {
  DeviceInfo d;
  int dev = 0;
  SOPHIA_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p;
  SOPHIA_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  d.name = p.name;
  d.major = p.major;
  d.minor = p.minor;
  d.smCount = p.multiProcessorCount;
  size_t freeB = 0, totalB = 0;
  SOPHIA_CUDA_CHECK(cudaMemGetInfo(&freeB, &totalB));
  d.totalMem = int64_t(totalB);
  d.freeMem = int64_t(freeB);
  return d;
}

void* alloc(int64_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size_t(bytes));
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("E_DEVICE", "cannot allocate " + std::to_string(bytes) + " bytes of device memory: " + cudaGetErrorString(err));
  }
  return p;
}

void release(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_h2d(void* dst, const void* src, int64_t bytes) { SOPHIA_CUDA_CHECK(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyHostToDevice)); }
void copy_d2h(void* dst, const void* src, int64_t bytes) { SOPHIA_CUDA_CHECK(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyDeviceToHost)); }

double copy_bandwidth(int64_t bytes, int iters) {
  void* a = alloc(bytes);
  void* b = nullptr;
  try {
    b = alloc(bytes);
  } catch (...) {
    release(a);
    throw;
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaMemcpy(b, a, size_t(bytes), cudaMemcpyDeviceToDevice);  // warm-up
  cudaEventRecord(e0);
  for (int i = 0; i < iters; ++i) cudaMemcpy(b, a, size_t(bytes), cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  release(a);
  release(b);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw Error("E_DEVICE", std::string("copy bandwidth probe failed: ") + cudaGetErrorString(err));
  return 2.0 * double(bytes) * iters / (double(ms) * 1e-3) / 1e9;
}

}  // namespace sophia::cuda
