// DeviceRoutingIndex: one router layer's routing index (memory_bank.h RoutingIndex) resident on the GPU — the
// device tier that the router scans for every query (cuda/routing_score.h).
//
// Layout, as on the host: keys [n_chunks, n_kv_heads * head_dim] in the page dtype (f32 | bf16 | int8), int8
// with one f32 scale per (chunk, kv head) ([n_chunks, n_kv_heads]); plus the chunk -> document map, held as a
// CSR over documents (doc_offsets [n_documents + 1], doc_chunks [n_chunks]: the chunks of document d in
// ascending chunk order are doc_chunks[doc_offsets[d] .. doc_offsets[d + 1])), so the chunk -> document
// reduction is one deterministic pass per document in chunk order (the CPU router's summation order).
//
// Rows are appended from host arrays in the RoutingIndex layout or from device memory. Storage grows
// geometrically (create() with a capacity avoids regrowth). An append whose chunks all belong to new documents
// (what MemoryBank::add produces) extends the document map by its tail; otherwise the map is rebuilt. Not
// thread-safe; all copies go through the compute stream of the CudaResources it was created with, which must
// outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "memory/memory_bank.h"
#include "resources.h"

namespace msa::cuda {

class DeviceRoutingIndex {
 public:
  // An empty index. Errors: kInvalidArgument (null res/out, dtype unknown, n_kv_heads/head_dim < 1 or > 65536,
  // capacity_chunks < 0), kOutOfMemory.
  static Status create(CudaResources* res, PageDType dtype, int64_t n_kv_heads, int64_t head_dim,
                       int64_t capacity_chunks, std::unique_ptr<DeviceRoutingIndex>* out);
  // An index holding a copy of `index` (n_documents: the DocStore size of its bank; every chunk_doc entry
  // must lie in [0, n_documents)). Errors as create(), plus kInvalidArgument for sizes that do not match the
  // shape (the message names the array).
  static Status upload(CudaResources* res, const RoutingIndex& index, int64_t n_kv_heads, int64_t head_dim,
                       int64_t n_documents, std::unique_ptr<DeviceRoutingIndex>* out);

  // Appends n_chunks rows. rows: n_chunks * row_bytes() bytes (for kF32, floats); scales: n_chunks *
  // n_kv_heads floats for kInt8 (ignored otherwise); chunk_doc: n_chunks document indices (host memory);
  // n_documents: the new document count (>= the current one, > every chunk_doc entry). All or nothing.
  Status append(const void* rows, const float* scales, const int32_t* chunk_doc, int64_t n_chunks,
                int64_t n_documents);
  // As append(), rows and scales in device memory (chunk_doc still on the host).
  Status append_device(const void* d_rows, const float* d_scales, const int32_t* chunk_doc, int64_t n_chunks,
                       int64_t n_documents);

  PageDType dtype() const { return dtype_; }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t width() const { return n_kv_heads_ * head_dim_; }
  int64_t n_chunks() const { return n_chunks_; }
  int64_t n_documents() const { return n_documents_; }
  size_t row_bytes() const { return page_row_bytes(dtype_, width()); }
  // Device bytes of keys + scales (what a scan reads) for the current rows.
  int64_t key_bytes() const;
  // Device bytes allocated for keys + scales (capacity: appends grow it by half at a time).
  int64_t reserved_key_bytes() const;
  CudaResources* resources() const { return res_; }

  // Device pointers (valid until the next append).
  const void* keys() const { return keys_.data(); }
  const float* scales() const { return scales_.as<float>(); }       // kInt8 only
  const int32_t* doc_offsets() const { return offsets_.as<int32_t>(); }
  const int32_t* doc_chunks() const { return doc_chunks_.as<int32_t>(); }
  // Host copy of the chunk -> document map.
  const std::vector<int32_t>& chunk_doc() const { return chunk_doc_; }

 private:
  DeviceRoutingIndex() = default;
  Status check_append(const int32_t* chunk_doc, int64_t n_chunks, int64_t n_documents, const void* rows,
                      const float* scales, const char* fn) const;
  Status reserve_rows(int64_t n_total);
  Status rebuild_csr(int64_t n_documents);
  // After chunk_doc_ grew by n_new entries from first_chunk: appends to the device map when the new chunks all
  // belong to new documents (an add), else rebuild_csr().
  Status extend_csr(int64_t first_chunk, int64_t n_new, int64_t n_documents);
  Status commit_append(const int32_t* chunk_doc, int64_t n_chunks, int64_t n_documents);

  CudaResources* res_ = nullptr;
  PageDType dtype_ = PageDType::kInt8;
  int64_t n_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  int64_t n_chunks_ = 0;
  int64_t capacity_ = 0;
  int64_t n_documents_ = 0;
  DeviceBuffer keys_, scales_, offsets_, doc_chunks_;
  std::vector<int32_t> chunk_doc_;
};

}  // namespace msa::cuda
