// Backend-neutral types shared by the addon, the CPU kernels and the CUDA kernels.
// Nothing here includes N-API or CUDA headers.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define SOPHIA_HD __host__ __device__ __forceinline__
#else
#define SOPHIA_HD inline
#endif

namespace sophia {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
  }
  return "?";
}
inline int64_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

// An error a caller can act on; the addon turns it into a JS SophiaError with this code.
struct Error : std::runtime_error {
  std::string code;
  Error(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

// ---- bf16 / f16 <-> f32 (bit exact, round to nearest even), usable on host and device ----

SOPHIA_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
SOPHIA_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

SOPHIA_HD float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

SOPHIA_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN, keep sign
  u += 0x7fffu + ((u >> 16) & 1u);  // ties go to the even mantissa
  return uint16_t(u >> 16);
}

// Normals and subnormals both come out of one multiply: the 15 low bits shifted into an f32
// are the value scaled by 2^-112.
SOPHIA_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t em = h & 0x7fffu;
  float mag = bits_f32(em << 13) * 5.192296858534828e+33f;  // 2^112
  uint32_t out = f32_bits(mag);
  if (em >= 0x7c00u) out = 0x7f800000u | (em << 13);  // inf / NaN keep their payload
  return bits_f32(out | sign);
}

SOPHIA_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x47800000u) {  // |f| >= 65536, inf or NaN
    return uint16_t(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  }
  if (a < 0x38800000u) {  // below the smallest f16 normal: let an f32 add do the rounding
    float t = bits_f32(a) + 0.5f;  // 0.5 puts the f16 subnormal grid on the f32 mantissa's last bits
    return uint16_t(sign | (f32_bits(t) - 0x3f000000u));
  }
  uint32_t odd = (a >> 13) & 1u;
  a += 0xc8000fffu + odd;  // rebias exponent (-112 << 23) and round half to even
  return uint16_t(sign | (a >> 13));
}

template <DType D> struct Elem;
template <> struct Elem<DType::F32> {
  using T = float;
  static SOPHIA_HD float load(const float* p, int64_t i) { return p[i]; }
  static SOPHIA_HD void store(float* p, int64_t i, float v) { p[i] = v; }
};
template <> struct Elem<DType::BF16> {
  using T = uint16_t;
  static SOPHIA_HD float load(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
  static SOPHIA_HD void store(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16(v); }
};
template <> struct Elem<DType::F16> {
  using T = uint16_t;
  static SOPHIA_HD float load(const uint16_t* p, int64_t i) { return f16_to_f32(p[i]); }
  static SOPHIA_HD void store(uint16_t* p, int64_t i, float v) { p[i] = f32_to_f16(v); }
};

}  // namespace sophia
