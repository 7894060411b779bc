// CpuBackend: the reference backend. f32 compute from bf16/f16/f32 weights; AVX2+FMA(+F16C) kernels chosen at
// run time when the CPU has them (the build itself assumes only x86-64 / the compiler's baseline), a portable
// scalar path otherwise. Work is split over output rows (matmul) or (query, kv-head) pairs (attention) on a
// ThreadPool.
//
// Matmul paths: n_rows <= 8 streams W once, converting in registers (GEMV-like, bandwidth bound); more rows
// pack blocks of W into f32 tiles reused by all rows (GEMM). Batch invariance, which the encoder relies on:
// on the GEMM path every output value is computed by the same operations whatever n_rows, the row's index
// and the thread split, so a row's result is bit-identical in any batch of > 8 rows (the GEMV path sums in
// another order). All other ops are row-wise, and attention reads a query's visible keys in key order, so the
// whole forward inherits the property for batches of > 8 rows.
#pragma once

#include "backend/backend.h"

namespace msa {

class ThreadPool;
namespace cpu {
struct Kernels;  // backend/cpu/kernels.h
}

enum class CpuIsa : int {
  kAuto = 0,    // AVX2 when the CPU supports avx2, fma and f16c, else scalar
  kScalar = 1,  // portable C++ (what a non-AVX2 machine runs); tests compare it with kAvx2
  kAvx2 = 2,    // AVX2+FMA+F16C kernels; falls back to scalar (with isa() saying so) on a CPU without them
};

struct CpuBackendOptions {
  ThreadPool* pool = nullptr;  // null: ThreadPool::global(); not owned, must outlive the backend
  CpuIsa isa = CpuIsa::kAuto;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options = CpuBackendOptions());
  ThreadPool* thread_pool() const override { return pool_; }

  // True when this CPU can run the AVX2 kernels (avx2, fma and f16c).
  static bool cpu_has_avx2();

  // The kernels actually used: kScalar or kAvx2 (never kAuto).
  CpuIsa isa() const { return isa_; }
  ThreadPool& pool() const { return *pool_; }

  const char* name() const override;
  Status matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) override;
  Status rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                 float* y) override;
  void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* cos,
            const float* sin) override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override;
  void add(const float* a, const float* b, float* out, int64_t n) override;
  void softmax(float* x, int64_t n_rows, int64_t n_cols) override;
  Status embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) override;
  Status attention(const AttentionArgs& args) override;
  void mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) override;

 private:
  ThreadPool* pool_;
  CpuIsa isa_;
  const cpu::Kernels* kernels_;
};

}  // namespace msa
