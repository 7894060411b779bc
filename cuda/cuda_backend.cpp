// CudaBackend: msa::Backend over the kernels of cuda/ (cuda_backend.h describes the mapping and the rules).
#include "cuda_backend.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <mutex>
#include <new>
#include <string>
#include <utility>

#include "cuda_status.h"
#include "ops_attention.h"
#include "ops_backend.h"
#include "ops_elementwise.h"
#include "ops_gemm.h"
#include "resources.h"
#include "routing_index.h"
#include "routing_score.h"
#include "topk.h"

namespace msa {

namespace {

// True when p is page-locked host memory (cudaHostAlloc / cudaHostRegister): a copy from it is truly
// asynchronous. Anything the runtime does not know (pageable memory) is false.
bool is_pinned_host(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeHost;
}

class CudaBackend;

// A routing index resident on the GPU: the keys + CSR document map (DeviceRoutingIndex) and the document ids +
// tombstones (DeviceDocSet) top-k chooses among.
class CudaRoutingIndex final : public ResidentRoutingIndex {
 public:
  CudaRoutingIndex(const CudaBackend* owner, int device) : owner_(owner), device_(device) {}
  ~CudaRoutingIndex() override {
    cudaSetDevice(device_);  // the buffers' destructors cudaFree on the current device
    docs.reset();
    index.reset();
    cudaGetLastError();
  }
  int64_t n_chunks() const override { return index->n_chunks(); }
  int64_t n_documents() const override { return docs->n_documents(); }
  int64_t device_bytes() const override {
    const int64_t n_docs = docs->n_documents();
    // keys + scales as allocated (update_routing_index grows them geometrically), the CSR (offsets + chunk
    // list), the id ranks and the tombstone bytes.
    return index->reserved_key_bytes() + (index->n_documents() + 1 + index->n_chunks()) * 4 + n_docs * 5;
  }
  const CudaBackend* owner() const { return owner_; }

  std::unique_ptr<cuda::DeviceRoutingIndex> index;
  std::unique_ptr<cuda::DeviceDocSet> docs;

 private:
  const CudaBackend* owner_;
  int device_;
};

class CudaBackend final : public Backend {
 public:
  static Status create(int device, cudaStream_t stream, std::unique_ptr<Backend>* out);
  ~CudaBackend() override;

  const char* name() const override { return "cuda"; }
  std::string device_description() const override { return description_; }

  Status upload(void* dst, const void* src, size_t bytes) override;
  Status upload_staged(void* dst, const void* src, size_t bytes) override;
  Status download(void* dst, const void* src, size_t bytes) override;
  Status copy(void* dst, const void* src, size_t bytes) override;
  Status synchronize() override;
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
  Status upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) override;
  Status update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) override;
  Status route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) override;

 protected:
  void* alloc_device_raw(size_t bytes, Status* error) override;
  void free_device_raw(void* p, size_t bytes) noexcept override;
  void* alloc_staging_raw(size_t bytes, Status* error) override;
  void free_staging_raw(void* p, size_t bytes) noexcept override;

 private:
  CudaBackend() = default;
  // Keeps the first error of a void op for the next download() / synchronize(). Caller holds mu_.
  void defer(Status s) {
    if (!s.ok() && deferred_.ok()) deferred_ = std::move(s);
  }
  // The deferred error (cleared), or `st` when there is none. Caller holds mu_.
  Status take_deferred(Status st) {
    if (deferred_.ok()) return st;
    Status d = std::move(deferred_);
    deferred_ = Status::Ok();
    return d;
  }
  cudaStream_t stream() const { return res_->stream(); }
  // A void op: issues f() (which returns the launch's Status) under the lock and defers its error.
  template <typename F>
  void enqueue(F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    Status st = res_->make_current();
    if (st.ok()) st = f();
    defer(std::move(st));
  }

  // Declared first: destroyed last (the scratch buffers and routing helpers free into its device).
  std::unique_ptr<cuda::CudaResources> res_;
  std::mutex mu_;  // serialises every op (see cuda_backend.h)
  Status deferred_;
  std::string description_;
  // Scratch, stream-ordered: reallocated only after the stream is drained (reserve_after).
  cuda::DeviceBuffer x_bf16_;  // matmul: x rounded to bf16
  cuda::DeviceBuffer w_f32_;   // matmul of an F16 weight that did not come from prepare_weight
  cuda::DeviceBuffer rope_cs_; // rope: cos | sin tables of the call's positions
  cuda::DeviceBuffer flag_;    // gather_rows: the first bad row (8 bytes)
  std::unique_ptr<cuda::RoutingScorer> scorer_;
  std::unique_ptr<cuda::TopKSelector> topk_;
};

