#include "device.h"

#include <cuda_runtime.h>

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

}  // namespace msa::cuda
