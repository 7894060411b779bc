#include "backend/guarded/guarded_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iterator>

namespace msa {

namespace {

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

size_t round_up(size_t n) { return (n + page_size() - 1) / page_size() * page_size(); }

// A resident routing index in guarded memory: copies of the host arrays, and the CPU backend's zero-copy index
// over those copies (its scan runs inside an open region).
class GuardedRoutingIndex final : public ResidentRoutingIndex {
 public:
  int64_t n_chunks() const override { return view.n_chunks; }
  int64_t n_documents() const override { return view.n_documents; }
  int64_t device_bytes() const override { return bytes; }
  RoutingIndexView view;
  std::unique_ptr<ResidentRoutingIndex> inner;
  DeviceBuffer keys, packed, scales, chunk_doc, doc_ids, removed;
  int64_t bytes = 0;
};

// Copies the host arrays of `host` from element offsets (chunk `from_chunk`, document `from_doc`) into the
// index's guarded buffers, growing each one (new allocation, earlier contents copied on the backend) as needed;
// the tombstone flags are copied whole. Then the CPU backend's index over those buffers is rebuilt.
// be: the guarded backend (its transfers open the arena); cpu: the CPU backend inside it.
Status store_routing_rows(Backend* be, CpuBackend* cpu, const RoutingIndexView& host, int64_t from_chunk,
                          int64_t from_doc, GuardedRoutingIndex* gi) {
  const int64_t width = host.n_kv_heads * host.head_dim;
  // Rows [from, n) of `src` (row_bytes each) into dst; dst keeps rows [0, from).
  auto put = [&](const void* src, size_t row_bytes, int64_t from, int64_t n, DeviceBuffer* dst) -> Status {
    if (src == nullptr || row_bytes == 0 || n == 0) return Status::Ok();
    const size_t keep = static_cast<size_t>(from) * row_bytes, need = static_cast<size_t>(n) * row_bytes;
    if (dst->bytes() < need) {
      DeviceBuffer grown;
      MSA_RETURN_IF_ERROR(be->alloc(need + need / 2, &grown));
      MSA_RETURN_IF_ERROR(be->copy(grown.data(), dst->data(), keep));
      gi->bytes += static_cast<int64_t>(grown.bytes()) - static_cast<int64_t>(dst->bytes());
      *dst = std::move(grown);
    }
    return be->upload(dst->as<uint8_t>() + keep, static_cast<const uint8_t*>(src) + keep, need - keep);
  };
  const int64_t n = host.n_chunks;
  if (host.dtype == PageDType::kF32) {
    MSA_RETURN_IF_ERROR(put(host.keys, static_cast<size_t>(width) * sizeof(float), from_chunk, n, &gi->keys));
  } else {
    MSA_RETURN_IF_ERROR(put(host.packed, page_row_bytes(host.dtype, width), from_chunk, n, &gi->packed));
    MSA_RETURN_IF_ERROR(put(host.scales,
                            static_cast<size_t>(page_row_scales(host.dtype, host.n_kv_heads)) * sizeof(float),
                            from_chunk, n, &gi->scales));
  }
  MSA_RETURN_IF_ERROR(put(host.chunk_doc, sizeof(int32_t), from_chunk, n, &gi->chunk_doc));
  MSA_RETURN_IF_ERROR(put(host.doc_ids, sizeof(uint64_t), from_doc, host.n_documents, &gi->doc_ids));
  MSA_RETURN_IF_ERROR(put(host.removed, 1, 0, host.n_documents, &gi->removed));
  gi->view = host;
  RoutingIndexView& v = gi->view;
  v.keys = gi->keys.as<float>();
  v.packed = gi->packed.as<uint8_t>();
  v.scales = gi->scales.as<float>();
  v.chunk_doc = gi->chunk_doc.as<int32_t>();
  v.doc_ids = gi->doc_ids.as<uint64_t>();
  v.removed = gi->removed.as<uint8_t>();
  return cpu->upload_routing_index(v, &gi->inner);
}

}  // namespace

class GuardedBackend::Open {
 public:
  explicit Open(GuardedBackend* be) : be_(be), lock_(be->mu_) { be_->protect(PROT_READ | PROT_WRITE); }
  ~Open() { be_->protect(PROT_NONE); }
  Open(const Open&) = delete;
  Open& operator=(const Open&) = delete;

 private:
  GuardedBackend* be_;
  std::lock_guard<std::mutex> lock_;
};

namespace {
// Address space reserved for the arena (nothing is committed until a block is used).
constexpr size_t kArenaBytes = size_t{64} << 30;
}  // namespace

GuardedBackend::GuardedBackend(const CpuBackendOptions& options) : cpu_(options) {
  void* p = mmap(nullptr, kArenaBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p != MAP_FAILED) {
    arena_ = static_cast<uint8_t*>(p);
    arena_bytes_ = kArenaBytes;
    free_.emplace(0, kArenaBytes);
  }
}

GuardedBackend::~GuardedBackend() {
  if (arena_ != nullptr) munmap(arena_, arena_bytes_);
}

std::string GuardedBackend::device_description() const {
  return "CPU with guarded device memory (test backend; " + cpu_.device_description() + ")";
}

void GuardedBackend::protect(int prot) {
  if (high_ > 0) mprotect(arena_, high_, prot);
}

void* GuardedBackend::alloc_device_raw(size_t bytes, Status* error) {
  const size_t len = round_up(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < len) continue;
    const size_t off = it->first, rest = it->second - len;
    free_.erase(it);
    if (rest > 0) free_.emplace(off + len, rest);
    used_.emplace(off, len);
    high_ = std::max(high_, off + len);
    return arena_ + off;
  }
  *error = Error(StatusCode::kOutOfMemory, "cpu-guarded: no room for ", bytes, " bytes in its ",
                 arena_bytes_ >> 30, " GiB arena");
  return nullptr;
}

