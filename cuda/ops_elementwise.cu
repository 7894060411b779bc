#include "ops_elementwise.h"

#include <cfloat>
#include <climits>
#include <cmath>

#include "cuda_status.h"
#include "ops_elementwise_kernels.cuh"

namespace msa::cuda {

namespace {

using namespace kern;  // NOLINT: the kernels and launch plans of ops_elementwise_kernels.cuh

bool is_float_dtype(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

Status check_dtype(DType t, const char* what) {
  if (!is_float_dtype(t)) return Error(StatusCode::kDtype, what, ": unsupported dtype ", dtype_name(t));
  return Status::Ok();
}

Status check_ptrs(const char* what, const void* a, const void* b = reinterpret_cast<const void*>(1),
                  const void* c = reinterpret_cast<const void*>(1)) {
  if (a == nullptr || b == nullptr || c == nullptr) {
    return Error(StatusCode::kInvalidArgument, what, ": null device pointer");
  }
  return Status::Ok();
}

}  // namespace

Status convert_to_f32(CudaResources& res, const void* src, DType dtype, int64_t n, float* dst) {
  MSA_RETURN_IF_ERROR(check_dtype(dtype, "cuda convert_to_f32"));
  MSA_RETURN_IF_ERROR(check_ptrs("cuda convert_to_f32", src, dst));
  if (n < 0) return Error(StatusCode::kShape, "cuda convert_to_f32: n = ", n);
  if (n == 0) return Status::Ok();
  convert_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(src, static_cast<int>(dtype), n, dst);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status embedding(CudaResources& res, const void* table, DType dtype, int64_t vocab, int64_t dim,
                 const int32_t* ids, int64_t n, float* out) {
  MSA_RETURN_IF_ERROR(check_dtype(dtype, "cuda embedding"));
  MSA_RETURN_IF_ERROR(check_ptrs("cuda embedding", table, ids, out));
  if (vocab <= 0 || dim <= 0 || n < 0 || n > INT_MAX) {
    return Error(StatusCode::kShape, "cuda embedding: table [", vocab, ", ", dim, "], ", n, " ids");
  }
  if (n == 0) return Status::Ok();
  // The check flag lives in the cuBLAS workspace: stream-ordered on the same stream, so no cuBLAS call can
  // be using it at the same time.
  auto* bad = static_cast<unsigned long long*>(res.workspace());
  MSA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), res.stream()));
  embedding_kernel<<<static_cast<unsigned>(n), row_threads(dim), 0, res.stream()>>>(
      table, static_cast<int>(dtype), vocab, dim, ids, out, bad);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  unsigned long long first_bad = 0;
  MSA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&first_bad, bad, sizeof first_bad, cudaMemcpyDeviceToHost, res.stream()));
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(res.stream()));
  if (first_bad != ~0ULL) {
    int32_t id = 0;
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&id, ids + first_bad, sizeof id, cudaMemcpyDeviceToHost, res.stream()));
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(res.stream()));
    return Error(StatusCode::kInvalidArgument, "cuda embedding: token id ", id, " at index ", first_bad,
                 " outside [0, ", vocab, ")");
  }
  return Status::Ok();
}

Status rmsnorm(CudaResources& res, const float* x, int64_t n_rows, int64_t dim, const void* weight, DType dtype,
               float eps, float* y) {
  MSA_RETURN_IF_ERROR(check_dtype(dtype, "cuda rmsnorm"));
  MSA_RETURN_IF_ERROR(check_ptrs("cuda rmsnorm", x, weight, y));
  if (dim <= 0 || n_rows < 0 || n_rows > INT_MAX) {
    return Error(StatusCode::kShape, "cuda rmsnorm: ", n_rows, " rows of ", dim);
  }
  if (n_rows == 0) return Status::Ok();
  rmsnorm_kernel<<<static_cast<unsigned>(n_rows), row_threads(dim), 0, res.stream()>>>(
      x, dim, weight, static_cast<int>(dtype), eps, y);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status rope_table(CudaResources& res, const int32_t* positions, int64_t n_tokens, int64_t head_dim, double theta,
                  float* cos, float* sin) {
  if (head_dim <= 0 || head_dim % 2 != 0 || n_tokens < 0) {
    return Error(StatusCode::kShape, "cuda rope_table: head_dim ", head_dim, " (must be even), ", n_tokens,
                 " tokens");
  }
  if (n_tokens == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda rope_table", positions, cos, sin));
  const int64_t n = n_tokens * (head_dim / 2);
  rope_table_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(positions, n_tokens, head_dim,
                                                                static_cast<float>(theta), cos, sin);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status rope(CudaResources& res, float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* cos,
            const float* sin) {
  if (head_dim <= 0 || head_dim % 2 != 0 || n_tokens < 0 || n_heads <= 0) {
    return Error(StatusCode::kShape, "cuda rope: ", n_tokens, " tokens, ", n_heads, " heads, head_dim ", head_dim);
  }
  if (n_tokens == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda rope", x, cos, sin));
  const int64_t n = n_tokens * n_heads * (head_dim / 2);
  rope_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(x, n_tokens, n_heads, head_dim, cos, sin);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status swiglu(CudaResources& res, const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) return Error(StatusCode::kShape, "cuda swiglu: n = ", n);
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda swiglu", gate, up, out));
  swiglu_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(gate, up, out, n);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status add(CudaResources& res, const float* a, const float* b, float* out, int64_t n) {
  if (n < 0) return Error(StatusCode::kShape, "cuda add: n = ", n);
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda add", a, b, out));
  add_kernel<<<elt_grid(n), kEltThreads, 0, res.stream()>>>(a, b, out, n);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace msa::cuda
