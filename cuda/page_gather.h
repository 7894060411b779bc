// Content-page transfer for the top-k documents (the host tier -> the GPU): the selected documents' raw pages
// (K̄ and V̄ rows in the page dtype, int8 with its per-(chunk, kv head) f32 scales) are packed on the host into
// one pinned staging buffer, sent with ONE cudaMemcpyAsync per call (one router layer) on the copy stream, and
// decoded on the GPU (int8 -> q * scale, bf16 -> exact widening; output f32 or bf16 round-to-nearest-even) on
// the compute stream, ordered by an event. The device results match memory/page_codec.h's decode_rows bit
// for bit (f32 output; bf16 output = f32_to_bf16 of it).
//
// Ordering: the copy stream waits for the previous call's decode before it overwrites the device staging
// buffer; the compute stream waits for the copy; the host waits for the previous copy before it repacks the
// pinned staging buffer. The outputs stay valid (on the compute stream) until the next gather().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "memory/memory_bank.h"
#include "resources.h"

namespace msa::cuda {

// One router layer's content pages in host memory (pageable or pinned), ContentPages layout.
struct HostPages {
  PageDType dtype = PageDType::kInt8;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t n_chunks = 0;
  const void* k = nullptr;            // [n_chunks, width] in dtype (floats for kF32)
  const void* v = nullptr;
  const float* k_scales = nullptr;    // kInt8: [n_chunks, n_kv_heads]
  const float* v_scales = nullptr;
};

// A view of a bank's RAM content pages of one router slot (ContentPages; width = n_kv_heads * head_dim).
HostPages host_pages_of(const ContentPages& pages, int64_t n_kv_heads, int64_t head_dim);

// A page-locked (cudaHostAlloc) copy of host pages: the host tier kept pinned.
class PinnedPages {
 public:
  static Status create(const HostPages& src, std::unique_ptr<PinnedPages>* out);
  const HostPages& view() const { return view_; }
  size_t bytes() const { return buf_.capacity(); }

 private:
  PinnedPages() = default;
  PinnedBuffer buf_;
  HostPages view_;
};

struct PageSpan {
  int64_t chunk_begin = 0;  // first chunk (row) of the document in the pages
  int64_t n_chunks = 0;
};

class PageGatherer {
 public:
  static Status create(CudaResources* res, std::unique_ptr<PageGatherer>* out);
  ~PageGatherer();
  PageGatherer(const PageGatherer&) = delete;
  PageGatherer& operator=(const PageGatherer&) = delete;

  // Gathers the rows of `spans` (in order) of `src` and decodes them to out_dtype (kF32 or kBF16) into k()
  // and v() ([n_rows(), width] each; span i starts at row row_begin()[i]). Returns after the copy and the
  // decode are queued. Errors: kInvalidArgument (bad dtype, null page pointers, a span outside [0, n_chunks)),
  // kOutOfMemory, kInternal (CUDA).
  Status gather(const HostPages& src, const std::vector<PageSpan>& spans, PageDType out_dtype);

  const void* k() const { return k_out_.data(); }
  const void* v() const { return v_out_.data(); }
  int64_t n_rows() const { return n_rows_; }
  const std::vector<int64_t>& row_begin() const { return row_begin_; }
  size_t staged_bytes() const { return staged_bytes_; }
  // Downloads k() and v() as raw bytes (synchronises the compute stream).
  Status download(std::vector<uint8_t>* k, std::vector<uint8_t>* v) const;
  // Timings of the last gather (waits for it): host pack into pinned staging, and the H2D copy (events).
  Status last_timing(double* pack_ms, double* h2d_ms) const;

 private:
  PageGatherer() = default;
  CudaResources* res_ = nullptr;
  PinnedBuffer staging_;
  DeviceBuffer raw_, k_out_, v_out_;
  cudaEvent_t copy_start_ = nullptr, copy_done_ = nullptr, decode_done_ = nullptr;
  bool pending_ = false;
  int64_t n_rows_ = 0;
  size_t out_bytes_ = 0;
  size_t staged_bytes_ = 0;
  double pack_ms_ = 0;
  std::vector<int64_t> row_begin_;
};

}  // namespace msa::cuda
