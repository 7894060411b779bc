#include "resources.h"

#include "cuda_status.h"

namespace msa::cuda {

namespace {
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // cuBLASLt split-K / stream-K scratch
}

Status CudaResources::create(int device, cudaStream_t stream, std::unique_ptr<CudaResources>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "CudaResources::create: out is null");
  out->reset();
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    return Error(StatusCode::kNoDevice, "CUDA: no device present",
                 e != cudaSuccess ? std::string(" (") + cudaGetErrorName(e) + ")" : std::string());
  }
  if (device < 0 || device >= n) {
    return Error(StatusCode::kNoDevice, "CUDA: device ", device, " requested, ", n, " present");
  }
  std::unique_ptr<CudaResources> r(new CudaResources());
  r->device_ = device;
  MSA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  MSA_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&r->props_, device));
  if (stream != nullptr) {
    r->stream_ = stream;
  } else {
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&r->stream_, cudaStreamNonBlocking));
    r->owns_stream_ = true;
  }
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&r->copy_stream_, cudaStreamNonBlocking));
  MSA_CUBLAS_RETURN_IF_ERROR(cublasCreate(&r->cublas_));
  MSA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(r->cublas_, r->stream_));
  MSA_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&r->cublaslt_));
  MSA_CUDA_RETURN_IF_ERROR(cudaMalloc(&r->workspace_, kLtWorkspaceBytes));
  r->workspace_bytes_ = kLtWorkspaceBytes;
  MSA_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(r->cublas_, r->workspace_, r->workspace_bytes_));
  *out = std::move(r);
  return Status::Ok();
}

CudaResources::~CudaResources() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (workspace_) cudaFree(workspace_);
  if (cublaslt_) cublasLtDestroy(cublaslt_);
  if (cublas_) cublasDestroy(cublas_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
  if (owns_stream_ && stream_) cudaStreamDestroy(stream_);
  cudaGetLastError();
}

Status CudaResources::make_current() const { return cuda_status(cudaSetDevice(device_), "cudaSetDevice"); }

Status CudaResources::synchronize() const {
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return cuda_status(cudaGetLastError(), "kernel launch");
}

}  // namespace msa::cuda

namespace msa::cuda {

DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}

Status DeviceBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_ && p_ != nullptr) return Status::Ok();
  if (p_) cudaFree(p_);
  p_ = nullptr;
  bytes_ = 0;
  if (bytes == 0) return Status::Ok();
  MSA_CUDA_RETURN_IF_ERROR(cudaMalloc(&p_, bytes));
  bytes_ = bytes;
  return Status::Ok();
}

Status DeviceBuffer::reserve_after(size_t bytes, cudaStream_t s) {
  if (bytes <= bytes_ && p_ != nullptr) return Status::Ok();
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  return reserve(bytes);
}

Status DeviceBuffer::grow_preserve(size_t bytes, size_t keep, cudaStream_t s) {
  if (bytes <= bytes_ && p_ != nullptr) return Status::Ok();
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));  // queued work may still use the old block
  void* np = nullptr;
  MSA_CUDA_RETURN_IF_ERROR(cudaMalloc(&np, bytes));
  if (keep > 0 && p_ != nullptr) {
    cudaError_t e = cudaMemcpyAsync(np, p_, keep < bytes_ ? keep : bytes_, cudaMemcpyDeviceToDevice, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) {
      cudaFree(np);
      return cuda_status(e, "DeviceBuffer::grow_preserve copy");
    }
  }
  if (p_) cudaFree(p_);
  p_ = np;
  bytes_ = bytes;
  return Status::Ok();
}

Status DeviceBuffer::grow_geometric(size_t bytes, size_t keep, cudaStream_t s) {
  if (bytes <= bytes_ && p_ != nullptr) return Status::Ok();
  return grow_preserve(bytes > bytes_ + bytes_ / 2 ? bytes : bytes_ + bytes_ / 2, keep, s);
}

PinnedBuffer::~PinnedBuffer() {
  if (p_) cudaFreeHost(p_);
}

Status PinnedBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_ && p_ != nullptr) return Status::Ok();
  if (p_) cudaFreeHost(p_);
  p_ = nullptr;
  bytes_ = 0;
  if (bytes == 0) return Status::Ok();
  MSA_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&p_, bytes, cudaHostAllocPortable));
  bytes_ = bytes;
  return Status::Ok();
}

}  // namespace msa::cuda
