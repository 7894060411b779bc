// What the router hands a backend and gets back (Backend::upload_routing_index, Backend::route): the host form
// of one router layer's routing index, the prepared router query, the reductions, and the selected documents.
//
// Scoring (spec §5.2; ARCHITECTURE.md "Head-mean routing under GQA collapses"): the query rows are the router
// queries Qr of the routing tokens, prepared by the caller (L2-normalised per head when aux_loss_method ==
// "INFONCE", multiplied by head_dim^-0.5 unless INFONCE with a decoupled router). Reductions, in order: per
// (token, chunk) over the n_heads query heads (q head h uses kv head h / (n_heads / n_kv_heads)) with `head`
// (mean|max); over the routing tokens with `query` (max|mean|last); chunk -> document with `chunk` (max|mean).
// Numerics (f32): head mean = (sum over heads) / n_heads; query mean = sum / n_tokens; query last = the last
// routing token's row; chunk mean = sum over the document's chunks in chunk order / their count. Max reductions
// propagate NaN. A document without chunks scores -infinity. Backends may reassociate sums (GQA collapse), so
// they agree with the per-head reference to rounding; a backend's result is independent of its thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "memory/page_codec.h"
#include "model/config.h"

namespace msa {

// One router layer's routing index in host memory, as the bank holds it (the backend decides how it keeps it).
struct RoutingIndexView {
  PageDType dtype = PageDType::kF32;
  int64_t n_chunks = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  const float* keys = nullptr;      // kF32: [n_chunks, n_kv_heads * head_dim]
  const uint8_t* packed = nullptr;  // kBF16 / kInt8: [n_chunks, width] in the dtype
  const float* scales = nullptr;    // kInt8: [n_chunks, n_kv_heads]
  const int32_t* chunk_doc = nullptr;  // [n_chunks] document index of each chunk, in [0, n_documents)
  int64_t n_documents = 0;             // DocStore size (live + tombstoned)
  const uint64_t* doc_ids = nullptr;   // [n_documents] caller ids (the top-k tie rule)
  const uint8_t* removed = nullptr;    // [n_documents] non-zero: tombstoned (never selected)
};

// kInvalidArgument unless the view's shape, dtype and arrays are usable (every backend's upload_routing_index
// checks this first, with need_ids: the top-k needs the documents' ids; chunk_doc values are checked by
// route()). fn prefixes the message.
Status check_routing_view(const RoutingIndexView& view, const char* fn, bool need_ids = true);

// check_routing_view, plus: `host` extends an index of dtype/n_kv_heads/head_dim holding n_chunks chunks and
// n_documents documents (same dtype and shape, at least as many chunks and documents), as
// Backend::update_routing_index requires. fn prefixes the message.
Status check_routing_update(const RoutingIndexView& host, PageDType dtype, int64_t n_kv_heads, int64_t head_dim,
                            int64_t n_chunks, int64_t n_documents, const char* fn);

struct RouterQuery {
  const float* q = nullptr;  // [n_tokens, n_heads * head_dim], routing tokens only, prepared as above
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

struct RouterReductions {
  HeadReduce head = HeadReduce::kMax;
  QueryReduce query = QueryReduce::kMax;
  ChunkReduce chunk = ChunkReduce::kMax;
};

// kInvalidArgument unless every reduction is one of its enum's values (a value read from a config or a caller's
// struct may be anything). fn prefixes the message.
Status check_reductions(const RouterReductions& red, const char* fn);

struct ScoredDocument {
  int64_t index = 0;  // position in the DocStore
  uint64_t id = 0;    // caller id
  float score = 0;
};

struct RouteRequest {
  RouterQuery query;
  RouterReductions reductions;
  int64_t k = 16;           // top-k (> 0); k = min(k, live documents)
  bool want_scores = false;  // RouteSelection::scores: every document's score (a download of n_documents floats)
};

struct RouteSelection {
  std::vector<ScoredDocument> top;  // by (score desc, id asc)
  std::vector<float> scores;        // [n_documents] when requested (DocStore order), else empty
};

// A routing index resident on a backend (created by Backend::upload_routing_index). Opaque to the engine.
class ResidentRoutingIndex {
 public:
  virtual ~ResidentRoutingIndex() = default;
  virtual int64_t n_chunks() const = 0;
  virtual int64_t n_documents() const = 0;
  // Bytes of backend memory it holds (0 when it reads the host index in place).
  virtual int64_t device_bytes() const = 0;
};

}  // namespace msa
