// MemoryBank: what stage 1 produced for a corpus (spec §4.4-4.6, ARCHITECTURE.md "MemoryBank"):
//   * DocStore      — per document: caller id, original text, token count, chunk range (Memory Interleave
//                     re-reads the text);
//   * per router layer (in the order of ModelConfig::msa.router_layers):
//       RoutingIndex  — pooled router keys K̄ᴿ, contiguous [n_chunks, n_kv_heads*head_dim], plus the
//                       chunk -> document map: the *device tier* (scanned by the router for every query);
//       ContentPages  — pooled K̄ (post k_norm + RoPE) and V̄, [n_chunks, n_kv_heads*head_dim] each, every
//                       document's chunks contiguous and in order: the *host tier* (gathered for the top-k);
//   * the template-prefix K/V of every layer ([3, n_kv_heads*head_dim], positions 0..2).
// Pages are f32 in memory for now (the persistence issue adds bf16/int8 pages).
//
// Thread-safety: readers (routing, generation) take `lock_shared()`; add() takes the writer lock itself.
// Every const accessor (document(), find(), routing(), stats(), ...) reads unguarded state: call it under
// lock_shared() whenever another thread may add() concurrently. References it returns stay valid only
// while the shared lock is held (add() may reallocate).
// A bank is tied to the model configuration it was built for (fingerprint()).
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace msa {

struct DocumentRecord {
  uint64_t id = 0;          // caller-supplied id (or the next index); unique in the bank
  std::string text;         // the original document text (not the formatted prompt)
  int64_t n_tokens = 0;     // tokens of the formatted document (spec §3.2)
  int64_t chunk_begin = 0;  // first chunk in every layer's RoutingIndex/ContentPages
  int64_t n_chunks = 0;     // ceil(n_tokens / pooling_kernel_size)
};

// Stage-1 output for one document, before it enters a bank. Each vector holds one entry per router layer
// (ModelConfig::msa.router_layers order) of [n_chunks, width] floats, width = n_kv_heads * head_dim.
struct PooledDocument {
  int64_t n_tokens = 0;
  int64_t n_chunks = 0;
  std::vector<std::vector<float>> k;   // pooled attention keys K̄
  std::vector<std::vector<float>> v;   // pooled values V̄
  std::vector<std::vector<float>> rk;  // routing keys (K̄ᴿ, or K̄ when decouple_router is false), already
                                       // L2-normalised per (chunk, head) exactly when the config says so
};

struct RoutingIndex {
  std::vector<float> keys;          // [n_chunks, width]
  std::vector<int32_t> chunk_doc;   // [n_chunks] document index (position in the DocStore) of each chunk
  int64_t n_chunks() const { return static_cast<int64_t>(chunk_doc.size()); }
};

struct ContentPages {
  std::vector<float> k;  // [n_chunks, width]
  std::vector<float> v;  // [n_chunks, width]
};

struct MemoryStats {
  int64_t n_documents = 0;
  int64_t n_chunks = 0;       // per router layer (the same in every layer)
  int64_t n_tokens = 0;
  int64_t routing_bytes = 0;  // device tier, all router layers
  int64_t content_bytes = 0;  // host tier, all router layers
  int64_t text_bytes = 0;     // DocStore texts
  int64_t template_bytes = 0; // template-prefix K/V of every layer
};

class MemoryBank {
 public:
  // template_k / template_v: one [3 * width] vector per decoder layer (all layers, not only router ones).
  // The constructor trusts its arguments (router_layers, head shapes, template sizes); create() checks them.
  MemoryBank(const ModelConfig& config, std::vector<std::vector<float>> template_k,
             std::vector<std::vector<float>> template_v);

  // Checked construction. Errors: kInvalidArgument (no msa_config / router layers, pooling_kernel_size < 1,
  // n_kv_heads * head_dim < 1, not one template K and V of 3 * width floats per decoder layer).
  static Status create(const ModelConfig& config, std::vector<std::vector<float>> template_k,
                       std::vector<std::vector<float>> template_v, std::unique_ptr<MemoryBank>* out);

  const ModelConfig& config() const { return config_; }
  int64_t width() const { return width_; }
  int n_router_layers() const { return static_cast<int>(routing_.size()); }

  // Appends documents atomically (all or none), under the writer lock. docs[i].chunk_begin/n_chunks are
  // assigned by the bank; docs[i].n_tokens must equal pooled[i].n_tokens. Errors: kInvalidArgument (sizes
  // disagree, n_tokens < 1, n_chunks != ceil(n_tokens / P), a non-finite pooled value, an id equal to
  // UINT64_MAX (reserved so that next_id() is always free), a duplicate id, in the batch or against the
  // bank), kOutOfMemory (nothing was added).
  Status add(std::vector<DocumentRecord> docs, std::vector<PooledDocument> pooled);
  // As add(), but the bank numbers the documents itself, next_id(), next_id() + 1, ... under the same
  // writer lock (docs[i].id is ignored), so concurrent adders never race for an id. The ids given are
  // stored in *ids (may be null).
  Status add_with_new_ids(std::vector<DocumentRecord> docs, std::vector<PooledDocument> pooled,
                          std::vector<uint64_t>* ids);

  int64_t n_documents() const { return static_cast<int64_t>(docs_.size()); }
  const DocumentRecord& document(int64_t index) const { return docs_[static_cast<size_t>(index)]; }
  // Index of the document with this id, or -1.
  int64_t find(uint64_t id) const;
  // The id the next document added without an explicit id receives (max id + 1, 0 for an empty bank).
  uint64_t next_id() const { return next_id_; }

  // router_slot: index into ModelConfig::msa.router_layers.
  const RoutingIndex& routing(int router_slot) const { return routing_[static_cast<size_t>(router_slot)]; }
  const ContentPages& content(int router_slot) const { return content_[static_cast<size_t>(router_slot)]; }
  const std::vector<float>& template_k(int layer) const { return template_k_[static_cast<size_t>(layer)]; }
  const std::vector<float>& template_v(int layer) const { return template_v_[static_cast<size_t>(layer)]; }
  int64_t template_len() const { return 3; }

  // Sizes of what is stored (element counts x element size, not allocated capacity).
  MemoryStats stats() const;

  void lock_shared() const { mu_.lock_shared(); }
  void unlock_shared() const { mu_.unlock_shared(); }

 private:
  Status add_locked(std::vector<DocumentRecord>& docs, std::vector<PooledDocument>& pooled);

  ModelConfig config_;
  int64_t width_ = 0;
  std::vector<DocumentRecord> docs_;
  std::unordered_map<uint64_t, int64_t> by_id_;
  uint64_t next_id_ = 0;
  std::vector<RoutingIndex> routing_;
  std::vector<ContentPages> content_;
  std::vector<std::vector<float>> template_k_, template_v_;
  mutable std::shared_mutex mu_;
};

}  // namespace msa
