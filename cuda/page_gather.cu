// Content-page transfer (page_gather.h).
#include "page_gather.h"

#include <chrono>
#include <cstring>

#include "cuda_status.h"
#include "page_gather.cuh"

namespace msa::cuda {

namespace {

constexpr size_t align16(size_t n) { return (n + 15) / 16 * 16; }

using namespace kern;  // NOLINT: the kernels of page_gather.cuh

Status check_pages(const HostPages& p, const char* fn) {
  if (!page_dtype_valid(static_cast<uint32_t>(p.dtype))) {
    return Error(StatusCode::kInvalidArgument, fn, ": page dtype ", static_cast<uint32_t>(p.dtype), " unknown");
  }
  if (p.n_kv_heads < 1 || p.head_dim < 1 || p.n_kv_heads > 65536 || p.head_dim > 65536 || p.n_chunks < 0) {
    return Error(StatusCode::kInvalidArgument, fn, ": bad page shape n_kv_heads ", p.n_kv_heads, ", head_dim ",
                 p.head_dim, ", n_chunks ", p.n_chunks);
  }
  if (p.n_chunks > 0 && (p.k == nullptr || p.v == nullptr)) {
    return Error(StatusCode::kInvalidArgument, fn, ": page rows k/v are null");
  }
  if (p.n_chunks > 0 && p.dtype == PageDType::kInt8 && (p.k_scales == nullptr || p.v_scales == nullptr)) {
    return Error(StatusCode::kInvalidArgument, fn, ": int8 page scales are null");
  }
  return Status::Ok();
}

}  // namespace

HostPages host_pages_of(const ContentPages& pages, int64_t n_kv_heads, int64_t head_dim) {
  HostPages h;
  h.dtype = pages.dtype;
  h.n_kv_heads = n_kv_heads;
  h.head_dim = head_dim;
  const int64_t width = n_kv_heads * head_dim;
  if (pages.dtype == PageDType::kF32) {
    h.k = pages.k.data();
    h.v = pages.v.data();
    h.n_chunks = width > 0 ? static_cast<int64_t>(pages.k.size()) / width : 0;
  } else {
    h.k = pages.qk.data();
    h.v = pages.qv.data();
    const int64_t rb = static_cast<int64_t>(page_row_bytes(pages.dtype, width));
    h.n_chunks = rb > 0 ? static_cast<int64_t>(pages.qk.size()) / rb : 0;
    if (pages.dtype == PageDType::kInt8) {
      h.k_scales = pages.k_scales.data();
      h.v_scales = pages.v_scales.data();
    }
  }
  return h;
}

Status PinnedPages::create(const HostPages& src, std::unique_ptr<PinnedPages>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "PinnedPages::create: out is null");
  out->reset();
  MSA_RETURN_IF_ERROR(check_pages(src, "PinnedPages::create"));
  std::unique_ptr<PinnedPages> r(new PinnedPages());
  const size_t rows = static_cast<size_t>(src.n_chunks) * page_row_bytes(src.dtype, src.n_kv_heads * src.head_dim);
  const size_t sc = src.dtype == PageDType::kInt8 ? static_cast<size_t>(src.n_chunks * src.n_kv_heads) * 4 : 0;
  const size_t total = 2 * align16(rows) + 2 * align16(sc);
  MSA_RETURN_IF_ERROR(r->buf_.reserve(total > 0 ? total : 16));
  unsigned char* b = r->buf_.as<unsigned char>();
  r->view_ = src;
  if (rows > 0) {
    std::memcpy(b, src.k, rows);
    std::memcpy(b + align16(rows), src.v, rows);
  }
  r->view_.k = b;
  r->view_.v = b + align16(rows);
  if (sc > 0) {
    std::memcpy(b + 2 * align16(rows), src.k_scales, sc);
    std::memcpy(b + 2 * align16(rows) + align16(sc), src.v_scales, sc);
    r->view_.k_scales = reinterpret_cast<const float*>(b + 2 * align16(rows));
    r->view_.v_scales = reinterpret_cast<const float*>(b + 2 * align16(rows) + align16(sc));
  }
  *out = std::move(r);
  return Status::Ok();
}

