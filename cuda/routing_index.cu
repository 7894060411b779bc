// DeviceRoutingIndex (routing_index.h).
#include "routing_index.h"

#include <algorithm>
#include <limits>

#include "cuda_status.h"
#include "kernel_compat.cuh"

namespace msa::cuda {

namespace {
constexpr int64_t kMaxDim = int64_t{1} << 16;
// Chunk and document indices are int32 on the device.
constexpr int64_t kMaxChunks = std::numeric_limits<int32_t>::max() - 1;

// Copies n_chunks rows (row_bytes each) and their scales (n_scales floats per row; none for 0) into the device
// arrays keys / scales after the first `at` rows, stream-ordered on s.
Status copy_chunks(uint8_t* keys, uint8_t* scales, const void* rows, const float* row_scales, int64_t at,
                   int64_t n_chunks, size_t row_bytes, int64_t n_scales, cudaMemcpyKind kind, cudaStream_t s) {
  const size_t sb = static_cast<size_t>(n_scales) * sizeof(float);
  if (n_chunks > 0) {
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(keys + static_cast<size_t>(at) * row_bytes, rows,
                                             static_cast<size_t>(n_chunks) * row_bytes, kind, s));
    if (sb > 0) {
      MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scales + static_cast<size_t>(at) * sb, row_scales,
                                               static_cast<size_t>(n_chunks) * sb, kind, s));
    }
  }
  return Status::Ok();
}

}  // namespace

Status DeviceRoutingIndex::create(CudaResources* res, PageDType dtype, int64_t n_kv_heads, int64_t head_dim,
                                  int64_t capacity_chunks, std::unique_ptr<DeviceRoutingIndex>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::create: out is null");
  out->reset();
  if (res == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::create: res is null");
  if (!page_dtype_valid(static_cast<uint32_t>(dtype))) {
    return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::create: dtype ", static_cast<uint32_t>(dtype),
                 " unknown");
  }
  if (n_kv_heads < 1 || head_dim < 1 || n_kv_heads > kMaxDim || head_dim > kMaxDim) {
    return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::create: bad shape n_kv_heads ", n_kv_heads,
                 ", head_dim ", head_dim);
  }
  if (capacity_chunks < 0 || capacity_chunks > kMaxChunks) {
    return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::create: capacity_chunks ", capacity_chunks,
                 " outside [0, ", kMaxChunks, "]");
  }
  MSA_RETURN_IF_ERROR(res->make_current());
  std::unique_ptr<DeviceRoutingIndex> r(new DeviceRoutingIndex());
  r->res_ = res;
  r->dtype_ = dtype;
  r->n_kv_heads_ = n_kv_heads;
  r->head_dim_ = head_dim;
  MSA_RETURN_IF_ERROR(r->reserve_rows(std::max<int64_t>(capacity_chunks, 1)));
  MSA_RETURN_IF_ERROR(r->rebuild_csr(0));
  *out = std::move(r);
  return Status::Ok();
}

Status DeviceRoutingIndex::upload(CudaResources* res, const RoutingIndex& index, int64_t n_kv_heads,
                                  int64_t head_dim, int64_t n_documents, std::unique_ptr<DeviceRoutingIndex>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::upload: out is null");
  out->reset();
  if (n_kv_heads < 1 || head_dim < 1 || n_kv_heads > kMaxDim || head_dim > kMaxDim) {
    return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::upload: bad shape n_kv_heads ", n_kv_heads,
                 ", head_dim ", head_dim);
  }
  const int64_t n = index.n_chunks();
  const uint64_t width = static_cast<uint64_t>(n_kv_heads * head_dim);
  const void* rows = nullptr;
  if (index.dtype == PageDType::kF32) {
    if (index.keys.size() != static_cast<uint64_t>(n) * width) {
      return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::upload: index.keys holds ", index.keys.size(),
                   " floats for ", n, " chunks of width ", width);
    }
    rows = index.keys.data();
  } else if (index.dtype == PageDType::kBF16 || index.dtype == PageDType::kInt8) {
    const uint64_t rb = page_row_bytes(index.dtype, static_cast<int64_t>(width));
    const uint64_t ns = static_cast<uint64_t>(page_row_scales(index.dtype, n_kv_heads));
    if (index.packed.size() != static_cast<uint64_t>(n) * rb) {
      return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::upload: index.packed holds ",
                   index.packed.size(), " bytes for ", n, " ", page_dtype_name(index.dtype), " chunks of width ", width);
    }
    if (index.scales.size() != static_cast<uint64_t>(n) * ns) {
      return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::upload: index.scales holds ",
                   index.scales.size(), " scales for ", n, " chunks of ", n_kv_heads, " kv heads");
    }
    rows = index.packed.data();
  } else {
    return Error(StatusCode::kInvalidArgument, "DeviceRoutingIndex::upload: index dtype ",
                 static_cast<uint32_t>(index.dtype), " unknown");
  }
  std::unique_ptr<DeviceRoutingIndex> r;
  MSA_RETURN_IF_ERROR(create(res, index.dtype, n_kv_heads, head_dim, n, &r));
  MSA_RETURN_IF_ERROR(r->append(rows, index.scales.data(), index.chunk_doc.data(), n, n_documents));
  *out = std::move(r);
  return Status::Ok();
}