#define MSA_CUDA_LOCK()                      \
  std::lock_guard<std::mutex> msa_lock_(mu_); \
  MSA_RETURN_IF_ERROR(res_->make_current())

Status CudaBackend::create(int device, cudaStream_t stream, std::unique_ptr<Backend>* out) {
  std::unique_ptr<cuda::CudaResources> res;
  Status st = cuda::CudaResources::create(device, stream, &res);
  if (!st.ok()) {
    return Error(st.code(), "cuda backend (device ", device, "): ", st.message(),
                 st.code() == StatusCode::kNoDevice ? "; use the \"cpu\" backend on this machine" : "");
  }
  std::unique_ptr<CudaBackend> be(new (std::nothrow) CudaBackend());
  if (be == nullptr) return Error(StatusCode::kOutOfMemory, "cuda backend: out of host memory");
  const cudaDeviceProp& p = res->props();
  char mem[64];
  std::snprintf(mem, sizeof mem, "%.1f GiB", static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  be->description_ = std::string(p.name) + ", " + mem + ", sm_" + std::to_string(p.major) + std::to_string(p.minor) +
                     " (device " + std::to_string(device) + ")";
  be->res_ = std::move(res);
  MSA_RETURN_IF_ERROR(be->flag_.reserve(sizeof(unsigned long long)));
  MSA_RETURN_IF_ERROR(cuda::RoutingScorer::create(be->res_.get(), &be->scorer_));
  MSA_RETURN_IF_ERROR(cuda::TopKSelector::create(be->res_.get(), &be->topk_));
  *out = std::move(be);
  return Status::Ok();
}

CudaBackend::~CudaBackend() {
  if (res_) {
    cudaSetDevice(res_->device());
    cudaStreamSynchronize(res_->stream());
    cudaGetLastError();
  }
}

// ------------------------------------------------------------------------------------------------ memory

void* CudaBackend::alloc_device_raw(size_t bytes, Status* error) {
  Status st = res_->make_current();
  void* p = nullptr;
  if (st.ok()) st = cuda::cuda_status(cudaMalloc(&p, bytes), "cudaMalloc");
  if (!st.ok()) {
    *error = Error(st.code(), "cuda: cannot allocate ", bytes, " bytes of device memory on ", description_, ": ",
                   st.message());
    return nullptr;
  }
  return p;  // cudaMalloc's blocks are aligned to at least 256 bytes
}

void CudaBackend::free_device_raw(void* p, size_t) noexcept {
  cudaSetDevice(res_->device());
  if (cudaFree(p) != cudaSuccess) cudaGetLastError();  // keep this thread's last-error state clean
}

void* CudaBackend::alloc_staging_raw(size_t bytes, Status* error) {
  Status st = res_->make_current();
  void* p = nullptr;
  if (st.ok()) st = cuda::cuda_status(cudaHostAlloc(&p, bytes, cudaHostAllocPortable), "cudaHostAlloc");
  if (!st.ok()) {
    *error = Error(st.code(), "cuda: cannot allocate ", bytes, " bytes of pinned host memory for ", description_,
                   ": ", st.message());
    return nullptr;
  }
  return p;  // page-aligned
}

void CudaBackend::free_staging_raw(void* p, size_t) noexcept {
  cudaSetDevice(res_->device());
  // An upload_staged() DMA may still read it: let the stream's queued work finish first.
  if (cudaStreamSynchronize(res_->stream()) != cudaSuccess) cudaGetLastError();
  if (cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
}

Status CudaBackend::upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  if (dst == nullptr || src == nullptr) return Error(StatusCode::kInvalidArgument, "cuda upload: null pointer");
  MSA_CUDA_LOCK();
  MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream()));
  // A pageable source has been staged by CUDA when the call returns; a pinned one is read by the DMA later, and the
  // caller may overwrite it as soon as upload() returns (as on the CPU): wait for the copy.
  if (is_pinned_host(src)) MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
  return Status::Ok();
}

