// The row kernels for x86-64 CPUs with AVX-512 (F, BW, VL, DQ), chosen at run time (kernels.cpp).
// 512-bit vectors are asked for explicitly: GCC prefers 256-bit ones by default.
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

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,prefer-vector-width=512")
#define SOPHIA_ISA avx512
#include "row_kernels.inc"
#define SOPHIA_VEC_BYTES 64
#include "gemm_kernel.inc"
#endif
