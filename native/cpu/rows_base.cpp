// The row kernels for the baseline instruction set of the target (SSE2 on x86-64).
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

#define SOPHIA_ISA base
#include "row_kernels.inc"
#define SOPHIA_VEC_BYTES 16
#include "gemm_kernel.inc"
