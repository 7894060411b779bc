#include "device.h"

#include <cuda_runtime.h>

#include "cuda_status.h"

#include <cstdio>
#include <vector>

namespace msa::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

const char* device_name(int index) {
  static thread_local char buf[256];
  buf[0] = '\0';
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %.0f GiB", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

namespace {
__global__ void add_kernel(const float* a, const float* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}
}  // namespace

int self_test() {
  if (device_count() == 0) return -1;
  const int n = 1000;
  std::vector<float> a(n), b(n), c(n);
  for (int i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = 2.0f * static_cast<float>(i);
  }
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  bool ok = cudaMalloc(&da, n * sizeof(float)) == cudaSuccess && cudaMalloc(&db, n * sizeof(float)) == cudaSuccess &&
            cudaMalloc(&dc, n * sizeof(float)) == cudaSuccess;
  ok = ok && cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess;
  ok = ok && cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess;
  if (ok) {
    add_kernel<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    ok = cudaGetLastError() == cudaSuccess &&
         cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess;
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  if (!ok) return -2;
  for (int i = 0; i < n; ++i)
    if (c[i] != 3.0f * static_cast<float>(i)) return -2;
  return 0;
}

namespace {
__device__ __forceinline__ uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
__device__ __forceinline__ float unit_float(uint64_t h) {  // [0, 1)
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}
__global__ void fill_kernel(void* p, size_t n, uint64_t seed, int kind, float lo, float hi) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t h = mix64(seed * 0x632be59bd9b4e019ull + i);
    if (kind == 0) {
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(static_cast<int>(h % 255u) - 127);
    } else if (kind == 1) {
      const float f = 2.0f * unit_float(h) - 1.0f;
      uint32_t u = __float_as_uint(f);
      u += 0x7fffu + ((u >> 16) & 1u);
      static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(u >> 16);
    } else {
      static_cast<float*>(p)[i] = lo + (hi - lo) * unit_float(h);
    }
  }
}
Status fill(void* p, size_t n, uint64_t seed, int kind, float lo, float hi) {
  if (n == 0) return Status::Ok();
  if (p == nullptr) return Error(StatusCode::kInvalidArgument, "fill_random: null pointer");
  fill_kernel<<<4096, 256>>>(p, n, seed, kind, lo, hi);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  MSA_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}
}  // namespace

Status fill_random_int8(void* d_ptr, size_t n, uint64_t seed) { return fill(d_ptr, n, seed, 0, 0.0f, 0.0f); }
Status fill_random_bf16(void* d_ptr, size_t n, uint64_t seed) { return fill(d_ptr, n, seed, 1, 0.0f, 0.0f); }
Status fill_random_f32(float* d_ptr, size_t n, float lo, float hi, uint64_t seed) {
  return fill(d_ptr, n, seed, 2, lo, hi);
}

}  // namespace msa::cuda
