// Routing scores on the GPU (the device twin of msa::score_documents, src/backend/cpu/routing_scan.h): for the routing
// query rows q [n_tokens, n_heads * head_dim] and a DeviceRoutingIndex, one f32 score per document, left on
// the device for cuda/topk.h.
//
// Reductions (the CPU router's, in the same order):
//   head mean — GQA collapse: the q heads of each kv group are summed first (in head order, as the CPU does),
//     one dot product per (token, kv head) against that head's key slice, summed over kv heads, / n_heads;
//     query mean sums the token rows before the product (one row), query last keeps the last row;
//   head max — exact per q head (head h against kv head h / (n_heads / n_kv_heads)), max over the heads;
//   query max / mean / last over the routing tokens, then chunk -> document max / mean in chunk order.
// Max reductions propagate NaN; a document without chunks scores -inf.
//
// Kernels: (1) query preparation ([rows, width] f32 in device memory); (2) the scan: one block per tile of
// 64-256 chunks, each key byte read once per pass over <= 32 query rows (one pass for T*group <= 32), 16-byte
// coalesced loads into shared memory per 128-byte slice of a kv head, f32 FMA with the query slice in shared
// memory; int8 keys are converted exactly and the per-(chunk, kv head) scale is applied to that head's dot
// product (the CPU dequantises each element first: the two differ by rounding only); head and query
// reductions happen in registers, one f32 per chunk is written; (3) chunk -> document: one thread per
// document over its chunks in chunk order (the CSR of DeviceRoutingIndex), deterministic, no atomics.
// Results are bitwise reproducible run to run on one GPU; against the CPU they agree to f32 rounding
// (dot products of length head_dim summed in a different order).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "backend/routing_types.h"
#include "routing_index.h"

namespace msa::cuda {

struct DeviceRouterQuery {
  const float* q = nullptr;  // [n_tokens, n_heads * head_dim] f32, prepared as for msa::score_documents
  bool on_device = false;    // q is device memory (else host memory, copied by score())
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

class RoutingScorer {
 public:
  // Errors: kInvalidArgument (null res/out).
  static Status create(CudaResources* res, std::unique_ptr<RoutingScorer>* out);

  // Scores every document of `index` into doc_scores() (index.n_documents() floats), asynchronously on the
  // compute stream (a host q has been copied when this returns). Errors: kInvalidArgument (null q, n_tokens <
  // 1, a shape that does not match the index, n_heads not a multiple of n_kv_heads, a reduction outside its
  // enum, more than 2^31 query floats after preparation), kOutOfMemory, kInternal (a CUDA error).
  Status score(const DeviceRouterQuery& q, const DeviceRoutingIndex& index, const RouterReductions& red);

  // Device pointers of the last score() (valid until the next one).
  const float* doc_scores() const { return doc_scores_.as<float>(); }
  const float* chunk_scores() const { return chunk_scores_.as<float>(); }
  int64_t n_documents() const { return n_documents_; }
  int64_t n_chunks() const { return n_chunks_; }

  // Copies the last doc scores to the host (synchronises the compute stream).
  Status download(std::vector<float>* scores) const;

 private:
  RoutingScorer() = default;
  CudaResources* res_ = nullptr;
  DeviceBuffer q_, rows_, chunk_scores_, doc_scores_;
  int64_t n_documents_ = 0;
  int64_t n_chunks_ = 0;
};

}  // namespace msa::cuda
