// Top-k documents on the GPU (the device twin of msa::select_top_k, src/backend/cpu/routing_scan.h).
//
// Order: score descending, then document id ascending; NaN ranks below every number (-inf included), NaNs
// among themselves by id; -0 and +0 are the same score; tombstoned documents are never returned; k =
// min(k, live documents). Method: one 64-bit radix key per document — the score mapped to an unsigned
// integer that sorts descending (NaN canonical, just above -inf; removed documents above NaN), followed by the
// rank of the document's id among all ids (computed on the host when the documents are set, so ties resolve
// by id, not by position) — sorted with cub::DeviceRadixSort::SortPairs over the bits in use; only the first k
// (index, score) pairs are downloaded.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "memory/memory_bank.h"
#include "resources.h"
#include "backend/routing_types.h"

namespace msa::cuda {

// The documents top-k chooses among: ids (tie rule) and the tombstone mask, on the device.
class DeviceDocSet {
 public:
  static Status create(CudaResources* res, std::unique_ptr<DeviceDocSet>* out);
  // Replaces the set: n documents, ids[i] (unique) and removed[i] (non-zero: tombstoned; may be null: none).
  // When the set only grew by documents whose ids exceed every earlier id (an add), only their ranks are
  // computed and copied (the tombstone flags always are). Errors: kInvalidArgument (null ids with n > 0, n < 0
  // or >= 2^31), kOutOfMemory. Synchronises.
  Status set(const uint64_t* ids, const uint8_t* removed, int64_t n);
  // From a bank (call under its lock_shared() when others may add).
  Status set_from_bank(const MemoryBank& bank);

  int64_t n_documents() const { return static_cast<int64_t>(ids_.size()); }
  int64_t n_live() const { return n_live_; }
  const std::vector<uint64_t>& ids() const { return ids_; }
  const uint32_t* ranks() const { return ranks_.as<uint32_t>(); }    // device: rank of ids[d]
  const uint8_t* removed() const { return removed_.as<uint8_t>(); }  // device: 0 live, 1 removed
  CudaResources* resources() const { return res_; }

 private:
  DeviceDocSet() = default;
  CudaResources* res_ = nullptr;
  std::vector<uint64_t> ids_;
  uint64_t max_id_ = 0;  // the largest of ids_ (0 when empty)
  int64_t n_live_ = 0;
  DeviceBuffer ranks_, removed_;
};

class TopKSelector {
 public:
  static Status create(CudaResources* res, std::unique_ptr<TopKSelector>* out);
  // The top k of d_scores (device, docs.n_documents() floats, written on the compute stream before this is
  // called) into out, best first. Synchronises the compute stream. Errors: kInvalidArgument (k <= 0, null
  // pointers, n != docs.n_documents()), kOutOfMemory, kInternal (CUDA / CUB error).
  Status select(const float* d_scores, int64_t n, const DeviceDocSet& docs, int64_t k,
                std::vector<ScoredDocument>* out);

 private:
  TopKSelector() = default;
  CudaResources* res_ = nullptr;
  DeviceBuffer keys_in_, keys_out_, vals_in_, vals_out_, temp_, picked_;
  PinnedBuffer host_;
};

}  // namespace msa::cuda
