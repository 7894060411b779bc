// Device code of the Backend ops that the older cuda/ kernels do not cover (ops_backend.h describes them): scale,
// gather_rows, l2_normalize and the one-plane page decode of Backend::decode_pages. Shared by ops_backend.cu and
// the CPU emulation test (tests/gpu/test_backend_emu.cpp, over kernel_compat.cuh). Include from exactly one .cu
// (the kernels are not inline).
#pragma once

#include <cstdint>

#include "kernel_compat.cuh"

namespace msa::cuda::kern {
inline namespace MSA_KERNEL_ABI {

// Launch plans (also used by the emulation test). gather_rows: one block of row_threads(width) threads per output
// row, at most 65535 blocks striding over the rows. l2_normalize: one thread per vector in blocks of 128, so that
// a few hundred head vectors still spread over several SMs.
constexpr int kL2Threads = 128;
inline unsigned gather_rows_grid(int64_t n) { return static_cast<unsigned>(n < 1 ? 1 : (n < 65535 ? n : 65535)); }
inline unsigned l2_normalize_grid(int64_t n_vectors) {
  const int64_t blocks = (n_vectors + kL2Threads - 1) / kL2Threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < 65535 ? blocks : 65535));
}

// x[i] = x[i] * s (one f32 multiply, as CpuBackend::scale).
MSA_KERNEL void scale_kernel(float* x, float s, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    x[i] = mul_rn(x[i], s);
  }
}

// dst[i, :] = src[rows[i], :] (width floats), blocks striding over the output rows. A row outside [0, n_src)
// zeroes its output row and records its index i in *bad (atomic min; the caller set it to UINT64_MAX).
MSA_KERNEL void gather_rows_kernel(const float* __restrict__ src, int64_t n_src, int64_t width,
                                   const int32_t* __restrict__ rows, int64_t n, float* __restrict__ dst,
                                   unsigned long long* bad) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const int32_t r = rows[i];
    float* o = dst + i * width;
    if (r < 0 || r >= n_src) {
      if (threadIdx.x == 0) atomic_min(bad, static_cast<unsigned long long>(i));
      for (int64_t j = threadIdx.x; j < width; j += blockDim.x) o[j] = 0.0f;
      continue;
    }
    const float* s = src + static_cast<int64_t>(r) * width;
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) o[j] = s[j];
  }
}

// One thread per vector, exactly the CPU twin (l2_normalize_heads): the squared norm summed in double in element
// order (each square of an f32 is exact in double, so FMA contraction cannot change it), its double sqrt rounded
// to f32, max with 1e-12f, then one f32 division per element.
MSA_KERNEL void l2_normalize_kernel(float* x, int64_t n_vectors, int64_t dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < n_vectors; r += stride) {
    float* v = x + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      const double d = static_cast<double>(v[i]);
      ss += d * d;
    }
    const float norm = static_cast<float>(sqrt(ss));
    const float denom = norm > 1e-12f ? norm : 1e-12f;
    for (int64_t i = 0; i < dim; ++i) v[i] = div_rn(v[i], denom);
  }
}

// Decodes one plane of page rows (memory/page_codec.h decode_rows) into f32: dtype 1 (bf16): exact widening of
// the two little-endian bytes (read bytewise, so the rows need no alignment); dtype 2 (int8): q * scale[row,
// head] (one f32 multiply). f32 planes are a plain copy and never get here.
MSA_KERNEL void decode_rows_kernel(int dtype, const unsigned char* __restrict__ rows, const float* __restrict__ scales,
                                   int64_t n_elems, int64_t width, int64_t head_dim, int64_t n_heads,
                                   float* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n_elems; e += stride) {
    if (dtype == 1) {
      const uint32_t h = static_cast<uint32_t>(rows[2 * e]) | (static_cast<uint32_t>(rows[2 * e + 1]) << 8);
      out[e] = as_float(h << 16);
    } else {
      const int64_t row = e / width;
      const int64_t head = (e % width) / head_dim;
      const float q = static_cast<float>(static_cast<int8_t>(rows[e]));
      out[e] = mul_rn(q, scales[row * n_heads + head]);
    }
  }
}

}  // namespace MSA_KERNEL_ABI
}  // namespace msa::cuda::kern
