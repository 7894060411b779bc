// Device code of the top-k selection (topk.h): radix keys and the pick of the first k. Include from exactly
// one .cu (or the CPU emulation test, kernel_compat.cuh).
#pragma once

#include <cstdint>

#include "kernel_compat.cuh"

namespace msa::cuda::kern {
inline namespace MSA_KERNEL_ABI {

// Unsigned key that sorts ascending in the order "score descending": +inf first, -inf last among numbers,
// then NaN, then removed documents.
MSA_DEV uint32_t desc_key(float s, bool removed) {
  if (removed) return 0xffffffffu;
  if (s != s) return 0xfffffffeu;
  if (s == 0.0f) s = 0.0f;  // -0 ranks as +0
  uint32_t u = as_uint(s);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending in the float order
  return ~u;
}

MSA_KERNEL void make_keys_kernel(const float* scores, const uint32_t* ranks, const uint8_t* removed, int n,
                                 int low_bits, unsigned long long* keys, int* vals) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= n) return;
  const unsigned long long hi = desc_key(scores[d], removed[d] != 0);
  keys[d] = (hi << low_bits) | ranks[d];
  vals[d] = d;
}

// picked[i] = index, picked[k + i] = score bits of the i-th document.
MSA_KERNEL void pick_kernel(const int* vals, const float* scores, int k, int* picked) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k) return;
  const int d = vals[i];
  picked[i] = d;
  picked[k + i] = static_cast<int>(as_uint(scores[d]));
}

}  // namespace MSA_KERNEL_ABI
}  // namespace msa::cuda::kern
