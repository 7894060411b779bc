// Router: scores a query's routing vectors against one router layer's RoutingIndex and picks the top-k
// documents (spec §5.1-5.3; ARCHITECTURE.md "Head-mean routing under GQA collapses").
//
// Inputs are prepared by the caller exactly as the spec says (router queries Qr of the routing tokens, L2-
// normalised per head when aux_loss_method == "INFONCE", multiplied by head_dim^-0.5 unless INFONCE with a
// decoupled router). Reductions, in order: per (token, chunk) over the n_heads query heads (q head h uses kv
// head h / (n_heads / n_kv_heads)) with `head` (mean|max); over the routing tokens with `query`
// (max|mean|last); chunk -> document with `chunk` (max|mean). Top-k: k = min(k, n_documents), ordered by
// (score desc, document id asc).
//
// Numerics (f32 throughout): head mean = (sum over heads) / n_heads; query mean = sum / n_tokens; query last =
// the last routing token's row; chunk mean = sum over the document's chunks in chunk order / their count.
// Max reductions propagate NaN (a NaN anywhere in a reduction makes its result NaN). A document without
// chunks scores -infinity. A bf16/int8 index is dequantised block by block (kBlockChunks chunks) into an f32
// tile just before the product; the f32 kernels then run unchanged. score_documents may reassociate sums (head-mean GQA collapse; query mean under head
// mean sums the token rows before the dot product, which is exact algebra and T times cheaper), so it agrees
// with score_documents_per_head to rounding, not bitwise. For a given ISA its result is bitwise independent
// of the number of threads.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/status.h"
#include "memory/memory_bank.h"
#include "model/config.h"

namespace msa {

class ThreadPool;

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

struct ScoredDocument {
  int64_t index = 0;  // position in the DocStore
  uint64_t id = 0;    // caller id
  float score = 0;
};

struct RouterOptions {
  ThreadPool* pool = nullptr;  // null: ThreadPool::global(); not owned
  CpuIsa isa = CpuIsa::kAuto;  // kAuto/kAvx2: AVX2+FMA kernels when the CPU has them, else the portable ones
};

// Score of every document of the bank for one router layer: scores[d] for DocStore index d (resized to
// n_documents). Call under the bank's lock_shared() when the index belongs to a bank others may add to.
// Errors: kInvalidArgument (null pointers, empty query, n_heads not a multiple of n_kv_heads, an index whose
// keys are not [n_chunks, n_kv_heads * head_dim], a chunk_doc entry outside [0, n_documents), a reduction
// value outside its enum), kOutOfMemory.
Status score_documents(const RouterQuery& query, const RoutingIndex& index, int64_t n_documents,
                       const RouterReductions& red, std::vector<float>* scores);
Status score_documents(const RouterQuery& query, const RoutingIndex& index, int64_t n_documents,
                       const RouterReductions& red, std::vector<float>* scores, const RouterOptions& options);

// The reference per-head path (no GQA collapse, no blocking, one thread, every reduction literally as
// written above): the test oracle of score_documents for head mean. Same errors as score_documents.
Status score_documents_per_head(const RouterQuery& query, const RoutingIndex& index, int64_t n_documents,
                                const RouterReductions& red, std::vector<float>* scores);

// Routing-vector normalisation (spec §4.4), used on router queries and keys alike. x: [n_vectors, dim]. Every
// head vector v becomes v / max(||v||_2, 1e-12) (F.normalize semantics). The squared norm is accumulated in
// double, in element order, then rounded to f32; the division is in f32. The result depends only on the
// vector itself (never on how rows were batched).
void l2_normalize_heads(float* x, int64_t n_vectors, int64_t dim);

// Top-k of `scores` by (score desc, id asc) over the live (not tombstoned) documents; k = min(k, live). ids come from the bank (call under its
// lock_shared() if others may add). NaN scores rank below every number (-inf included), among themselves by
// id. Errors: kInvalidArgument (k <= 0, null out, scores.size() != bank.n_documents()).
Status select_top_k(const std::vector<float>& scores, const MemoryBank& bank, int64_t k,
                    std::vector<ScoredDocument>* out);

}  // namespace msa
