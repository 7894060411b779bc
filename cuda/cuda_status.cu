#include "cuda_status.h"

namespace msa::cuda {

Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  cudaGetLastError();  // clear the non-sticky error so later calls see a clean state
  StatusCode code = StatusCode::kInternal;
  if (err == cudaErrorMemoryAllocation) code = StatusCode::kOutOfMemory;
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorInvalidDevice) {
    code = StatusCode::kNoDevice;
  }
  return Error(code, "CUDA: ", what, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
}

Status cublas_status(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  StatusCode code = StatusCode::kInternal;
  if (st == CUBLAS_STATUS_ALLOC_FAILED) code = StatusCode::kOutOfMemory;
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_ARCH_MISMATCH) code = StatusCode::kUnsupported;
  return Error(code, "cuBLAS: ", what, " failed: ", cublasGetStatusName(st), " (", cublasGetStatusString(st), ")");
}

}  // namespace msa::cuda
