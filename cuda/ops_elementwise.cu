#include "ops_elementwise.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <climits>
#include <cmath>

#include "cuda_status.h"

namespace msa::cuda {

namespace {

constexpr int kThreads = 256;

// Grid for a grid-stride loop over n elements.
unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 32768 ? (blocks > 0 ? blocks : 1) : 32768);
}

// dtype codes as ints for the kernels: 0 = f32, 1 = bf16, 2 = f16 (the DType values).
__device__ __forceinline__ float load_f32(const void* p, int dtype, int64_t i) {
  if (dtype == static_cast<int>(DType::kBF16)) {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
  if (dtype == static_cast<int>(DType::kF16)) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

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

__global__ void convert_kernel(const void* __restrict__ src, int dtype, int64_t n, float* __restrict__ dst) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    dst[i] = load_f32(src, dtype, i);
  }
}

// One block per token row. bad: the smallest bad index (atomicMin), UINT64_MAX when all ids are valid.
__global__ void embedding_kernel(const void* __restrict__ table, int dtype, int64_t vocab, int64_t dim,
                                 const int32_t* __restrict__ ids, float* __restrict__ out,
                                 unsigned long long* bad) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  float* o = out + t * dim;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(t));
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = 0.0f;
    return;
  }
  const int64_t base = static_cast<int64_t>(id) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = load_f32(table, dtype, base + i);
}

// Block-wide sum of a double (blockDim.x a multiple of 32, <= 1024). Every thread gets the total.
__device__ double block_sum(double v) {
  __shared__ double warp_part[32];
  __shared__ double total;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    double s = lane < n_warps ? warp_part[lane] : 0.0;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

__device__ float block_max_f(float v) {
  __shared__ float warp_part[32];
  __shared__ float total;
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    float s = lane < n_warps ? warp_part[lane] : -INFINITY;
    for (int off = 16; off > 0; off >>= 1) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, off));
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

__device__ float block_sum_f(float v) {
  __shared__ float warp_part[32];
  __shared__ float total;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    float s = lane < n_warps ? warp_part[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// One block per row. Every thread reads the elements it later writes, after the reduction barrier, so y
// may alias x.
__global__ void rmsnorm_kernel(const float* x, int64_t dim, const void* __restrict__ weight, int dtype, float eps,
                               float* y) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const double v = static_cast<double>(xr[i]);
    ss += v * v;
  }
  ss = block_sum(ss);
  const float var = static_cast<float>(ss / static_cast<double>(dim));
  const float inv = 1.0f / sqrtf(var + eps);  // IEEE sqrt and division (no fast math)
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    yr[i] = __fmul_rn(load_f32(weight, dtype, i), __fmul_rn(xr[i], inv));
  }
}

__global__ void rope_table_kernel(const int32_t* __restrict__ positions, int64_t n_tokens, int64_t head_dim,
                                  float base, float* __restrict__ cos_out, float* __restrict__ sin_out) {
  const int64_t half = head_dim / 2;
  const int64_t n = n_tokens * half;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t t = e / half, i = e % half;
    const float expo = __fdiv_rn(static_cast<float>(2 * i), static_cast<float>(head_dim));
    const float p = static_cast<float>(pow(static_cast<double>(base), static_cast<double>(expo)));
    const float inv_freq = __fdiv_rn(1.0f, p);
    const float angle = __fmul_rn(inv_freq, static_cast<float>(positions[t]));
    cos_out[e] = static_cast<float>(cos(static_cast<double>(angle)));
    sin_out[e] = static_cast<float>(sin(static_cast<double>(angle)));
  }
}

__global__ void rope_kernel(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
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
    v[i] = __fadd_rn(__fmul_rn(x0, c), __fmul_rn(-x1, s));
    v[i + half] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i];
    const float u = up[i];
    out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
  }
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = a[i] + b[i];
  }
}

__global__ void softmax_kernel(float* x, int64_t n_cols) {
  float* v = x + static_cast<int64_t>(blockIdx.x) * n_cols;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n_cols; i += blockDim.x) mx = fmaxf(mx, v[i]);
  mx = block_max_f(mx);
  if (mx == -INFINITY) mx = 0.0f;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n_cols; i += blockDim.x) {
    const float e = expf(v[i] - mx);
    v[i] = e;
    sum += e;
  }
  sum = block_sum_f(sum);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int64_t i = threadIdx.x; i < n_cols; i += blockDim.x) v[i] *= inv;
}

// Threads for a one-block-per-row kernel: a multiple of 32, at most 256, not much more than the row.
int row_threads(int64_t dim) {
  int64_t t = (dim + 31) / 32 * 32;
  if (t > kThreads) t = kThreads;
  if (t < 32) t = 32;
  return static_cast<int>(t);
}

}  // namespace

Status convert_to_f32(CudaResources& res, const void* src, DType dtype, int64_t n, float* dst) {
  MSA_RETURN_IF_ERROR(check_dtype(dtype, "cuda convert_to_f32"));
  MSA_RETURN_IF_ERROR(check_ptrs("cuda convert_to_f32", src, dst));
  if (n < 0) return Error(StatusCode::kShape, "cuda convert_to_f32: n = ", n);
  if (n == 0) return Status::Ok();
  convert_kernel<<<grid_for(n), kThreads, 0, res.stream()>>>(src, static_cast<int>(dtype), n, dst);
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
  rope_table_kernel<<<grid_for(n), kThreads, 0, res.stream()>>>(positions, n_tokens, head_dim,
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
  rope_kernel<<<grid_for(n), kThreads, 0, res.stream()>>>(x, n_tokens, n_heads, head_dim, cos, sin);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status swiglu(CudaResources& res, const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) return Error(StatusCode::kShape, "cuda swiglu: n = ", n);
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda swiglu", gate, up, out));
  swiglu_kernel<<<grid_for(n), kThreads, 0, res.stream()>>>(gate, up, out, n);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status add(CudaResources& res, const float* a, const float* b, float* out, int64_t n) {
  if (n < 0) return Error(StatusCode::kShape, "cuda add: n = ", n);
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda add", a, b, out));
  add_kernel<<<grid_for(n), kThreads, 0, res.stream()>>>(a, b, out, n);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status softmax(CudaResources& res, float* x, int64_t n_rows, int64_t n_cols) {
  if (n_rows < 0 || n_cols < 0 || n_rows > INT_MAX) {
    return Error(StatusCode::kShape, "cuda softmax: ", n_rows, " rows of ", n_cols);
  }
  if (n_rows == 0 || n_cols == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_ptrs("cuda softmax", x));
  softmax_kernel<<<static_cast<unsigned>(n_rows), row_threads(n_cols), 0, res.stream()>>>(x, n_cols);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace msa::cuda
