// Device code of the page decode (page_gather.h). Include from exactly one .cu (or the CPU emulation test,
// kernel_compat.cuh).
#pragma once

#include <cstdint>

#include "kernel_compat.cuh"

namespace msa::cuda::kern {
inline namespace MSA_KERNEL_ABI {

MSA_DEV uint16_t f32_to_bf16_rne(float f) {
  uint32_t u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

struct DecodeParams {
  const unsigned char* raw;  // staged: K rows | V rows | K scales | V scales (16-byte aligned sections)
  size_t v_off, ks_off, vs_off;
  int64_t n_elems;  // rows * width per tensor
  int width, head_dim, n_kv;
  int dtype;      // PageDType
  int out_bf16;   // 0: f32 out, 1: bf16 out
  void* k_out;
  void* v_out;
};

MSA_KERNEL void decode_pages_kernel(DecodeParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < 2 * p.n_elems; i += stride) {
    const bool is_v = i >= p.n_elems;
    const int64_t e = is_v ? i - p.n_elems : i;
    const unsigned char* rows = p.raw + (is_v ? p.v_off : 0);
    float x;
    if (p.dtype == 0) {
      x = reinterpret_cast<const float*>(rows)[e];
    } else if (p.dtype == 1) {
      x = as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(rows)[e]) << 16);
    } else {
      const int64_t row = e / p.width;
      const int h = static_cast<int>(e % p.width) / p.head_dim;
      const float* sc = reinterpret_cast<const float*>(p.raw + (is_v ? p.vs_off : p.ks_off));
      x = mul_rn(static_cast<float>(reinterpret_cast<const int8_t*>(rows)[e]), sc[row * p.n_kv + h]);
    }
    void* out = is_v ? p.v_out : p.k_out;
    if (p.out_bf16) {
      static_cast<uint16_t*>(out)[e] = f32_to_bf16_rne(x);
    } else {
      static_cast<float*>(out)[e] = x;
    }
  }
}

}  // namespace MSA_KERNEL_ABI
}  // namespace msa::cuda::kern
