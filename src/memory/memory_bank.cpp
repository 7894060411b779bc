// MemoryBank: validation and atomic append of stage-1 output (spec §4.4-4.6).
//
// add() is all-or-none: every check runs before the first byte of the bank changes, then capacity for the
// whole batch is reserved (the only step that can fail for lack of memory, and reserve() never changes
// contents), then the appends run on reserved storage and cannot fail, except the id-map insertions, which
// roll back on bad_alloc.
#include "memory/memory_bank.h"

#include <cmath>
#include <limits>
#include <mutex>
#include <new>
#include <unordered_set>
#include <utility>

namespace msa {

namespace {

// True when every value is finite. Pooled keys/values are means of finite activations, so a NaN/Inf here
// means the encoder broke; storing it would poison every later routing score of that document.
bool all_finite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

// Checks one per-router-layer tensor list of a PooledDocument: one entry per router layer, each of
// n_chunks * width finite floats.
Status check_pooled_tensors(const std::vector<std::vector<float>>& t, const char* what, size_t doc,
                            int n_layers, int64_t n_chunks, int64_t width) {
  if (t.size() != static_cast<size_t>(n_layers)) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", doc, ": pooled ", what, " has ",
                 t.size(), " router layers, the model has ", n_layers);
  }
  const size_t want = static_cast<size_t>(n_chunks) * static_cast<size_t>(width);
  for (size_t l = 0; l < t.size(); ++l) {
    if (t[l].size() != want) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", doc, ": pooled ", what,
                   " of router slot ", l, " has ", t[l].size(), " floats, expected ", n_chunks, " chunks x ",
                   width, " = ", want);
    }
    if (!all_finite(t[l])) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", doc, ": pooled ", what,
                   " of router slot ", l, " holds a non-finite value");
    }
  }
  return Status::Ok();
}

}  // namespace

MemoryBank::MemoryBank(const ModelConfig& config, std::vector<std::vector<float>> template_k,
                       std::vector<std::vector<float>> template_v)
    : config_(config),
      width_(config.num_key_value_heads * config.head_dim),
      routing_(config.msa.router_layers.size()),
      content_(config.msa.router_layers.size()),
      template_k_(std::move(template_k)),
      template_v_(std::move(template_v)) {}

Status MemoryBank::create(const ModelConfig& config, std::vector<std::vector<float>> template_k,
                          std::vector<std::vector<float>> template_v, std::unique_ptr<MemoryBank>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "memory create: out is null");
  if (!config.msa.present || config.msa.router_layers.empty()) {
    return Error(StatusCode::kInvalidArgument,
                 "memory create: the model has no msa_config router layers; a memory bank needs an MSA model");
  }
  if (config.msa.pooling_kernel_size < 1) {
    return Error(StatusCode::kInvalidArgument, "memory create: pooling_kernel_size ",
                 config.msa.pooling_kernel_size, " < 1");
  }
  if (config.num_key_value_heads < 1 || config.head_dim < 1) {
    return Error(StatusCode::kInvalidArgument, "memory create: num_key_value_heads ", config.num_key_value_heads,
                 " and head_dim ", config.head_dim, " must be >= 1");
  }
  for (int layer : config.msa.router_layers) {
    if (layer < 0 || layer >= config.num_hidden_layers) {
      return Error(StatusCode::kInvalidArgument, "memory create: router layer ", layer, " outside [0, ",
                   config.num_hidden_layers, ")");
    }
  }
  const size_t n_layers = static_cast<size_t>(config.num_hidden_layers);
  const size_t want = 3 * static_cast<size_t>(config.num_key_value_heads * config.head_dim);
  if (template_k.size() != n_layers || template_v.size() != n_layers) {
    return Error(StatusCode::kInvalidArgument, "memory create: ", template_k.size(), " template K and ",
                 template_v.size(), " template V tensors for ", n_layers, " decoder layers");
  }
  for (size_t l = 0; l < n_layers; ++l) {
    if (template_k[l].size() != want || template_v[l].size() != want) {
      return Error(StatusCode::kInvalidArgument, "memory create: template K/V of layer ", l, " have ",
                   template_k[l].size(), "/", template_v[l].size(), " floats, expected 3 x width = ", want);
    }
  }
  *out = std::make_unique<MemoryBank>(config, std::move(template_k), std::move(template_v));
  return Status::Ok();
}

