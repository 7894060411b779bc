// The CPU routing scan (the CPU twin of Backend::route, backend/routing_types.h): router scores of every
// document against a host routing index, and the top-k. Also the reference per-head path (no GQA collapse, no
// blocking, one thread, every reduction literally as written in routing_types.h), the test oracle of
// score_documents for head mean.
//
// A bf16/int8 index is dequantised block by block (kBlockChunks chunks) into an f32 tile just before the
// product; the f32 kernels then run unchanged. score_documents may reassociate sums (head-mean GQA collapse;
// query mean under head mean sums the token rows before the dot product), so it agrees with
// score_documents_per_head to rounding, not bitwise. For a given ISA its result is bitwise independent of the
// number of threads.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/routing_types.h"
#include "core/status.h"

namespace msa {

class ThreadPool;

struct ScanOptions {
  ThreadPool* pool = nullptr;  // null: ThreadPool::global(); not owned
  CpuIsa isa = CpuIsa::kAuto;  // kAuto/kAvx2: AVX2+FMA kernels when the CPU has them, else the portable ones
};

// scores[d] for every DocStore index d (resized to index.n_documents). Errors: kInvalidArgument (null pointers,
// empty query, n_heads not a multiple of n_kv_heads, an index of another head shape, a chunk_doc entry outside
// [0, n_documents), a reduction value outside its enum), kOutOfMemory.
Status score_documents(const RouterQuery& query, const RoutingIndexView& index, const RouterReductions& red,
                       std::vector<float>* scores, const ScanOptions& options = ScanOptions());
Status score_documents_per_head(const RouterQuery& query, const RoutingIndexView& index, const RouterReductions& red,
                                std::vector<float>* scores);

// Top-k of `scores` by (score desc, id asc) over the live (not removed) documents of `index`; k = min(k, live).
// NaN scores rank below every number (-inf included), among themselves by id. Errors: kInvalidArgument (k <= 0,
// null out, scores.size() != n_documents, no doc_ids).
Status select_top_k(const std::vector<float>& scores, const RoutingIndexView& index, int64_t k,
                    std::vector<ScoredDocument>* out);

// Rows [c0, c0 + n) of the index as f32 into dst ([n, n_kv_heads * head_dim]); shapes checked by the caller.
void decode_index_rows(const RoutingIndexView& index, int64_t c0, int64_t n, float* dst);

// The CPU twin of Backend::l2_normalize (routing_types.h numerics).
void l2_normalize_heads(float* x, int64_t n_vectors, int64_t dim);

}  // namespace msa
