// Backend: a compute device (docs/ARCHITECTURE.md, "The Backend interface"). It owns memory (device buffers,
// host staging buffers), moves bytes between host and device, turns checkpoint tensors into backend weights
// once, and runs every op of the data path: the Qwen3 forward, MSA's chunk pooling, router queries, routing
// scores + top-k over a resident routing index, and the decoding of content pages. The engine never reads or
// writes backend memory itself: it allocates buffers, uploads inputs, calls ops and downloads results (the
// selected documents, pooled pages, logits). The CPU backend (backend/cpu/cpu_backend.h) is the reference
// twin; the guarded test backend (backend/guarded/) checks the "never touch" rule; CUDA implements the same
// interface (cuda/).
//
// Conventions for every op:
// * Pointers named in an op are backend ("device") pointers into buffers of this backend, except where a
//   parameter says "host". Activations are dense row-major f32 arrays `rows x cols`, row stride = cols unless
//   stated. Outputs may alias inputs only where stated.
// * Weights are TensorViews returned by prepare_weight (their `data` is backend memory): 2-D [out, in]
//   row-major matrices or 1-D vectors, dtype BF16, F16 or F32.
// * Ops return a Status (kDtype, kShape, kInvalidArgument, kOutOfMemory, a device error) except a few pure
//   elementwise f32 ops that cannot fail on valid pointers.
// * Ordering: ops and transfers issued by one thread run in issue order (a single queue). The CPU backend runs
//   them synchronously; a device backend may queue them: download() and synchronize() wait for what came
//   before. A Backend object may be used by several threads at once (each with its own buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/routing_types.h"
#include "core/status.h"
#include "core/tensor.h"
#include "memory/page_codec.h"

namespace msa {

class Backend;
class ThreadPool;

// Owner of one allocation of backend memory (device memory, or host staging memory: see Backend::alloc and
// Backend::alloc_staging). Move-only RAII; freeing goes back to the backend that allocated it, which must
// outlive the buffer.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }
  bool empty() const { return p_ == nullptr; }
  Backend* backend() const { return be_; }
  bool staging() const { return staging_; }
  void reset() noexcept;

 private:
  friend class Backend;
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
  bool staging_ = false;
};

// Arguments of Backend::attention (all arrays are backend memory). Key rows are split in two parts:
//   keys [0, n_prefix)            the prefix (template prefix, injected memory chunks): visible to every query;
//   keys [n_prefix, n_kv)         own-token rows ("cached" rows, including the new tokens themselves).
// Query i sees the prefix plus the own rows r (0-based among own rows) with
//   own_begin[i] <= r < own_end[i]   and, when both segment arrays are given, kv_seg[r] == q_seg[i].
// A query that sees no key at all gets a zero output row.
struct AttentionArgs {
  const float* q = nullptr;  // [n_q, n_heads * head_dim]
  const float* k = nullptr;  // [n_kv, n_kv_heads * head_dim]
  const float* v = nullptr;  // [n_kv, n_kv_heads * head_dim]
  float* out = nullptr;      // [n_q, n_heads * head_dim]; must not alias q, k or v
  int64_t n_q = 0;
  int64_t n_kv = 0;
  int64_t n_prefix = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;     // n_heads % n_kv_heads == 0; q head h uses kv head h / (n_heads / n_kv_heads)
  int64_t head_dim = 0;
  float scale = 1.0f;         // softmax scale (Qwen3: 1/sqrt(head_dim))
  const int64_t* own_begin = nullptr;  // [n_q]; null: 0 for every query
  const int64_t* own_end = nullptr;    // [n_q]; null: n_kv - n_prefix for every query
  const int32_t* q_seg = nullptr;      // [n_q]; segment filtering only when q_seg and kv_seg are both set
  const int32_t* kv_seg = nullptr;     // [n_kv - n_prefix]
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Short name for logs and benchmarks ("cpu-avx2", "cpu-scalar", "cpu-guarded", "cuda").
  virtual const char* name() const = 0;
  // A human-readable description of the device ("CPU, 2 threads, AVX2", "NVIDIA H100, 79.1 GiB").
  virtual std::string device_description() const;

  // The CPU threads this backend computes on (CPU backends), or null.
  virtual ThreadPool* thread_pool() const { return nullptr; }

  // ------------------------------------------------------------------------------------------- memory