void GuardedBackend::free_device_raw(void* p, size_t) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t off = static_cast<size_t>(static_cast<uint8_t*>(p) - arena_);
  auto it = used_.find(off);
  if (it == used_.end()) return;
  size_t start = off, len = it->second;
  used_.erase(it);
  // Give the pages back (they read as zero when reused) and keep them inaccessible.
  madvise(arena_ + start, len, MADV_DONTNEED);
  mprotect(arena_ + start, len, PROT_NONE);
  // Coalesce with the free neighbours.
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      len += prev->second;
      free_.erase(prev);
    }
  }
  free_.emplace(start, len);
  high_ = used_.empty() ? 0 : used_.rbegin()->first + used_.rbegin()->second;
}

Status GuardedBackend::upload(void* dst, const void* src, size_t bytes) {
  Open open(this);
  return cpu_.upload(dst, src, bytes);
}

Status GuardedBackend::download(void* dst, const void* src, size_t bytes) {
  Open open(this);
  return cpu_.download(dst, src, bytes);
}

Status GuardedBackend::copy(void* dst, const void* src, size_t bytes) {
  Open open(this);
  return cpu_.copy(dst, src, bytes);
}

Status GuardedBackend::prepare_weight(const TensorView& host, TensorView* out, DeviceBuffer* storage) {
  TensorView probe;
  DeviceBuffer none;
  MSA_RETURN_IF_ERROR(cpu_.prepare_weight(host, &probe, &none));  // the CPU's dtype check
  return Backend::prepare_weight(host, out, storage);              // alloc + upload: a guarded copy
}

Status GuardedBackend::matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) {
  Open open(this);
  return cpu_.matmul(x, n_rows, w, y);
}

Status GuardedBackend::rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                               float* y) {
  Open open(this);
  return cpu_.rmsnorm(x, n_rows, dim, weight, eps, y);
}

Status GuardedBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                            double theta) {
  Open open(this);
  return cpu_.rope(x, n_tokens, n_heads, head_dim, positions, theta);
}

void GuardedBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  Open open(this);
  cpu_.swiglu(gate, up, out, n);
}

void GuardedBackend::add(const float* a, const float* b, float* out, int64_t n) {
  Open open(this);
  cpu_.add(a, b, out, n);
}

void GuardedBackend::scale(float* x, float s, int64_t n) {
  Open open(this);
  cpu_.scale(x, s, n);
}

Status GuardedBackend::embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) {
  Open open(this);
  return cpu_.embedding(table, ids, n, out);
}

Status GuardedBackend::gather_rows(const float* src, int64_t n_src, int64_t width, const int32_t* rows, int64_t n,
                                   float* dst) {
  Open open(this);
  return cpu_.gather_rows(src, n_src, width, rows, n, dst);
}

Status GuardedBackend::attention(const AttentionArgs& args) {
  Open open(this);
  return cpu_.attention(args);
}

void GuardedBackend::mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) {
  Open open(this);
  cpu_.mean_pool(x, n_rows, dim, chunk, out);
}

void GuardedBackend::l2_normalize(float* x, int64_t n_vectors, int64_t dim) {
  Open open(this);
  cpu_.l2_normalize(x, n_vectors, dim);
}

Status GuardedBackend::decode_pages(PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows,
                                    int64_t n_heads, int64_t head_dim, float* out) {
  Open open(this);
  return cpu_.decode_pages(dtype, rows, scales, n_rows, n_heads, head_dim, out);
}

Status GuardedBackend::upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "upload_routing_index: out is null");
  MSA_RETURN_IF_ERROR(check_routing_view(host, "upload_routing_index"));
  auto gi = std::make_unique<GuardedRoutingIndex>();
  MSA_RETURN_IF_ERROR(store_routing_rows(this, &cpu_, host, 0, 0, gi.get()));
  *out = std::move(gi);
  return Status::Ok();
}

Status GuardedBackend::update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) {
  auto* gi = dynamic_cast<GuardedRoutingIndex*>(index);
  if (gi == nullptr) {
    return Error(StatusCode::kInvalidArgument, "update_routing_index: the index is not resident on cpu-guarded");
  }
  const RoutingIndexView& v = gi->view;
  MSA_RETURN_IF_ERROR(check_routing_update(host, v.dtype, v.n_kv_heads, v.head_dim, v.n_chunks, v.n_documents,
                                           "update_routing_index"));
  return store_routing_rows(this, &cpu_, host, v.n_chunks, v.n_documents, gi);
}

Status GuardedBackend::route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) {
  const auto* gi = dynamic_cast<const GuardedRoutingIndex*>(&index);
  if (gi == nullptr) return Error(StatusCode::kInvalidArgument, "route: the index is not resident on cpu-guarded");
  Open open(this);
  return cpu_.route(req, *gi->inner, out);
}

}  // namespace msa