int64_t DeviceRoutingIndex::key_bytes() const {
  return n_chunks_ * static_cast<int64_t>(row_bytes()) +
         n_chunks_ * page_row_scales(dtype_, n_kv_heads_) * static_cast<int64_t>(sizeof(float));
}

int64_t DeviceRoutingIndex::reserved_key_bytes() const {
  return capacity_ * static_cast<int64_t>(row_bytes()) +
         capacity_ * page_row_scales(dtype_, n_kv_heads_) * static_cast<int64_t>(sizeof(float));
}

Status DeviceRoutingIndex::check_append(const int32_t* chunk_doc, int64_t n_chunks, int64_t n_documents,
                                        const void* rows, const float* scales, const char* fn) const {
  if (n_chunks < 0 || n_chunks > kMaxChunks - n_chunks_) {
    return Error(StatusCode::kInvalidArgument, fn, ": n_chunks ", n_chunks, " (index holds ", n_chunks_,
                 ", device limit ", kMaxChunks, ")");
  }
  if (n_documents < n_documents_ || n_documents > kMaxChunks) {
    return Error(StatusCode::kInvalidArgument, fn, ": n_documents ", n_documents, " (index has ", n_documents_,
                 "; it may only grow, limit ", kMaxChunks, ")");
  }
  if (n_chunks > 0 && (rows == nullptr || chunk_doc == nullptr)) {
    return Error(StatusCode::kInvalidArgument, fn, ": rows or chunk_doc is null");
  }
  if (n_chunks > 0 && dtype_ == PageDType::kInt8 && scales == nullptr) {
    return Error(StatusCode::kInvalidArgument, fn, ": scales is null for an int8 index");
  }
  for (int64_t c = 0; c < n_chunks; ++c) {
    if (chunk_doc[c] < 0 || chunk_doc[c] >= n_documents) {
      return Error(StatusCode::kInvalidArgument, fn, ": chunk_doc[", c, "] = ", chunk_doc[c], " outside [0, ",
                   n_documents, ")");
    }
  }
  return Status::Ok();
}

Status DeviceRoutingIndex::reserve_rows(int64_t n_total) {
  if (n_total <= capacity_) return Status::Ok();
  int64_t cap = std::max<int64_t>(n_total, capacity_ + capacity_ / 2);
  cap = std::min<int64_t>(cap, kMaxChunks);
  cudaStream_t s = res_->stream();
  const size_t rb = row_bytes();
  const size_t sb = static_cast<size_t>(page_row_scales(dtype_, n_kv_heads_)) * sizeof(float);
  MSA_RETURN_IF_ERROR(keys_.grow_preserve(static_cast<size_t>(cap) * rb, static_cast<size_t>(n_chunks_) * rb, s));
  if (sb > 0) {
    MSA_RETURN_IF_ERROR(
        scales_.grow_preserve(static_cast<size_t>(cap) * sb, static_cast<size_t>(n_chunks_) * sb, s));
  }
  capacity_ = cap;
  return Status::Ok();
}

// Stable counting sort of the chunks by document: doc_chunks is chunk-ascending within every document.
Status DeviceRoutingIndex::rebuild_csr(int64_t n_documents) {
  try {
    std::vector<int32_t> offsets, chunks;
    kern::build_doc_csr(chunk_doc_, n_documents, &offsets, &chunks);
    cudaStream_t s = res_->stream();
    // Scans queued on the stream may still read the old map: wait for them before it is overwritten.
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
    MSA_RETURN_IF_ERROR(offsets_.reserve(offsets.size() * sizeof(int32_t)));
    MSA_RETURN_IF_ERROR(doc_chunks_.reserve(std::max<size_t>(chunks.size(), 1) * sizeof(int32_t)));
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(offsets_.data(), offsets.data(), offsets.size() * sizeof(int32_t),
                                             cudaMemcpyHostToDevice, s));
    if (!chunks.empty()) {
      MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(doc_chunks_.data(), chunks.data(), chunks.size() * sizeof(int32_t),
                                               cudaMemcpyHostToDevice, s));
    }
    // The host vectors die here: wait for the (pageable, staged) copies before returning.
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "DeviceRoutingIndex: out of host memory for the document map");
  }
  n_documents_ = n_documents;
  return Status::Ok();
}

