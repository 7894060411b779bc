// CUDA GEMM of the forward: Y[T, out] = X[T, in] · Wᵀ with W = [out, in] row-major (as stored in safetensors),
// the device twin of Backend::matmul. Every pointer is a device pointer; work is issued on res.stream() and
// is asynchronous (errors of the kernels themselves surface at the next synchronize).
//
// Two paths:
// * matmul_bf16: W bf16 on the device; x (f32) is rounded to bf16 into `x_bf16` (caller scratch, n_rows * in
//   elements) and cuBLAS multiplies bf16 x bf16 on tensor cores with f32 accumulation (CUBLAS_COMPUTE_32F).
//   The only numerical difference from the CPU (f32 x f32(bf16 W)) is the bf16 rounding of x: every product
//   x_i w_i carries a relative error of at most 2^-9, so |y_gpu - y_cpu| <= 2^-9 * sum_i |x_i w_i| plus
//   f32 summation error. This is the fast path.
// * matmul_f32: W in f32 on the device (convert a bf16/f16 weight once with convert_to_f32,
//   ops_elementwise.h), x f32, cuBLAS SGEMM with CUBLAS_COMPUTE_32F_PEDANTIC (no TF32, no reduced-precision
//   tricks): agrees with the CPU to f32 summation-order error (~1e-6 relative to sum_i |x_i w_i|).
#pragma once

#include <cstdint>

#include "core/status.h"
#include "resources.h"

namespace msa::cuda {

// y[t, o] = sum_i bf16(x[t, i]) * w[o, i] (f32 accumulation). x: [n_rows, k] f32; w: [n_out, k] bf16 (raw
// uint16 bits); y: [n_rows, n_out] f32, must not alias x; x_bf16: scratch for n_rows * k bf16 values (may
// not alias x or y). Errors: kInvalidArgument (null pointer), kShape (a size <= 0 or beyond int32),
// kUnsupported / kInternal from cuBLAS.
Status matmul_bf16(CudaResources& res, const float* x, int64_t n_rows, const uint16_t* w, int64_t n_out,
                   int64_t k, float* y, uint16_t* x_bf16);

// y = x · wᵀ in f32 (no TF32). x: [n_rows, k]; w: [n_out, k] f32; y: [n_rows, n_out], must not alias x.
Status matmul_f32(CudaResources& res, const float* x, int64_t n_rows, const float* w, int64_t n_out, int64_t k,
                  float* y);

}  // namespace msa::cuda
