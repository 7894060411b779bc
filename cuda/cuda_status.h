// CUDA and cuBLAS errors as msa::Status (never an abort, never an exception). Host C++ that includes this
// needs the CUDA runtime headers (the msa_cuda target provides them).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/status.h"

namespace msa::cuda {

// Ok for cudaSuccess. cudaErrorMemoryAllocation -> kOutOfMemory; cudaErrorNoDevice /
// cudaErrorInsufficientDriver -> kNoDevice; anything else -> kInternal. The message names `what` (the call)
// and the CUDA error name and text. Clears the sticky last-error state of non-sticky errors.
Status cuda_status(cudaError_t err, const char* what);

// Ok for CUBLAS_STATUS_SUCCESS; CUBLAS_STATUS_ALLOC_FAILED -> kOutOfMemory; NOT_SUPPORTED /
// ARCH_MISMATCH -> kUnsupported; anything else -> kInternal, with `what` and the cuBLAS status name.
Status cublas_status(cublasStatus_t st, const char* what);

}  // namespace msa::cuda

// Evaluates a CUDA runtime call; on failure returns its Status from the enclosing function.
#define MSA_CUDA_RETURN_IF_ERROR(call)                                   \
  do {                                                                   \
    cudaError_t msa_cuda_err_ = (call);                                  \
    if (msa_cuda_err_ != cudaSuccess) return ::msa::cuda::cuda_status(msa_cuda_err_, #call); \
  } while (0)

// Evaluates a cuBLAS / cuBLASLt call; on failure returns its Status from the enclosing function.
#define MSA_CUBLAS_RETURN_IF_ERROR(call)                                 \
  do {                                                                   \
    cublasStatus_t msa_cublas_st_ = (call);                              \
    if (msa_cublas_st_ != CUBLAS_STATUS_SUCCESS) return ::msa::cuda::cublas_status(msa_cublas_st_, #call); \
  } while (0)
