// CudaResources: what every CUDA op of one backend instance runs with. It owns the device selection, a
// compute stream (or borrows the caller's), a copy stream for host->device page transfers, the cuBLAS and
// cuBLASLt handles and a cuBLASLt workspace. One instance per backend; ops on it are issued in stream order
// and are not thread-safe against each other (like a CUDA stream).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

#include "core/status.h"

namespace msa::cuda {

class CudaResources {
 public:
  // Selects `device` and creates the streams and handles. `stream`: the caller's compute stream (not owned)
  // or null for an owned non-blocking stream. Errors: kNoDevice (no such device), kOutOfMemory, kInternal.
  static Status create(int device, cudaStream_t stream, std::unique_ptr<CudaResources>* out);
  ~CudaResources();
  CudaResources(const CudaResources&) = delete;
  CudaResources& operator=(const CudaResources&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudaStream_t copy_stream() const { return copy_stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cublasLtHandle_t cublaslt() const { return cublaslt_; }
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  const cudaDeviceProp& props() const { return props_; }

  // Makes `device()` current on the calling thread (every entry point that may run on a new thread calls it).
  Status make_current() const;
  // Waits for the compute stream; reports any asynchronous error as a Status.
  Status synchronize() const;

 private:
  CudaResources() = default;
  int device_ = 0;
  bool owns_stream_ = false;
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublaslt_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cudaDeviceProp props_{};
};

}  // namespace msa::cuda

namespace msa::cuda {

// Owned device memory (cudaMalloc), grown on demand. reserve() keeps the contents only when it does not
// reallocate; grow_preserve() copies the first `keep` bytes into the new allocation (stream-ordered on `s`,
// synchronised before the old block is freed). Freed in the destructor.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // At least `bytes` bytes (contents undefined after a reallocation).
  Status reserve(size_t bytes);
  // As reserve(), but when it must reallocate it first waits for `s` (whose queued work may still use the old
  // block).
  Status reserve_after(size_t bytes, cudaStream_t s);
  // At least `bytes` bytes, the first `keep` bytes preserved.
  Status grow_preserve(size_t bytes, size_t keep, cudaStream_t s);
  // As grow_preserve(), for a buffer that keeps growing by appends: when it must reallocate, it takes at least
  // half again its capacity, so n appends reallocate O(log n) times.
  Status grow_geometric(size_t bytes, size_t keep, cudaStream_t s);
  void* data() const { return p_; }
  size_t capacity() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Owned page-locked host memory (cudaHostAlloc, portable), grown on demand (contents not preserved).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  Status reserve(size_t bytes);
  void* data() const { return p_; }
  size_t capacity() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace msa::cuda
