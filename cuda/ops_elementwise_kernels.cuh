// Device code of the row-wise and elementwise forward ops (ops_elementwise.h describes them; their launch plans,
// elt_grid / row_threads, are in kernel_compat.cuh), shared by ops_elementwise.cu and the CPU emulation test
// (tests/gpu/test_ops_emu.cpp, over kernel_compat.cuh). Include from exactly one .cu (the kernels are not inline).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernel_compat.cuh"

namespace msa::cuda::kern {
inline namespace MSA_KERNEL_ABI {

// dtype codes as ints for the kernels: 0 = f32, 1 = bf16, 2 = f16 (the DType values).
MSA_DEV float load_f32(const void* p, int dtype, int64_t i) {
  if (dtype == static_cast<int>(DType::kBF16)) return bf16_at(p, i);
  if (dtype == static_cast<int>(DType::kF16)) return f16_at(p, i);
  return static_cast<const float*>(p)[i];
}

MSA_KERNEL void convert_kernel(const void* __restrict__ src, int dtype, int64_t n, float* __restrict__ dst) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    dst[i] = load_f32(src, dtype, i);
  }
}

// One block per token row. bad: the smallest bad index (atomicMin), UINT64_MAX when all ids are valid.
MSA_KERNEL void embedding_kernel(const void* __restrict__ table, int dtype, int64_t vocab, int64_t dim,
                                 const int32_t* __restrict__ ids, float* __restrict__ out,
                                 unsigned long long* bad) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  float* o = out + t * dim;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) atomic_min(bad, static_cast<unsigned long long>(t));
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = 0.0f;
    return;
  }
  const int64_t base = static_cast<int64_t>(id) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = load_f32(table, dtype, base + i);
}

struct SumOp {
  template <typename T>
  MSA_DEV T operator()(T a, T b) const {
    return a + b;
  }
};

// Block-wide reduction of v by op (blockDim.x a multiple of 32, <= 1024; identity: the value of the lanes past
// the last warp). Every thread gets the total.
template <typename T, typename Op>
MSA_DEVICE T block_reduce(T v, T identity, Op op) {
  MSA_SHARED_ARRAY(T, warp_part, 32);
  MSA_SHARED(T, total);
  for (int off = 16; off > 0; off >>= 1) v = op(v, shfl_xor(v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_part[warp] = v;
  MSA_SYNC();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    T s = lane < n_warps ? warp_part[lane] : identity;
    for (int off = 16; off > 0; off >>= 1) s = op(s, shfl_xor(s, off));
    if (lane == 0) total = s;
  }
  MSA_SYNC();
  return total;
}

// One block per row. Every thread reads the elements it later writes, after the reduction barrier, so y
// may alias x.
MSA_KERNEL void rmsnorm_kernel(const float* x, int64_t dim, const void* __restrict__ weight, int dtype, float eps,
                               float* y) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const double v = static_cast<double>(xr[i]);
    ss += v * v;
  }
  ss = block_reduce(ss, 0.0, SumOp());
  const float var = static_cast<float>(ss / static_cast<double>(dim));
  const float inv = 1.0f / sqrtf(var + eps);  // IEEE sqrt and division (no fast math)
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    yr[i] = mul_rn(load_f32(weight, dtype, i), mul_rn(xr[i], inv));
  }
}

MSA_KERNEL void rope_table_kernel(const int32_t* __restrict__ positions, int64_t n_tokens, int64_t head_dim,
                                  float base, float* __restrict__ cos_out, float* __restrict__ sin_out) {
  const int64_t half = head_dim / 2;
  const int64_t n = n_tokens * half;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t t = e / half, i = e % half;
    const float expo = div_rn(static_cast<float>(2 * i), static_cast<float>(head_dim));
    const float p = static_cast<float>(pow(static_cast<double>(base), static_cast<double>(expo)));
    const float inv_freq = div_rn(1.0f, p);
    const float angle = mul_rn(inv_freq, static_cast<float>(positions[t]));
    cos_out[e] = static_cast<float>(cos(static_cast<double>(angle)));
    sin_out[e] = static_cast<float>(sin(static_cast<double>(angle)));
  }
}

MSA_KERNEL void rope_kernel(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t) {
  const int64_t half = head_dim / 2;
  const int64_t n = n_tokens * n_heads * half;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t i = e % half;
    const int64_t th = e / half;  // t * n_heads + h
    const int64_t t = th / n_heads;
    float* v = x + th * head_dim;
    const float c = cos_t[t * half + i], s = sin_t[t * half + i];
    const float x0 = v[i], x1 = v[i + half];
    v[i] = add_rn(mul_rn(x0, c), mul_rn(-x1, s));
    v[i + half] = add_rn(mul_rn(x1, c), mul_rn(x0, s));
  }
}

MSA_KERNEL void swiglu_kernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i];
    const float u = up[i];
    out[i] = mul_rn(div_rn(g, add_rn(1.0f, expf(-g))), u);
  }
}

MSA_KERNEL void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = a[i] + b[i];
  }
}

}  // namespace MSA_KERNEL_ABI
}  // namespace msa::cuda::kern
