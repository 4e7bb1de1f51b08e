#pragma once
#include <cuda_runtime.h>

#include <string>

#include "sophia/common.h"

#define SOPHIA_CUDA_CHECK(expr)                                                                        \
  do {                                                                                                 \
    cudaError_t err_ = (expr);                                                                         \
    if (err_ != cudaSuccess)                                                                           \
      throw ::sophia::Error("E_DEVICE", std::string("CUDA error in ") + #expr + ": " +                 \
                                            cudaGetErrorName(err_) + " (" + cudaGetErrorString(err_) + ")"); \
  } while (0)