  // Device memory of `bytes` bytes (64-byte aligned, contents unspecified). bytes == 0 gives an empty buffer.
  // Errors: kOutOfMemory (message names the size and the device), device errors.
  Status alloc(size_t bytes, DeviceBuffer* out);
  // Host memory the engine may read and write directly and that transfers fast to and from the device (pinned
  // on CUDA; plain aligned memory on the CPU). Errors: kOutOfMemory.
  Status alloc_staging(size_t bytes, DeviceBuffer* out);
  // Host -> device (src: host memory), device -> host (dst: host memory; waits for earlier work), device ->
  // device (ranges must not overlap). bytes == 0 is a no-op.
  virtual Status upload(void* dst, const void* src, size_t bytes) = 0;
  // Host -> device from staging memory (alloc_staging) without waiting for the transfer: ops issued after it see
  // the data, but src must not be written or freed until the next download() or synchronize() (upload() returns
  // only once src may be reused, which costs a device-host round trip on a GPU). The CPU backends copy at once.
  virtual Status upload_staged(void* dst, const void* src, size_t bytes) { return upload(dst, src, bytes); }
  virtual Status download(void* dst, const void* src, size_t bytes) = 0;
  virtual Status copy(void* dst, const void* src, size_t bytes) = 0;
  // Waits until every op and transfer issued so far has finished; reports a deferred device error.
  virtual Status synchronize() = 0;

  // Grows `buf` to at least `bytes` (device memory; contents not kept). Never shrinks.
  Status ensure(DeviceBuffer* buf, size_t bytes);

  // ------------------------------------------------------------------------------------------- weights

  // One checkpoint tensor (host TensorView over the mapped file) as a backend weight: `out` views backend
  // memory; `storage` receives what backs it (empty when the backend reads the host tensor in place, as the
  // CPU backend does). The caller validated the shape (model/device_model.h does, once, at load).
  // Errors: kDtype (a dtype the backend cannot compute with), kOutOfMemory.
  virtual Status prepare_weight(const TensorView& host, TensorView* out, DeviceBuffer* storage);

  // ------------------------------------------------------------------------------------------- forward ops