// Pinned staging: the DMA is queued on the compute stream and the host goes on issuing the ops that use it (the
// caller keeps src unchanged until its next download/synchronize). Anything else takes upload()'s path.
Status CudaBackend::upload_staged(void* dst, const void* src, size_t bytes) {
  // upload() also answers bytes == 0 and null pointers.
  if (bytes == 0 || dst == nullptr || src == nullptr || !is_pinned_host(src)) return upload(dst, src, bytes);
  MSA_CUDA_LOCK();
  MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  return Status::Ok();
}

Status CudaBackend::download(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  if (dst == nullptr || src == nullptr) return Error(StatusCode::kInvalidArgument, "cuda download: null pointer");
  MSA_CUDA_LOCK();
  Status st = cuda::cuda_status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream()), "cudaMemcpyAsync");
  if (st.ok()) st = res_->synchronize();
  return take_deferred(std::move(st));
}

Status CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  if (dst == nullptr || src == nullptr) return Error(StatusCode::kInvalidArgument, "cuda copy: null pointer");
  MSA_CUDA_LOCK();
  MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream()));
  return Status::Ok();
}

Status CudaBackend::synchronize() {
  MSA_CUDA_LOCK();
  return take_deferred(res_->synchronize());
}

// ------------------------------------------------------------------------------------------------ weights

Status CudaBackend::prepare_weight(const TensorView& host, TensorView* out, DeviceBuffer* storage) {
  if (out == nullptr || storage == nullptr) {
    return Error(StatusCode::kInvalidArgument, "cuda prepare_weight: out or storage is null");
  }
  *out = host;
  storage->reset();
  if (host.data == nullptr) return Status::Ok();
  if (!is_float_dtype(host.dtype)) {
    return Error(StatusCode::kDtype, name(), ": cannot compute with ", dtype_name(host.dtype), " weights");
  }
  const int64_t n = host.numel();
  if (n <= 0) return Status::Ok();
  if (host.dtype != DType::kF16) {
    MSA_RETURN_IF_ERROR(alloc(host.nbytes(), storage));
    MSA_RETURN_IF_ERROR(upload(storage->data(), host.data, host.nbytes()));
    out->data = storage->data();
    return Status::Ok();
  }
  // F16: raw upload into a temporary block, widened to F32 into the storage (exact), then the block is freed
  // once the conversion has run.
  MSA_RETURN_IF_ERROR(alloc(static_cast<size_t>(n) * sizeof(float), storage));
  {
    cuda::DeviceBuffer raw;
    MSA_CUDA_LOCK();
    MSA_RETURN_IF_ERROR(raw.reserve(host.nbytes()));
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(raw.data(), host.data, host.nbytes(), cudaMemcpyDefault, stream()));
    MSA_RETURN_IF_ERROR(cuda::convert_to_f32(*res_, raw.data(), DType::kF16, n, storage->as<float>()));
    MSA_RETURN_IF_ERROR(res_->synchronize());
  }
  out->data = storage->data();
  out->dtype = DType::kF32;
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------------ forward ops

Status CudaBackend::matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) {
  MSA_RETURN_IF_ERROR(check_weight(w, 2, "cuda matmul"));
  if (n_rows <= 0) return Error(StatusCode::kShape, "cuda matmul: n_rows must be > 0, got ", n_rows);
  const int64_t n_out = w.dim(0);
  const int64_t k = w.dim(1);
  if (n_out <= 0 || k <= 0) {
    return Error(StatusCode::kShape, "cuda matmul: empty weight ", shape_to_string(w.shape));
  }
  MSA_CUDA_LOCK();
  switch (w.dtype) {
    case DType::kBF16:
      MSA_RETURN_IF_ERROR(x_bf16_.reserve_after(static_cast<size_t>(n_rows * k) * sizeof(uint16_t), stream()));
      return cuda::matmul_bf16(*res_, x, n_rows, w.as<uint16_t>(), n_out, k, y, x_bf16_.as<uint16_t>());
    case DType::kF32:
      return cuda::matmul_f32(*res_, x, n_rows, w.as<float>(), n_out, k, y);
    default:  // kF16 (prepare_weight widens F16 to F32; this is a weight that came from elsewhere)
      MSA_RETURN_IF_ERROR(w_f32_.reserve_after(static_cast<size_t>(n_out * k) * sizeof(float), stream()));
      MSA_RETURN_IF_ERROR(cuda::convert_to_f32(*res_, w.data, DType::kF16, n_out * k, w_f32_.as<float>()));
      return cuda::matmul_f32(*res_, x, n_rows, w_f32_.as<float>(), n_out, k, y);
  }
}

