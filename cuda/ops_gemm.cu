#include "ops_gemm.h"

#include <cuda_bf16.h>

#include <climits>

#include "cuda_status.h"

namespace msa::cuda {

namespace {

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    y[i] = __float2bfloat16_rn(x[i]);  // round to nearest even, like msa::f32_to_bf16
  }
}

Status check_sizes(const char* what, const void* x, int64_t n_rows, const void* w, int64_t n_out, int64_t k,
                   const void* y) {
  if (x == nullptr || w == nullptr || y == nullptr) {
    return Error(StatusCode::kInvalidArgument, what, ": null device pointer (x, w or y)");
  }
  if (n_rows <= 0 || n_out <= 0 || k <= 0 || n_rows > INT_MAX || n_out > INT_MAX || k > INT_MAX) {
    return Error(StatusCode::kShape, what, ": sizes rows ", n_rows, ", out ", n_out, ", in ", k,
                 " must be in [1, 2^31)");
  }
  if (x == y) return Error(StatusCode::kInvalidArgument, what, ": y must not alias x");
  return Status::Ok();
}

}  // namespace

// Column-major view (cuBLAS): C[out, T] (ld out) = op(A)[out, k] * B[k, T] with A = W stored column-major as
// [k, out] (ld k, transposed) and B = x stored column-major as [k, T] (ld k). C is row-major y[T, out].
Status matmul_bf16(CudaResources& res, const float* x, int64_t n_rows, const uint16_t* w, int64_t n_out,
                   int64_t k, float* y, uint16_t* x_bf16) {
  MSA_RETURN_IF_ERROR(check_sizes("cuda matmul_bf16", x, n_rows, w, n_out, k, y));
  if (x_bf16 == nullptr) return Error(StatusCode::kInvalidArgument, "cuda matmul_bf16: null x_bf16 scratch");
  const int64_t n = n_rows * k;
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  f32_to_bf16_kernel<<<static_cast<unsigned>(blocks < 8192 ? blocks : 8192), threads, 0, res.stream()>>>(
      x, reinterpret_cast<__nv_bfloat16*>(x_bf16), n);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const float alpha = 1.0f, beta = 0.0f;
  MSA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(res.cublas(), res.stream()));
  MSA_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(res.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_out),
                                          static_cast<int>(n_rows), static_cast<int>(k), &alpha, w, CUDA_R_16BF,
                                          static_cast<int>(k), x_bf16, CUDA_R_16BF, static_cast<int>(k), &beta, y,
                                          CUDA_R_32F, static_cast<int>(n_out), CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
  return Status::Ok();
}

Status matmul_f32(CudaResources& res, const float* x, int64_t n_rows, const float* w, int64_t n_out, int64_t k,
                  float* y) {
  MSA_RETURN_IF_ERROR(check_sizes("cuda matmul_f32", x, n_rows, w, n_out, k, y));
  const float alpha = 1.0f, beta = 0.0f;
  MSA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(res.cublas(), res.stream()));
  const int m = static_cast<int>(n_out), n = static_cast<int>(n_rows), kk = static_cast<int>(k);
  cublasStatus_t st = cublasGemmEx(res.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, m, n, kk, &alpha, w, CUDA_R_32F, kk, x,
                                   CUDA_R_32F, kk, &beta, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F_PEDANTIC,
                                   CUBLAS_GEMM_DEFAULT);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
    // Plain SGEMM: full f32 as long as the handle's math mode is the default one (no TF32 opt-in).
    st = cublasSgemm(res.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, m, n, kk, &alpha, w, kk, x, kk, &beta, y, m);
  }
  return cublas_status(st, "cublasGemmEx (f32, pedantic) / cublasSgemm");
}

}  // namespace msa::cuda