Status PageGatherer::create(CudaResources* res, std::unique_ptr<PageGatherer>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "PageGatherer::create: out is null");
  out->reset();
  if (res == nullptr) return Error(StatusCode::kInvalidArgument, "PageGatherer::create: res is null");
  MSA_RETURN_IF_ERROR(res->make_current());
  std::unique_ptr<PageGatherer> r(new PageGatherer());
  r->res_ = res;
  MSA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&r->copy_start_));
  MSA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&r->copy_done_));
  MSA_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&r->decode_done_, cudaEventDisableTiming));
  *out = std::move(r);
  return Status::Ok();
}

PageGatherer::~PageGatherer() {
  if (res_ != nullptr) {
    cudaSetDevice(res_->device());
    cudaStreamSynchronize(res_->copy_stream());
    cudaStreamSynchronize(res_->stream());
  }
  if (copy_start_) cudaEventDestroy(copy_start_);
  if (copy_done_) cudaEventDestroy(copy_done_);
  if (decode_done_) cudaEventDestroy(decode_done_);
  cudaGetLastError();
}

Status PageGatherer::gather(const HostPages& src, const std::vector<PageSpan>& spans, PageDType out_dtype) {
  const char* fn = "PageGatherer::gather";
  MSA_RETURN_IF_ERROR(check_pages(src, fn));
  if (out_dtype != PageDType::kF32 && out_dtype != PageDType::kBF16) {
    return Error(StatusCode::kInvalidArgument, fn, ": output dtype must be f32 or bf16, not ",
                 page_dtype_name(out_dtype));
  }
  int64_t total = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const PageSpan& s = spans[i];
    if (s.chunk_begin < 0 || s.n_chunks < 0 || s.chunk_begin > src.n_chunks || s.n_chunks > src.n_chunks - s.chunk_begin) {
      return Error(StatusCode::kInvalidArgument, fn, ": span ", i, " [", s.chunk_begin, ", +", s.n_chunks,
                   ") outside the ", src.n_chunks, " chunks of the pages");
    }
    total += s.n_chunks;
  }
  MSA_RETURN_IF_ERROR(res_->make_current());
  const int64_t width = src.n_kv_heads * src.head_dim;
  const size_t rb = page_row_bytes(src.dtype, width);
  const size_t sb = src.dtype == PageDType::kInt8 ? static_cast<size_t>(src.n_kv_heads) * 4 : 0;
  const size_t rows_bytes = align16(static_cast<size_t>(total) * rb);
  const size_t sc_bytes = align16(static_cast<size_t>(total) * sb);
  const size_t staged = 2 * rows_bytes + 2 * sc_bytes;
  const size_t out_bytes = static_cast<size_t>(total * width) * page_elem_bytes(out_dtype);

  // The previous copy must be done before the staging buffer is repacked.
  if (pending_) MSA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(copy_done_));
  if (staged > raw_.capacity() || out_bytes > k_out_.capacity()) {
    // Reallocation: nothing queued may still use the old buffers.
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(res_->stream()));
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(res_->copy_stream()));
  }
  MSA_RETURN_IF_ERROR(staging_.reserve(staged > 0 ? staged : 16));
  MSA_RETURN_IF_ERROR(raw_.reserve(staged > 0 ? staged : 16));
  MSA_RETURN_IF_ERROR(k_out_.reserve(out_bytes > 0 ? out_bytes : 16));
  MSA_RETURN_IF_ERROR(v_out_.reserve(out_bytes > 0 ? out_bytes : 16));

  const auto t0 = std::chrono::steady_clock::now();
  unsigned char* st = staging_.as<unsigned char>();
  row_begin_.assign(spans.size(), 0);
  int64_t row = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const PageSpan& s = spans[i];
    row_begin_[i] = row;
    const size_t n = static_cast<size_t>(s.n_chunks);
    if (n == 0) continue;
    const size_t at = static_cast<size_t>(row);
    std::memcpy(st + at * rb, static_cast<const unsigned char*>(src.k) + static_cast<size_t>(s.chunk_begin) * rb, n * rb);
    std::memcpy(st + rows_bytes + at * rb, static_cast<const unsigned char*>(src.v) + static_cast<size_t>(s.chunk_begin) * rb,
                n * rb);
    if (sb > 0) {
      std::memcpy(st + 2 * rows_bytes + at * sb,
                  reinterpret_cast<const unsigned char*>(src.k_scales) + static_cast<size_t>(s.chunk_begin) * sb, n * sb);
      std::memcpy(st + 2 * rows_bytes + sc_bytes + at * sb,
                  reinterpret_cast<const unsigned char*>(src.v_scales) + static_cast<size_t>(s.chunk_begin) * sb, n * sb);
    }
    row += s.n_chunks;
  }
  pack_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  n_rows_ = total;
  out_bytes_ = out_bytes;
  staged_bytes_ = staged;

  cudaStream_t cs = res_->copy_stream();
  cudaStream_t ks = res_->stream();
  // The previous decode reads raw_: the copy waits for it (no host stall).
  if (pending_) MSA_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(cs, decode_done_, 0));
  MSA_CUDA_RETURN_IF_ERROR(cudaEventRecord(copy_start_, cs));
  if (staged > 0) MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(raw_.data(), st, staged, cudaMemcpyHostToDevice, cs));
  MSA_CUDA_RETURN_IF_ERROR(cudaEventRecord(copy_done_, cs));
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(ks, copy_done_, 0));
  pending_ = true;
  if (total > 0) {
    DecodeParams p{};
    p.raw = raw_.as<unsigned char>();
    p.v_off = rows_bytes;
    p.ks_off = 2 * rows_bytes;
    p.vs_off = 2 * rows_bytes + sc_bytes;
    p.n_elems = total * width;
    p.width = static_cast<int>(width);
    p.head_dim = static_cast<int>(src.head_dim);
    p.n_kv = static_cast<int>(src.n_kv_heads);
    p.dtype = static_cast<int>(src.dtype);
    p.out_bf16 = out_dtype == PageDType::kBF16 ? 1 : 0;
    p.k_out = k_out_.data();
    p.v_out = v_out_.data();
    const int threads = 256;
    int64_t blocks = (2 * p.n_elems + threads - 1) / threads;
    if (blocks > 65536) blocks = 65536;
    decode_pages_kernel<<<static_cast<unsigned>(blocks), threads, 0, ks>>>(p);
    MSA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "page decode kernel launch"));
  }
  MSA_CUDA_RETURN_IF_ERROR(cudaEventRecord(decode_done_, ks));
  return Status::Ok();
}

Status PageGatherer::download(std::vector<uint8_t>* k, std::vector<uint8_t>* v) const {
  if (k == nullptr || v == nullptr) return Error(StatusCode::kInvalidArgument, "PageGatherer::download: null output");
  MSA_RETURN_IF_ERROR(res_->make_current());
  try {
    k->assign(out_bytes_, 0);
    v->assign(out_bytes_, 0);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "PageGatherer::download: out of host memory");
  }
  if (out_bytes_ > 0) {
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(k->data(), k_out_.data(), out_bytes_, cudaMemcpyDeviceToHost, res_->stream()));
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(v->data(), v_out_.data(), out_bytes_, cudaMemcpyDeviceToHost, res_->stream()));
  }
  return res_->synchronize();
}

Status PageGatherer::last_timing(double* pack_ms, double* h2d_ms) const {
  if (pack_ms) *pack_ms = pack_ms_;
  if (h2d_ms) {
    *h2d_ms = 0;
    if (pending_) {
      MSA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(copy_done_));
      float ms = 0;
      MSA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, copy_start_, copy_done_));
      *h2d_ms = ms;
    }
  }
  return Status::Ok();
}

}  // namespace msa::cuda
