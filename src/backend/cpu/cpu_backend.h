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

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <map>
#include <utility>
#include <vector>

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
  std::string device_description() const override;

  // Memory is host memory: transfers are memcpy, the queue is synchronous.
  Status upload(void* dst, const void* src, size_t bytes) override;
  Status download(void* dst, const void* src, size_t bytes) override;
  Status copy(void* dst, const void* src, size_t bytes) override;
  Status synchronize() override { return Status::Ok(); }
  // The checkpoint's tensors are read in place (the mmap): no copy, `storage` stays empty.
  Status prepare_weight(const TensorView& host, TensorView* out, DeviceBuffer* storage) override;

  Status matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) override;
  Status rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                 float* y) override;
  Status rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
              double theta) override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override;
  void add(const float* a, const float* b, float* out, int64_t n) override;
  void scale(float* x, float s, int64_t n) override;
  Status embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) override;
  Status gather_rows(const float* src, int64_t n_src, int64_t width, const int32_t* rows, int64_t n,
                     float* dst) override;
  Status attention(const AttentionArgs& args) override;
  void mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) override;
  void l2_normalize(float* x, int64_t n_vectors, int64_t dim) override;
  Status decode_pages(PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows, int64_t n_heads,
                      int64_t head_dim, float* out) override;
  // Zero-copy: the resident index is the host view itself (the routing tier stays in host RAM on the CPU).
  Status upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) override;
  Status update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) override;
  Status route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) override;

 protected:
  // Positions from here on get a per-call table instead of growing the shared one.
  static constexpr int32_t kMaxRopeTable = 1 << 20;
  void rope_apply(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                  const float* cos_t, const float* sin_t);
  void* alloc_device_raw(size_t bytes, Status* error) override;
  void free_device_raw(void* p, size_t bytes) noexcept override;

 private:
  ThreadPool* pool_;
  CpuIsa isa_;
  const cpu::Kernels* kernels_;
  // RoPE tables by (head_dim, theta): cos/sin of positions [0, n) (compute_rope_table values, so identical to
  // a per-call table), grown on demand to the largest position seen and shared by every rope() call.
  void grow_rope_table(int64_t head_dim, double theta, int64_t n_positions);
  struct RopeTable {
    int64_t n = 0;
    std::vector<float> cos, sin;
  };
  std::shared_mutex rope_mu_;
  std::map<std::pair<int64_t, double>, std::unique_ptr<RopeTable>> rope_;
};

}  // namespace msa
