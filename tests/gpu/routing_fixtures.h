// Shared by the routing-tier GPU tests (test_routing.cpp on the device, test_routing_emu.cpp under the CPU
// emulation): the one-router-layer config and empty bank the random banks are built in, the document loop that
// repeats every 7th document's pages (exact score ties), the |key| index of the tolerance bound, and the host
// view (backend/routing_types.h) the CPU routing scan (backend/cpu/routing_scan.h) takes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/dtype.h"
#include "memory/memory_bank.h"
#include "backend/cpu/routing_scan.h"
#include "backend/routing_types.h"

namespace routing_fixtures {

// A model config with one router layer (layer 0) of the given head shape.
inline msa::ModelConfig make_config(int64_t heads, int64_t kv_heads, int64_t head_dim, int pooling) {
  msa::ModelConfig cfg;
  cfg.num_hidden_layers = 1;
  cfg.num_attention_heads = heads;
  cfg.num_key_value_heads = kv_heads;
  cfg.head_dim = head_dim;
  cfg.msa.present = true;
  cfg.msa.router_layers = {0};
  cfg.msa.pooling_kernel_size = pooling;
  return cfg;
}

// An empty bank of `dt` pages for that config (zero 3-token prefix pages).
inline msa::Status create_bank(int64_t heads, int64_t kv_heads, int64_t head_dim, int pooling, msa::PageDType dt,
                               std::unique_ptr<msa::MemoryBank>* out) {
  const int64_t width = kv_heads * head_dim;
  return msa::MemoryBank::create(make_config(heads, kv_heads, head_dim, pooling),
                                 {std::vector<float>(static_cast<size_t>(3 * width))},
                                 {std::vector<float>(static_cast<size_t>(3 * width))}, out, dt);
}

// Documents d = 0..ids.size() with ids[d]: every 7th (d % 7 == 6) repeats the previous one's pages (an exact
// score tie), every other one is new_doc() (called in document order).
template <class NewDoc>
void make_documents(const std::vector<uint64_t>& ids, NewDoc new_doc, std::vector<msa::DocumentRecord>* docs,
                    std::vector<msa::PooledDocument>* pooled) {
  for (size_t d = 0; d < ids.size(); ++d) {
    msa::PooledDocument p = d % 7 == 6 ? pooled->back() : new_doc();
    msa::DocumentRecord r;
    r.id = ids[d];
    r.n_tokens = p.n_tokens;
    docs->push_back(r);
    pooled->push_back(p);
  }
}

// The index with every key replaced by its absolute value (scales are >= 0): scoring it with |q| and
// max reductions gives, per document, the largest sum of |q_h[d] * k[d]| over (token, head, chunk).
inline msa::RoutingIndex abs_index(const msa::RoutingIndex& in) {
  msa::RoutingIndex r = in;
  for (float& x : r.keys) x = std::fabs(x);
  if (r.dtype == msa::PageDType::kInt8) {
    for (uint8_t& b : r.packed) {
      const int8_t q = static_cast<int8_t>(b);
      b = static_cast<uint8_t>(static_cast<int8_t>(q < 0 ? -q : q));
    }
  } else if (r.dtype == msa::PageDType::kBF16) {
    for (size_t i = 1; i < r.packed.size(); i += 2) r.packed[i] &= 0x7f;  // little-endian: sign in the high byte
  }
  for (float& x : r.scales) x = std::fabs(x);
  return r;
}

// The bank's per-document arrays a RoutingIndexView points into: caller ids and tombstones.
struct DocArrays {
  std::vector<uint64_t> ids;
  std::vector<uint8_t> removed;
};
inline DocArrays doc_arrays(const msa::MemoryBank& bank) {
  DocArrays a;
  const int64_t n = bank.n_documents();
  a.ids.resize(static_cast<size_t>(n));
  a.removed.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    a.ids[static_cast<size_t>(i)] = bank.document(i).id;
    a.removed[static_cast<size_t>(i)] = bank.is_removed(i) ? 1 : 0;
  }
  return a;
}

// The host view of `ri` (an index of `bank`, or one derived from it such as abs_index) over the bank's documents
// (`docs` = doc_arrays(bank)); ri and docs must outlive it.
inline msa::RoutingIndexView view_of(const msa::RoutingIndex& ri, const msa::MemoryBank& bank, const DocArrays& docs) {
  msa::RoutingIndexView v;
  v.dtype = ri.dtype;
  v.n_chunks = ri.n_chunks();
  v.n_kv_heads = bank.config().num_key_value_heads;
  v.head_dim = bank.config().head_dim;
  v.keys = ri.keys.empty() ? nullptr : ri.keys.data();
  v.packed = ri.packed.empty() ? nullptr : ri.packed.data();
  v.scales = ri.scales.empty() ? nullptr : ri.scales.data();
  v.chunk_doc = ri.chunk_doc.empty() ? nullptr : ri.chunk_doc.data();
  v.n_documents = bank.n_documents();
  v.doc_ids = docs.ids.empty() ? nullptr : docs.ids.data();
  v.removed = docs.removed.empty() ? nullptr : docs.removed.data();
  return v;
}

}  // namespace routing_fixtures
