#include "backend/routing_types.h"

#include "core/status.h"

namespace msa {

Status check_routing_view(const RoutingIndexView& v, const char* fn, bool need_ids) {
  // Bounds that keep every size product far from int64 overflow (real models: 8 kv heads x 128).
  constexpr int64_t kMaxDim = int64_t{1} << 16;
  if (v.n_chunks < 0 || v.n_documents < 0 || v.n_kv_heads <= 0 || v.head_dim <= 0 || v.n_kv_heads > kMaxDim ||
      v.head_dim > kMaxDim) {
    return Error(StatusCode::kInvalidArgument, fn, ": bad routing index shape (", v.n_chunks, " chunks, ",
                 v.n_documents, " documents, ", v.n_kv_heads, " kv heads x ", v.head_dim, ")");
  }
  if (!page_dtype_valid(static_cast<uint32_t>(v.dtype))) {
    return Error(StatusCode::kInvalidArgument, fn, ": routing index dtype ", static_cast<uint32_t>(v.dtype), " unknown");
  }
  if (v.n_chunks > 0) {
    const bool f32 = v.dtype == PageDType::kF32;
    if ((f32 && v.keys == nullptr) || (!f32 && v.packed == nullptr) ||
        (v.dtype == PageDType::kInt8 && v.scales == nullptr) || v.chunk_doc == nullptr) {
      return Error(StatusCode::kInvalidArgument, fn, ": the ", page_dtype_name(v.dtype), " routing index of ",
                   v.n_chunks, " chunks has no key rows or chunk map");
    }
  }
  if (need_ids && v.n_documents > 0 && v.doc_ids == nullptr) {
    return Error(StatusCode::kInvalidArgument, fn, ": the routing index of ", v.n_documents,
                 " documents has no document ids");
  }
  return Status::Ok();
}

Status check_routing_update(const RoutingIndexView& host, PageDType dtype, int64_t n_kv_heads, int64_t head_dim,
                            int64_t n_chunks, int64_t n_documents, const char* fn) {
  MSA_RETURN_IF_ERROR(check_routing_view(host, fn));
  if (host.dtype != dtype || host.n_kv_heads != n_kv_heads || host.head_dim != head_dim) {
    return Error(StatusCode::kInvalidArgument, fn, ": the view (", page_dtype_name(host.dtype), ", ", host.n_kv_heads,
                 " kv heads x ", host.head_dim, ") is not the resident index's (", page_dtype_name(dtype), ", ",
                 n_kv_heads, " x ", head_dim, ")");
  }
  if (host.n_chunks < n_chunks || host.n_documents < n_documents) {
    return Error(StatusCode::kInvalidArgument, fn, ": the view has ", host.n_chunks, " chunks and ", host.n_documents,
                 " documents, the resident index already ", n_chunks, " and ", n_documents,
                 " (an update only appends; upload a rewritten index anew)");
  }
  return Status::Ok();
}

Status check_reductions(const RouterReductions& red, const char* fn) {
  if (red.head != HeadReduce::kMean && red.head != HeadReduce::kMax) {
    return Error(StatusCode::kInvalidArgument, fn, ": head reduction ", static_cast<int>(red.head), " unknown");
  }
  if (red.query != QueryReduce::kMax && red.query != QueryReduce::kMean && red.query != QueryReduce::kLast) {
    return Error(StatusCode::kInvalidArgument, fn, ": query reduction ", static_cast<int>(red.query), " unknown");
  }
  if (red.chunk != ChunkReduce::kMax && red.chunk != ChunkReduce::kMean) {
    return Error(StatusCode::kInvalidArgument, fn, ": chunk reduction ", static_cast<int>(red.chunk), " unknown");
  }
  return Status::Ok();
}

}  // namespace msa
