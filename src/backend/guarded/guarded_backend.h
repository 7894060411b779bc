// GuardedBackend (test builds only, MSA_GUARDED_BACKEND): the CPU backend with every byte of its device
// memory — buffers, prepared weights, resident routing indexes — kept inaccessible (mprotect PROT_NONE)
// except while one of its own ops or transfers runs. Engine code that reads or writes backend memory
// directly (instead of through upload/download/ops) crashes at once with SIGSEGV, so the test suite run on
// this backend (MSA_BACKEND=cpu-guarded) proves that the engine treats backend memory as device memory, as a
// GPU backend requires. Host staging memory (alloc_staging) is host memory and stays accessible.
//
// Ops are serialised by one mutex (memory is opened for the duration of one op at a time), so the backend is
// thread-safe but not parallel across callers; each op itself still uses the thread pool. All device memory is
// carved (page-granular, first fit) out of one reserved PROT_NONE arena, so opening and closing it around an op
// is two mprotect calls whatever the number of buffers.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include "backend/cpu/cpu_backend.h"

namespace msa {

class GuardedBackend final : public Backend {
 public:
  explicit GuardedBackend(const CpuBackendOptions& options = CpuBackendOptions());
  ~GuardedBackend() override;

  const char* name() const override { return "cpu-guarded"; }
  std::string device_description() const override;
  ThreadPool* thread_pool() const override { return cpu_.thread_pool(); }

  Status upload(void* dst, const void* src, size_t bytes) override;
  Status download(void* dst, const void* src, size_t bytes) override;
  Status copy(void* dst, const void* src, size_t bytes) override;
  Status synchronize() override { return Status::Ok(); }
  // A copy in guarded memory (never the checkpoint's own mapping).
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
  // A copy of the host index in guarded memory.
  Status upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) override;
  // Copies the appended rows and documents into (grown) guarded buffers, and every tombstone flag.
  Status update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) override;
  Status route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) override;

 protected:
  void* alloc_device_raw(size_t bytes, Status* error) override;
  void free_device_raw(void* p, size_t bytes) noexcept override;

 private:
  // Opens the arena for the lifetime of the object (holding the op mutex), closes it after.
  class Open;
  void protect(int prot);

  CpuBackend cpu_;
  std::mutex mu_;
  uint8_t* arena_ = nullptr;     // reserved, PROT_NONE between ops
  size_t arena_bytes_ = 0;
  size_t high_ = 0;              // end of the highest block in use: what Open opens
  std::map<size_t, size_t> free_;  // offset -> length of free ranges (coalesced)
  std::map<size_t, size_t> used_;  // offset -> length of blocks in use
};

}  // namespace msa
