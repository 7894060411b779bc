// Internal to the CPU backend: single-threaded kernels behind a table of function pointers, one table per
// instruction set (kernels_scalar.cpp: portable; kernels_avx2.cpp: AVX2+FMA+F16C, compiled with function
// target attributes so the rest of the build needs no -mavx2). CpuBackend picks a table at run time and
// splits the work over threads; the kernels themselves never allocate.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace msa::cpu {

// GEMM blocking shared by the dispatcher (which hands out whole blocks of output rows to threads) and the
// kernels (which pack a block of W into an f32 tile of kGemmBlockRows x kGemmKc floats).
constexpr int64_t kGemmBlockRows = 64;
constexpr int64_t kGemmKc = 256;
// Up to this many rows of X, matmul streams W through gemv (no packing); more rows go to gemm.
constexpr int64_t kGemvMaxRows = 8;

struct Kernels {
  const char* name;

  // Prepares one f32 row x[K] for gemv with weights of dtype `dt` into xp[K] (a copy, or a permutation that
  // matches how the kernel unpacks bf16 pairs).
  void (*gemv_prepare)(DType dt, const float* x, int64_t k, float* xp);
  // y[r, o] = dot(W[o, :], x[r, :]) for r < T and o in [o0, o1), T <= kGemvMaxRows: every weight is loaded and
  // converted once, in registers, and used for all T rows. W: [*, K] row-major of dtype dt; xp: [T, K], each
  // row from gemv_prepare; y: [T, ldy].
  void (*gemv)(DType dt, const void* w, int64_t k, const float* xp, int64_t t, float* y, int64_t ldy, int64_t o0,
               int64_t o1);

  // Floats of scratch one gemm call needs for a given K (64-byte aligned by the caller).
  size_t (*gemm_scratch)(int64_t k);
  // y[t, o] = dot(x[t, :], W[o, :]) for t < T and o in [o0, o1). x: [T, K], y: [T, ldy]. The dispatcher
  // passes o0 as a multiple of kGemmBlockRows.
  void (*gemm)(DType dt, const void* w, int64_t k, const float* x, int64_t t, float* y, int64_t ldy, int64_t o0,
               int64_t o1, float* scratch);

  // Building blocks of attention.
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float alpha, const float* x, float* y, int64_t n);  // y += alpha * x
};

const Kernels& scalar_kernels();
// AVX2+FMA+F16C kernels; only call them when the CPU supports them (cpu_has_avx2()).
const Kernels& avx2_kernels();
bool cpu_has_avx2();

// Converts n values of a float dtype (BF16/F16/F32) to f32 (portable code, used by both tables for tails).
void to_f32(DType dt, const void* src, float* dst, int64_t n);

}  // namespace msa::cpu