Status DeviceRoutingIndex::extend_csr(int64_t first_chunk, int64_t n_new, int64_t n_documents) {
  std::vector<int32_t> off_tail, chunks_tail;
  try {
    if (!kern::extend_doc_csr(chunk_doc_.data() + first_chunk, n_new, first_chunk, n_documents_, n_documents,
                              &off_tail, &chunks_tail)) {
      return rebuild_csr(n_documents);
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "DeviceRoutingIndex: out of host memory for the document map");
  }
  cudaStream_t s = res_->stream();
  const size_t old_offsets = static_cast<size_t>(n_documents_ + 1) * sizeof(int32_t);
  const size_t old_chunks = static_cast<size_t>(first_chunk) * sizeof(int32_t);
  // Earlier entries kept (scans queued on the stream read only those).
  MSA_RETURN_IF_ERROR(offsets_.grow_geometric(old_offsets + off_tail.size() * sizeof(int32_t), old_offsets, s));
  MSA_RETURN_IF_ERROR(doc_chunks_.grow_geometric(old_chunks + chunks_tail.size() * sizeof(int32_t), old_chunks, s));
  if (!off_tail.empty()) {
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(offsets_.as<uint8_t>() + old_offsets, off_tail.data(),
                                             off_tail.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  }
  if (!chunks_tail.empty()) {
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(doc_chunks_.as<uint8_t>() + old_chunks, chunks_tail.data(),
                                             chunks_tail.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  }
  // The host tails die here: wait for the (pageable, staged) copies before returning.
  MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  n_documents_ = n_documents;
  return Status::Ok();
}

// Extends the document map and the CSR (synchronises the stream, so the caller's rows may be freed afterwards).
// On failure the index keeps its previous rows.
Status DeviceRoutingIndex::commit_append(const int32_t* chunk_doc, int64_t n_chunks, int64_t n_documents) {
  const size_t old = chunk_doc_.size();
  try {
    chunk_doc_.insert(chunk_doc_.end(), chunk_doc, chunk_doc + n_chunks);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "DeviceRoutingIndex::append: out of host memory");
  }
  Status st = extend_csr(static_cast<int64_t>(old), n_chunks, n_documents);
  if (!st.ok()) {
    chunk_doc_.resize(old);
    return st;
  }
  n_chunks_ += n_chunks;
  return Status::Ok();
}

Status DeviceRoutingIndex::append(const void* rows, const float* scales, const int32_t* chunk_doc,
                                  int64_t n_chunks, int64_t n_documents) {
  MSA_RETURN_IF_ERROR(check_append(chunk_doc, n_chunks, n_documents, rows, scales, "DeviceRoutingIndex::append"));
  MSA_RETURN_IF_ERROR(res_->make_current());
  MSA_RETURN_IF_ERROR(reserve_rows(n_chunks_ + n_chunks));
  MSA_RETURN_IF_ERROR(copy_chunks(keys_.as<uint8_t>(), scales_.as<uint8_t>(), rows, scales, n_chunks_, n_chunks,
                                  row_bytes(), page_row_scales(dtype_, n_kv_heads_), cudaMemcpyHostToDevice,
                                  res_->stream()));
  return commit_append(chunk_doc, n_chunks, n_documents);
}

Status DeviceRoutingIndex::append_device(const void* d_rows, const float* d_scales, const int32_t* chunk_doc,
                                         int64_t n_chunks, int64_t n_documents) {
  MSA_RETURN_IF_ERROR(
      check_append(chunk_doc, n_chunks, n_documents, d_rows, d_scales, "DeviceRoutingIndex::append_device"));
  MSA_RETURN_IF_ERROR(res_->make_current());
  MSA_RETURN_IF_ERROR(reserve_rows(n_chunks_ + n_chunks));
  MSA_RETURN_IF_ERROR(copy_chunks(keys_.as<uint8_t>(), scales_.as<uint8_t>(), d_rows, d_scales, n_chunks_,
                                  n_chunks, row_bytes(), page_row_scales(dtype_, n_kv_heads_),
                                  cudaMemcpyDeviceToDevice, res_->stream()));
  return commit_append(chunk_doc, n_chunks, n_documents);
}

}  // namespace msa::cuda