  // y[t, o] = sum_i x[t, i] * w[o, i] for t < n_rows: Y[T, out] = X[T, in] · Wᵀ with W = `w` [out, in]
  // (BF16, F16 or F32), f32 accumulation. x: [n_rows, in], y: [n_rows, out]; y must not alias x.
  // Errors: kShape (w not 2-D or n_rows <= 0), kDtype.
  virtual Status matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) = 0;

  // y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight for r < n_rows (f32, per row). weight: 1-D
  // [dim]. y may alias x. Per-head norms (q_norm/k_norm) are this op on [n_tokens * n_heads, head_dim].
  // Errors: kShape (weight size != dim), kDtype.
  virtual Status rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                         float* y) = 0;

  // Rotary embedding in place from positions (Qwen3 default rope, rope_scaling null), rotate-half convention,
  // on x: [n_tokens, n_heads * head_dim]: for every head and i < head_dim/2, with the angle
  // a = f32(inv_freq[i] * f32(positions[t])), inv_freq[i] = 1 / f32(theta)^(f32(2i) / f32(head_dim)),
  // c = f32(cos(a)), s = f32(sin(a)) (transformers' f32 table):
  //   x'[i] = x[i] * c - x[i + half] * s,   x'[i + half] = x[i + half] * c + x[i] * s.
  // positions: [n_tokens] int32 (backend memory). Errors: kInvalidArgument (odd head_dim).
  virtual Status rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                      double theta) = 0;

  // out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i], i < n. out may alias either input.
  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;
  // out[i] = a[i] + b[i], i < n. out may alias a or b.
  virtual void add(const float* a, const float* b, float* out, int64_t n) = 0;
  // x[i] *= s, i < n.
  virtual void scale(float* x, float s, int64_t n) = 0;

  // out[t, :] = f32(table[ids[t], :]) for t < n. table: 2-D [vocab, dim]; ids: backend memory.
  // Errors: kInvalidArgument (an id outside [0, vocab)), kShape, kDtype.
  virtual Status embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) = 0;

  // dst[i, :] = src[rows[i], :] for i < n (rows: backend memory, each in [0, n_src)), width floats per row.
  // Errors: kInvalidArgument (a row outside [0, n_src)).
  virtual Status gather_rows(const float* src, int64_t n_src, int64_t width, const int32_t* rows, int64_t n,
                             float* dst) = 0;

  // Scaled-dot-product attention with softmax in f32 over the visible keys (see AttentionArgs), GQA.
  // Errors: kShape (inconsistent head counts or key counts), kOutOfMemory (scratch).
  virtual Status attention(const AttentionArgs& args) = 0;

  // Mean pooling of consecutive rows into chunks: x [n_rows, dim] -> out [ceil(n_rows / chunk), dim], chunk c
  // = mean of rows [c*chunk, min(n_rows, (c+1)*chunk)). Each chunk is summed on its own, sequentially in
  // f32 (so a chunk's value does not depend on what else is pooled), then divided by its row count in f32.
  virtual void mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) = 0;

  // Routing-vector normalisation (spec §4.4) in place on x: [n_vectors, dim]: v / max(||v||_2, 1e-12) with the
  // squared norm accumulated in double in element order, its square root taken in double and rounded to f32,
  // the division in f32 (F.normalize semantics; the result depends only on the vector itself).
  virtual void l2_normalize(float* x, int64_t n_vectors, int64_t dim) = 0;

  // ------------------------------------------------------------------------------------------- memory tiers

  // Decodes n_rows content-page rows of page dtype `dtype` (rows: n_rows * page_row_bytes bytes; scales:
  // [n_rows, n_heads] f32 for kInt8, else unused) into f32 out [n_rows, n_heads * head_dim], exactly as
  // page_codec's decode_rows. rows/scales/out: backend memory.
  virtual Status decode_pages(PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows,
                              int64_t n_heads, int64_t head_dim, float* out) = 0;

  // Makes a routing index resident on this backend from its host form (the view must stay valid only for
  // the duration of the call, except on backends that document zero-copy: the CPU backend keeps the view,
  // which then must outlive the index and stay unchanged). Errors: kInvalidArgument (inconsistent view),
  // kOutOfMemory.
  virtual Status upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) = 0;

  // Brings a resident index of this backend up to date with its grown host form, without copying it again:
  // `host` is the same router layer after documents were appended and/or tombstoned, so its first
  // index->n_chunks() chunks (keys, scales, chunk_doc) and the ids of its first index->n_documents() documents
  // are those the index holds (the caller guarantees it: ResidentBank checks MemoryBank::layout_version()).
  // The backend copies the new chunks, the new documents' ids and every tombstone flag (zero-copy backends take
  // the new view). Errors: kInvalidArgument (a view that does not extend the index: another shape or dtype,
  // fewer chunks or documents, an index of another backend), kOutOfMemory. After an error the index must not
  // be routed against again (upload it anew).
  virtual Status update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) = 0;

  // Router scores of every document for one query (spec §5.2; reductions and numerics: backend/routing_types.h)
  // and the top k = min(req.k, live documents) by (score desc, caller id asc), tombstoned documents skipped,
  // NaN below every number. The query (req.query.q) is backend memory; `out` is host memory (the one small
  // download of a router layer). Errors: kInvalidArgument (shapes, reductions, k <= 0), kOutOfMemory.
  virtual Status route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) = 0;

 protected:
  // Raw allocation hooks behind alloc/alloc_staging and DeviceBuffer::reset. alloc_*_raw returns null on
  // failure (with *error set) and never throws.
  virtual void* alloc_device_raw(size_t bytes, Status* error) = 0;
  virtual void free_device_raw(void* p, size_t bytes) noexcept = 0;
  virtual void* alloc_staging_raw(size_t bytes, Status* error);
  virtual void free_staging_raw(void* p, size_t bytes) noexcept;

 private:
  friend class DeviceBuffer;
  Status alloc_kind(size_t bytes, bool staging, DeviceBuffer* out);
};

// True for the weight dtypes every backend computes with (F32, BF16, F16).
bool is_float_dtype(DType t);
// The argument check every backend's weight-reading op makes: a float weight of `ndim` dimensions with data.
// Errors: kShape (`what` names the op), kDtype.
Status check_weight(const TensorView& w, int ndim, const char* what);

// Uploads `n` host values into `dst`, grown (never shrunk) to hold them; downloads `n` values into a resized
// host vector.
template <typename T>
Status upload_vector(Backend* be, const T* src, size_t n, DeviceBuffer* dst) {
  MSA_RETURN_IF_ERROR(be->ensure(dst, n * sizeof(T)));
  return be->upload(dst->data(), src, n * sizeof(T));
}
template <typename T>
Status download_vector(Backend* be, const void* src, size_t n, std::vector<T>* dst) {
  dst->resize(n);
  return be->download(dst->data(), src, n * sizeof(T));
}

// RoPE tables (Qwen3 default type, rope_scaling null), computed the way transformers does in f32 (see
// Backend::rope). cos, sin: host [n_tokens, head_dim / 2]. head_dim must be even. The reference for every
// backend's rope.
void compute_rope_table(const int32_t* positions, int64_t n_tokens, int64_t head_dim, double theta, float* cos,
                        float* sin);

}  // namespace msa
