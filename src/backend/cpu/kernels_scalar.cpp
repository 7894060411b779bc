// Portable kernels: what a CPU without AVX2 runs, and the reference the AVX2 kernels are tested against.
// Dot products keep 8 independent f32 partial sums (the compiler can map them onto SSE2 registers without
// reassociating anything), so results differ from the AVX2 kernels only by summation order.
#include <algorithm>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace msa::cpu {

void to_f32(DType dt, const void* src, float* dst, int64_t n) {
  switch (dt) {
    case DType::kBF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::kF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    default:
      std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));  // callers validate dtypes first
      return;
  }
}

namespace {

float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void axpy_scalar(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

const uint8_t* row_ptr(DType dt, const void* w, int64_t k, int64_t row) {
  return static_cast<const uint8_t*>(w) + static_cast<size_t>(row) * static_cast<size_t>(k) * dtype_size(dt);
}

void gemv_prepare_scalar(DType, const float* x, int64_t k, float* xp) {
  std::memcpy(xp, x, static_cast<size_t>(k) * sizeof(float));
}

// Converts blocks of 256 weights at a time into a stack buffer (so no scratch is needed) and uses each block
// for all t rows of x.
void gemv_scalar(DType dt, const void* w, int64_t k, const float* xp, int64_t t, float* y, int64_t ldy, int64_t o0,
                 int64_t o1) {
  constexpr int64_t kBlock = 256;
  float buf[kBlock];
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_ptr(dt, w, k, o);
    float acc[kGemvMaxRows][8] = {};
    for (int64_t k0 = 0; k0 < k; k0 += kBlock) {
      const int64_t kb = std::min(kBlock, k - k0);
      to_f32(dt, row + static_cast<size_t>(k0) * dtype_size(dt), buf, kb);
      for (int64_t r = 0; r < t; ++r) {
        const float* xb = xp + r * k + k0;
        float* a = acc[r];
        int64_t i = 0;
        for (; i + 8 <= kb; i += 8) {
          for (int j = 0; j < 8; ++j) a[j] += buf[i + j] * xb[i + j];
        }
        for (int j = 0; i < kb; ++i, ++j) a[j] += buf[i] * xb[i];
      }
    }
    for (int64_t r = 0; r < t; ++r) {
      const float* a = acc[r];
      y[r * ldy + o] = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    }
  }
}

size_t gemm_scratch_scalar(int64_t k) { return static_cast<size_t>(k); }

// One W row is converted once and reused for all T rows of x.
void gemm_scalar(DType dt, const void* w, int64_t k, const float* x, int64_t t, float* y, int64_t ldy, int64_t o0,
                 int64_t o1, float* scratch) {
  for (int64_t o = o0; o < o1; ++o) {
    to_f32(dt, row_ptr(dt, w, k, o), scratch, k);
    for (int64_t r = 0; r < t; ++r) y[r * ldy + o] = dot_scalar(x + r * k, scratch, k);
  }
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels kernels = {
      "scalar", gemv_prepare_scalar, gemv_scalar, gemm_scratch_scalar, gemm_scalar, dot_scalar, axpy_scalar,
  };
  return kernels;
}

}  // namespace msa::cpu
