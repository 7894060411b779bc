// The CUDA backend: msa::Backend (backend/backend.h) on one NVIDIA GPU, over the kernels of cuda/. Included by
// backend/registry.cpp (plain C++, no CUDA headers: this header includes none).
//
// What the ops run on (cuda_backend.cpp has the details):
// * memory: cudaMalloc / cudaFree (device), cudaHostAlloc(portable) / cudaFreeHost (staging: pinned). Transfers
//   are cudaMemcpyAsync on the compute stream; download() and synchronize() wait for everything issued before;
//   upload() returns once `src` may be reused (a pinned `src` waits for its copy, a pageable one is staged by
//   CUDA before the call returns).
// * weights (prepare_weight): BF16 and F32 tensors are uploaded as they are; F16 tensors are widened to F32 on
//   the device (exact; the cuBLAS path has no f16 x f32 GEMM with f32 activations). Storage = one alloc().
// * matmul: BF16 weights -> cuBLAS bf16 x bf16 on tensor cores with f32 accumulation, x rounded to bf16 first
//   (|y_gpu - y_cpu| <= 2^-8 sum_i |x_i w_i| plus f32 summation error: ops_gemm.h); F32 weights -> cuBLAS f32
//   with CUBLAS_COMPUTE_32F_PEDANTIC (no TF32: the CPU's result to summation order).
// * elementwise / row-wise ops, attention, mean pooling, embedding: ops_elementwise.h, ops_attention.h (the CPU
//   twin's numerics; softmax / swiglu / attention use the device expf and tree reductions: within a few ulps).
// * scale, gather_rows, l2_normalize, decode_pages: ops_backend.h (bit-identical to the CPU twin).
// * routing: upload_routing_index copies the host index into a DeviceRoutingIndex (routing_index.h) plus a
//   DeviceDocSet (ids, tombstones; topk.h); route() = the fused scan of routing_score.h + the CUB radix top-k of
//   topk.h, (score desc, id asc), tombstones skipped, NaN last; it downloads only the top k (and every score
//   when req.want_scores). Scores agree with the CPU to f32 rounding (another summation order).
// * errors: every entry point returns a Status (kOutOfMemory for cudaErrorMemoryAllocation, kNoDevice, kInternal
//   for other CUDA / cuBLAS errors), never aborts or throws. The void ops (swiglu, add, scale, softmax,
//   mean_pool, l2_normalize) keep their first launch error and report it from the next download() or
//   synchronize(); so do asynchronous kernel faults.
// * ops that wait for the device besides download / synchronize: embedding and gather_rows (they read their
//   id / row check back), upload_routing_index, route, prepare_weight of F16 tensors, upload from pinned memory.
// * differences from the CPU twin: rope does not reject negative positions (no device round trip per call;
//   they rotate by the negative angle); the bf16 matmul rounds x to bf16 (above).
// * threads: one CUDA stream per backend; every op, transfer and routing call takes one mutex of the backend
//   for as long as it issues work (and, for the waiting calls above, while it waits), so calls from several
//   threads are serialised (CudaResources, the cuBLAS handle and the backend's scratch are not thread-safe).
//   alloc / free do not take it (cudaMalloc / cudaFree are thread-safe).
// * lifetime: every DeviceBuffer and resident routing index of the backend must be released before it.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "core/status.h"

namespace msa {

// The CUDA backend on GPU `device`, issuing its work on `cuda_stream` (a cudaStream_t, not owned, which must
// outlive the backend) or, when null, on a non-blocking stream of its own. Errors: kNoDevice (no CUDA driver, no
// device, or no device `device`: the message says which), kInvalidArgument (null out), kOutOfMemory, kInternal.
Status create_cuda_backend(int device, void* cuda_stream, std::unique_ptr<Backend>* out);

}  // namespace msa