Status CudaBackend::rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                            float* y) {
  MSA_RETURN_IF_ERROR(check_weight(weight, 1, "cuda rmsnorm"));
  if (weight.dim(0) != dim || dim <= 0) {
    return Error(StatusCode::kShape, "cuda rmsnorm: weight ", shape_to_string(weight.shape), " for rows of ", dim);
  }
  if (n_rows <= 0) return Status::Ok();
  MSA_CUDA_LOCK();
  return cuda::rmsnorm(*res_, x, n_rows, dim, weight.data, weight.dtype, eps, y);
}

Status CudaBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                         double theta) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return Error(StatusCode::kInvalidArgument, "cuda rope: head_dim ", head_dim, " must be even and > 0");
  }
  if (n_tokens <= 0 || n_heads <= 0) return Status::Ok();
  if (x == nullptr || positions == nullptr) return Error(StatusCode::kInvalidArgument, "cuda rope: null pointer");
  MSA_CUDA_LOCK();
  // The table of this call's positions (compute_rope_table's numerics), then the rotation.
  const int64_t half = head_dim / 2;
  const size_t table = static_cast<size_t>(n_tokens * half);
  MSA_RETURN_IF_ERROR(rope_cs_.reserve_after(2 * table * sizeof(float), stream()));
  float* cos_t = rope_cs_.as<float>();
  float* sin_t = cos_t + table;
  MSA_RETURN_IF_ERROR(cuda::rope_table(*res_, positions, n_tokens, head_dim, theta, cos_t, sin_t));
  return cuda::rope(*res_, x, n_tokens, n_heads, head_dim, cos_t, sin_t);
}

void CudaBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  if (n <= 0) return;
  enqueue([&] { return cuda::swiglu(*res_, gate, up, out, n); });
}

void CudaBackend::add(const float* a, const float* b, float* out, int64_t n) {
  if (n <= 0) return;
  enqueue([&] { return cuda::add(*res_, a, b, out, n); });
}

void CudaBackend::scale(float* x, float s, int64_t n) {
  if (n <= 0) return;
  enqueue([&] { return cuda::scale(*res_, x, s, n); });
}

Status CudaBackend::embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) {
  MSA_RETURN_IF_ERROR(check_weight(table, 2, "cuda embedding"));
  if (n <= 0) return Status::Ok();
  MSA_CUDA_LOCK();
  return cuda::embedding(*res_, table.data, table.dtype, table.dim(0), table.dim(1), ids, n, out);
}

Status CudaBackend::gather_rows(const float* src, int64_t n_src, int64_t width, const int32_t* rows, int64_t n,
                                float* dst) {
  if (n <= 0) return Status::Ok();
  MSA_CUDA_LOCK();
  return cuda::gather_rows(*res_, src, n_src, width, rows, n, dst, flag_.as<unsigned long long>());
}

Status CudaBackend::attention(const AttentionArgs& args) {
  if (args.n_q <= 0) return Status::Ok();
  MSA_CUDA_LOCK();
  return cuda::attention(*res_, args);
}

void CudaBackend::mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) {
  if (n_rows <= 0 || chunk <= 0 || dim <= 0) return;
  enqueue([&] { return cuda::mean_pool(*res_, x, n_rows, dim, chunk, out); });
}

void CudaBackend::l2_normalize(float* x, int64_t n_vectors, int64_t dim) {
  if (n_vectors <= 0 || dim <= 0) return;
  enqueue([&] { return cuda::l2_normalize(*res_, x, n_vectors, dim); });
}

Status CudaBackend::decode_pages(PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows,
                                 int64_t n_heads, int64_t head_dim, float* out) {
  if (!page_dtype_valid(static_cast<uint32_t>(dtype)) || n_rows < 0 || n_heads <= 0 || head_dim <= 0) {
    return Error(StatusCode::kInvalidArgument, "cuda decode_pages: bad arguments (dtype ",
                 static_cast<uint32_t>(dtype), ", rows ", n_rows, ", heads ", n_heads, ", head_dim ", head_dim, ")");
  }
  if (n_rows == 0) return Status::Ok();
  MSA_CUDA_LOCK();
  return cuda::decode_rows(*res_, dtype, rows, scales, n_rows, n_heads, head_dim, out);
}

// ------------------------------------------------------------------------------------------------ routing

