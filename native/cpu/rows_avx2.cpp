// The row kernels for x86-64 CPUs with AVX2 and FMA, chosen at run time (kernels.cpp).
// Headers come before the target pragma so that only the kernels below use AVX2.
#if defined(__x86_64__) && defined(__GNUC__)
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "sophia/common.h"
#include "sophia/grpo_math.h"
#include "sophia/kernels.h"
#include "threadpool.h"

#pragma GCC target("avx2,fma")
#define SOPHIA_ISA avx2
#include "row_kernels.inc"
#define SOPHIA_VEC_BYTES 32
#include "gemm_kernel.inc"
#endif
