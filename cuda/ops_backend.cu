#include "ops_backend.h"

#include "backend_kernels.cuh"
#include "cuda_status.h"

namespace msa::cuda {

namespace {

using kern::elt_grid;
using kern::kEltThreads;
using kern::row_threads;

}  // namespace

Status scale(CudaResources& res, float* x, float s, int64_t n) {
  if (n <= 0) return Status::Ok();
  if (x == nullptr) return Error(StatusCode::kInvalidArgument, "cuda scale: null device pointer");
  kern::scale_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(x, s, n);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status gather_rows(CudaResources& res, const float* src, int64_t n_src, int64_t width, const int32_t* rows,
                   int64_t n, float* dst, unsigned long long* flag) {
  if (n <= 0) return Status::Ok();
  if (width <= 0 || n_src < 0) {
    return Error(StatusCode::kShape, "cuda gather_rows: ", n, " rows of width ", width, " from ", n_src);
  }
  if (rows == nullptr || dst == nullptr || flag == nullptr || (src == nullptr && n_src > 0)) {
    return Error(StatusCode::kInvalidArgument, "cuda gather_rows: null device pointer");
  }
  MSA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(flag, 0xFF, sizeof(unsigned long long), res.stream()));
  kern::gather_rows_kernel<<<kern::gather_rows_grid(n), row_threads(width), 0, res.stream()>>>(
      src, n_src, width, rows, n, dst, flag);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  unsigned long long first_bad = 0;
  MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&first_bad, flag, sizeof first_bad, cudaMemcpyDeviceToHost, res.stream()));
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(res.stream()));
  if (first_bad != ~0ULL) {
    int32_t row = 0;
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&row, rows + first_bad, sizeof row, cudaMemcpyDeviceToHost, res.stream()));
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(res.stream()));
    return Error(StatusCode::kInvalidArgument, "cuda gather_rows: row ", row, " at index ", first_bad, " outside [0, ",
                 n_src, ")");
  }
  return Status::Ok();
}

Status l2_normalize(CudaResources& res, float* x, int64_t n_vectors, int64_t dim) {
  if (n_vectors <= 0 || dim <= 0) return Status::Ok();
  if (x == nullptr) return Error(StatusCode::kInvalidArgument, "cuda l2_normalize: null device pointer");
  kern::l2_normalize_kernel<<<kern::l2_normalize_grid(n_vectors), kern::kL2Threads, 0, res.stream()>>>(x, n_vectors,
                                                                                                  dim);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status decode_rows(CudaResources& res, PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows,
                   int64_t n_heads, int64_t head_dim, float* out) {
  if (!page_dtype_valid(static_cast<uint32_t>(dtype)) || n_rows < 0 || n_heads <= 0 || head_dim <= 0) {
    return Error(StatusCode::kInvalidArgument, "cuda decode_pages: bad arguments (dtype ",
                 static_cast<uint32_t>(dtype), ", rows ", n_rows, ", heads ", n_heads, ", head_dim ", head_dim, ")");
  }
  const int64_t width = n_heads * head_dim;
  const int64_t n = n_rows * width;
  if (n == 0) return Status::Ok();
  if (rows == nullptr || out == nullptr) {
    return Error(StatusCode::kInvalidArgument, "cuda decode_pages: null device pointer");
  }
  if (dtype == PageDType::kInt8 && scales == nullptr) {
    return Error(StatusCode::kInvalidArgument, "cuda decode_pages: int8 pages need their scales");
  }
  if (dtype == PageDType::kF32) {  // decode_rows is a memcpy for f32
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out, rows, static_cast<size_t>(n) * sizeof(float),
                                             cudaMemcpyDeviceToDevice, res.stream()));
    return Status::Ok();
  }
  kern::decode_rows_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(
      static_cast<int>(dtype), rows, scales, n, width, head_dim, n_heads, out);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace msa::cuda