int64_t MemoryBank::find(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? -1 : it->second;
}

Status MemoryBank::add(std::vector<DocumentRecord> docs, std::vector<PooledDocument> pooled) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  return add_locked(docs, pooled);
}

Status MemoryBank::add_with_new_ids(std::vector<DocumentRecord> docs, std::vector<PooledDocument> pooled,
                                    std::vector<uint64_t>* ids) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  // Ids run next_id_ .. next_id_ + n - 1; the last must stay below the reserved UINT64_MAX.
  if (!docs.empty() && docs.size() - 1 >= std::numeric_limits<uint64_t>::max() - next_id_) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ids exhausted (next id ", next_id_, ")");
  }
  for (size_t i = 0; i < docs.size(); ++i) docs[i].id = next_id_ + i;
  std::vector<uint64_t> given;
  if (ids != nullptr) {
    given.reserve(docs.size());
    for (const DocumentRecord& d : docs) given.push_back(d.id);
  }
  MSA_RETURN_IF_ERROR(add_locked(docs, pooled));
  if (ids != nullptr) *ids = std::move(given);
  return Status::Ok();
}

Status MemoryBank::add_locked(std::vector<DocumentRecord>& docs, std::vector<PooledDocument>& pooled) {
  // ---------------------------------------------------------------- validate (nothing changes on error)
  if (docs.size() != pooled.size()) {
    return Error(StatusCode::kInvalidArgument, "memory add: ", docs.size(), " document records but ",
                 pooled.size(), " pooled documents");
  }
  const int64_t pool = config_.msa.pooling_kernel_size;
  if (pool < 1) {
    return Error(StatusCode::kInvalidArgument, "memory add: the bank's pooling_kernel_size is ", pool);
  }
  const int n_layers = n_router_layers();
  // chunk_doc stores the DocStore index as int32_t.
  if (docs.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()) - docs_.size()) {
    return Error(StatusCode::kInvalidArgument, "memory add: more than 2^31 - 1 documents in one bank");
  }
  std::unordered_set<uint64_t> batch_ids;
  batch_ids.reserve(docs.size());
  int64_t new_chunks = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    const DocumentRecord& d = docs[i];
    const PooledDocument& p = pooled[i];
    if (d.id == std::numeric_limits<uint64_t>::max()) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i,
                   ": id 18446744073709551615 (UINT64_MAX) is reserved");
    }
    if (by_id_.count(d.id) != 0) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", d.id,
                   " is already in the bank");
    }
    if (!batch_ids.insert(d.id).second) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", d.id,
                   " appears twice in the batch");
    }
    if (p.n_tokens < 1) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i, " (id ", d.id, ") has ",
                   p.n_tokens, " tokens; a formatted document has at least one");
    }
    if (d.n_tokens != p.n_tokens) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i, " (id ", d.id,
                   "): record says ", d.n_tokens, " tokens, pooled output says ", p.n_tokens);
    }
    const int64_t want_chunks = (p.n_tokens + pool - 1) / pool;
    if (p.n_chunks != want_chunks) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i, " (id ", d.id, "): ", p.n_chunks,
                   " chunks for ", p.n_tokens, " tokens, expected ceil(", p.n_tokens, " / ", pool,
                   ") = ", want_chunks);
    }
    MSA_RETURN_IF_ERROR(check_pooled_tensors(p.k, "K", i, n_layers, p.n_chunks, width_));
    MSA_RETURN_IF_ERROR(check_pooled_tensors(p.v, "V", i, n_layers, p.n_chunks, width_));
    MSA_RETURN_IF_ERROR(check_pooled_tensors(p.rk, "routing keys", i, n_layers, p.n_chunks, width_));
    new_chunks += p.n_chunks;
  }
  if (docs.empty()) return Status::Ok();

  // ---------------------------------------------------------------- reserve (may fail; contents unchanged)
  const int64_t old_docs = n_documents();
  const int64_t old_chunks = routing_.empty() ? 0 : routing_[0].n_chunks();
  const size_t total_chunks = static_cast<size_t>(old_chunks + new_chunks);
  const size_t total_floats = total_chunks * static_cast<size_t>(width_);
  try {
    docs_.reserve(docs_.size() + docs.size());
    by_id_.reserve(by_id_.size() + docs.size());
    for (int l = 0; l < n_layers; ++l) {
      routing_[static_cast<size_t>(l)].keys.reserve(total_floats);
      routing_[static_cast<size_t>(l)].chunk_doc.reserve(total_chunks);
      content_[static_cast<size_t>(l)].k.reserve(total_floats);
      content_[static_cast<size_t>(l)].v.reserve(total_floats);
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory reserving ", new_chunks, " chunks");
  } catch (const std::length_error&) {
    return Error(StatusCode::kOutOfMemory, "memory add: ", total_chunks, " chunks exceed the vector limit");
  }

  // ---------------------------------------------------------------- id map (the one step that allocates)
  size_t inserted = 0;
  try {
    for (size_t i = 0; i < docs.size(); ++i, ++inserted) {
      by_id_.emplace(docs[i].id, old_docs + static_cast<int64_t>(i));
    }
  } catch (const std::bad_alloc&) {
    for (size_t i = 0; i < inserted; ++i) by_id_.erase(docs[i].id);
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory indexing document ids");
  }

  // ---------------------------------------------------------------- append (no allocation past here)
  int64_t chunk = old_chunks;
  for (size_t i = 0; i < docs.size(); ++i) {
    DocumentRecord& d = docs[i];
    PooledDocument& p = pooled[i];
    const int32_t doc_index = static_cast<int32_t>(old_docs + static_cast<int64_t>(i));
    for (int l = 0; l < n_layers; ++l) {
      const size_t s = static_cast<size_t>(l);
      RoutingIndex& ri = routing_[s];
      ri.keys.insert(ri.keys.end(), p.rk[s].begin(), p.rk[s].end());
      ri.chunk_doc.insert(ri.chunk_doc.end(), static_cast<size_t>(p.n_chunks), doc_index);
      content_[s].k.insert(content_[s].k.end(), p.k[s].begin(), p.k[s].end());
      content_[s].v.insert(content_[s].v.end(), p.v[s].begin(), p.v[s].end());
    }
    d.chunk_begin = chunk;
    d.n_chunks = p.n_chunks;
    chunk += p.n_chunks;
    if (d.id >= next_id_) next_id_ = d.id + 1;  // id < UINT64_MAX was checked: no wrap
    docs_.push_back(std::move(d));
  }
  return Status::Ok();
}

MemoryStats MemoryBank::stats() const {
  MemoryStats s;
  s.n_documents = n_documents();
  s.n_chunks = routing_.empty() ? 0 : routing_[0].n_chunks();
  for (const DocumentRecord& d : docs_) {
    s.n_tokens += d.n_tokens;
    s.text_bytes += static_cast<int64_t>(d.text.size());
  }
  for (const RoutingIndex& r : routing_) {
    s.routing_bytes += static_cast<int64_t>(r.keys.size() * sizeof(float) + r.chunk_doc.size() * sizeof(int32_t));
  }
  for (const ContentPages& c : content_) {
    s.content_bytes += static_cast<int64_t>((c.k.size() + c.v.size()) * sizeof(float));
  }
  for (size_t l = 0; l < template_k_.size(); ++l) {
    s.template_bytes += static_cast<int64_t>(template_k_[l].size() * sizeof(float));
  }
  for (size_t l = 0; l < template_v_.size(); ++l) {
    s.template_bytes += static_cast<int64_t>(template_v_[l].size() * sizeof(float));
  }
  return s;
}

}  // namespace msa