Status CudaBackend::upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) {
  const char* fn = "cuda upload_routing_index";
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, fn, ": out is null");
  out->reset();
  MSA_RETURN_IF_ERROR(check_routing_view(host, fn));
  const bool f32 = host.dtype == PageDType::kF32;
  const void* rows = f32 ? static_cast<const void*>(host.keys) : static_cast<const void*>(host.packed);
  MSA_CUDA_LOCK();
  auto r = std::make_unique<CudaRoutingIndex>(this, res_->device());
  MSA_RETURN_IF_ERROR(cuda::DeviceRoutingIndex::create(res_.get(), host.dtype, host.n_kv_heads, host.head_dim,
                                                       host.n_chunks, &r->index));
  // append() checks every chunk_doc entry against n_documents and synchronises (the view may go away after).
  MSA_RETURN_IF_ERROR(r->index->append(rows, host.scales, host.chunk_doc, host.n_chunks, host.n_documents));
  MSA_RETURN_IF_ERROR(cuda::DeviceDocSet::create(res_.get(), &r->docs));
  MSA_RETURN_IF_ERROR(r->docs->set(host.doc_ids, host.removed, host.n_documents));
  *out = std::move(r);
  return Status::Ok();
}

// Appends the new chunks to the device index (it grows geometrically, keeping its rows on the device) and
// replaces the document set (ids + tombstones: n_documents x 9 bytes, tiny next to the keys).
Status CudaBackend::update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) {
  const char* fn = "cuda update_routing_index";
  auto* ci = dynamic_cast<CudaRoutingIndex*>(index);
  if (ci == nullptr || ci->owner() != this) {
    return Error(StatusCode::kInvalidArgument, fn, ": the index is not resident on this ", name(), " backend");
  }
  const cuda::DeviceRoutingIndex& di = *ci->index;
  MSA_RETURN_IF_ERROR(check_routing_update(host, di.dtype(), di.n_kv_heads(), di.head_dim(), di.n_chunks(),
                                           ci->docs->n_documents(), fn));
  const int64_t from = di.n_chunks();
  const int64_t n_new = host.n_chunks - from;
  const bool f32 = host.dtype == PageDType::kF32;
  const uint8_t* rows = f32 ? reinterpret_cast<const uint8_t*>(host.keys) : host.packed;
  const int64_t n_scales = page_row_scales(host.dtype, host.n_kv_heads);
  MSA_CUDA_LOCK();
  if (n_new > 0 || host.n_documents > di.n_documents()) {
    // append() checks the new chunk_doc entries against n_documents and synchronises (the view may go away after).
    MSA_RETURN_IF_ERROR(ci->index->append(rows + static_cast<size_t>(from) * di.row_bytes(),
                                          host.scales != nullptr ? host.scales + from * n_scales : nullptr,
                                          host.chunk_doc + from, n_new, host.n_documents));
  }
  return ci->docs->set(host.doc_ids, host.removed, host.n_documents);
}

Status CudaBackend::route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "cuda route: out is null");
  const auto* ci = dynamic_cast<const CudaRoutingIndex*>(&index);
  if (ci == nullptr || ci->owner() != this) {
    return Error(StatusCode::kInvalidArgument, "cuda route: the index is not resident on this ", name(), " backend");
  }
  if (req.k <= 0) return Error(StatusCode::kInvalidArgument, "cuda route: k = ", req.k, ", must be >= 1");
  MSA_CUDA_LOCK();
  cuda::DeviceRouterQuery q;
  q.q = req.query.q;
  q.on_device = true;
  q.n_tokens = req.query.n_tokens;
  q.n_heads = req.query.n_heads;
  q.n_kv_heads = req.query.n_kv_heads;
  q.head_dim = req.query.head_dim;
  MSA_RETURN_IF_ERROR(scorer_->score(q, *ci->index, req.reductions));
  // select() downloads the top k only (and synchronises); the scores stay on the device until the next score().
  MSA_RETURN_IF_ERROR(topk_->select(scorer_->doc_scores(), scorer_->n_documents(), *ci->docs, req.k, &out->top));
  if (req.want_scores) return scorer_->download(&out->scores);
  out->scores.clear();
  return Status::Ok();
}

#undef MSA_CUDA_LOCK

}  // namespace

Status create_cuda_backend(int device, void* cuda_stream, std::unique_ptr<Backend>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "create_cuda_backend: out is null");
  out->reset();
  return CudaBackend::create(device, static_cast<cudaStream_t>(cuda_stream), out);
}

}  // namespace msa
