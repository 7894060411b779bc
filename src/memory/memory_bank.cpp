// MemoryBank: validation and atomic append of stage-1 output (spec §4.4-4.6).
//
// add() is all-or-none: every check runs before the first byte of the bank changes, then capacity for the
// whole batch is reserved (the only step that can fail for lack of memory, and reserve() never changes
// contents), then the appends run on reserved storage and cannot fail, except the id-map insertions, which
// roll back on bad_alloc.
#include "memory/memory_bank.h"

#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <unordered_set>
#include <utility>

#include "core/limits.h"

namespace msa {

uint64_t router_layers_xxh64(const std::vector<int>& layers) {
  std::vector<int32_t> rl(layers.begin(), layers.end());
  return XXH64(rl.data(), rl.size() * sizeof(int32_t), 0);
}

bankfmt::Fingerprint shape_fingerprint(const ModelConfig& c) {
  bankfmt::Fingerprint f;
  f.hidden_size = static_cast<uint64_t>(c.hidden_size);
  f.num_hidden_layers = static_cast<uint64_t>(c.num_hidden_layers);
  f.num_attention_heads = static_cast<uint64_t>(c.num_attention_heads);
  f.num_key_value_heads = static_cast<uint64_t>(c.num_key_value_heads);
  f.head_dim = static_cast<uint64_t>(c.head_dim);
  f.vocab_size = static_cast<uint64_t>(c.vocab_size);
  f.pooling_kernel_size = static_cast<uint64_t>(c.msa.pooling_kernel_size);
  f.decouple_router = c.msa.decouple_router ? 1 : 0;
  f.n_router_layers = c.msa.router_layers.size();
  f.router_layers_xxh64 = router_layers_xxh64(c.msa.router_layers);
  f.rope_theta = c.rope_theta;
  f.rms_norm_eps = c.rms_norm_eps;
  std::strncpy(f.aux_loss_method, c.msa.aux_loss_method.c_str(), sizeof f.aux_loss_method - 1);
  return f;
}

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

// Document i's shape: at least one token, the record's token count, ceil(n_tokens / pool) chunks, and K, V and
// routing keys of that many chunks for every router layer, finite.
Status check_pooled_document(size_t i, const DocumentRecord& d, const PooledDocument& p, int64_t pool, int n_layers,
                             int64_t width) {
  if (p.n_tokens < 1) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, " (id ", d.id, ") has ", p.n_tokens,
                 " tokens; a formatted document has at least one");
  }
  if (d.n_tokens != p.n_tokens) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, " (id ", d.id, "): record says ",
                 d.n_tokens, " tokens, pooled output says ", p.n_tokens);
  }
  const int64_t want_chunks = (p.n_tokens + pool - 1) / pool;
  if (p.n_chunks != want_chunks) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, " (id ", d.id, "): ", p.n_chunks,
                 " chunks for ", p.n_tokens, " tokens, expected ceil(", p.n_tokens, " / ", pool, ") = ", want_chunks);
  }
  MSA_RETURN_IF_ERROR(check_pooled_tensors(p.k, "K", i, n_layers, p.n_chunks, width));
  MSA_RETURN_IF_ERROR(check_pooled_tensors(p.v, "V", i, n_layers, p.n_chunks, width));
  MSA_RETURN_IF_ERROR(check_pooled_tensors(p.rk, "routing keys", i, n_layers, p.n_chunks, width));
  return Status::Ok();
}

}  // namespace

MemoryBank::MemoryBank(const ModelConfig& config, std::vector<std::vector<float>> template_k,
                       std::vector<std::vector<float>> template_v, PageDType dtype)
    : config_(config),
      width_(config.num_key_value_heads * config.head_dim),
      dtype_(dtype),
      routing_(config.msa.router_layers.size()),
      content_(config.msa.router_layers.size()),
      template_k_(std::move(template_k)),
      template_v_(std::move(template_v)) {
  for (RoutingIndex& r : routing_) r.dtype = dtype;
  for (ContentPages& c : content_) c.dtype = dtype;
  // The shape part of the fingerprint; create_memory_bank() replaces it by the model's full fingerprint
  // (tokenizer and weights digests included).
  fp_ = shape_fingerprint(config);
  fp_.page_dtype = static_cast<uint64_t>(dtype);
  fp_.template_len = 3;
  bump_version_locked();
}

void MemoryBank::bump_version_locked(Change change) {
  static std::atomic<uint64_t> counter{0};
  const uint64_t v = counter.fetch_add(1, std::memory_order_relaxed) + 1;
  version_.store(v, std::memory_order_relaxed);
  if (change == Change::kRewrite) layout_version_.store(v, std::memory_order_relaxed);
}

Status MemoryBank::create(const ModelConfig& config, std::vector<std::vector<float>> template_k,
                          std::vector<std::vector<float>> template_v, std::unique_ptr<MemoryBank>* out,
                          PageDType dtype) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "memory create: out is null");
  if (!page_dtype_valid(static_cast<uint32_t>(dtype))) {
    return Error(StatusCode::kInvalidArgument, "memory create: page dtype ", static_cast<uint32_t>(dtype), " unknown");
  }
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
  *out = std::make_unique<MemoryBank>(config, std::move(template_k), std::move(template_v), dtype);
  return Status::Ok();
}

int64_t MemoryBank::find(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? -1 : it->second;
}

// ------------------------------------------------------------------------------------------ id reservations

IdReservation::IdReservation(IdReservation&& o) noexcept
    : bank_(o.bank_), token_(o.token_), explicit_(o.explicit_), first_(o.first_), count_(o.count_),
      ids_(std::move(o.ids_)) {
  o.bank_ = nullptr;
  o.token_ = 0;
}

IdReservation& IdReservation::operator=(IdReservation&& o) noexcept {
  if (this != &o) {
    release();
    bank_ = o.bank_;
    token_ = o.token_;
    explicit_ = o.explicit_;
    first_ = o.first_;
    count_ = o.count_;
    ids_ = std::move(o.ids_);
    o.bank_ = nullptr;
    o.token_ = 0;
  }
  return *this;
}

std::vector<uint64_t> IdReservation::ids() const {
  if (explicit_) return ids_;
  std::vector<uint64_t> out(static_cast<size_t>(count_));
  for (size_t i = 0; i < out.size(); ++i) out[i] = first_ + i;
  return out;
}

void IdReservation::release() {
  if (bank_ != nullptr) {
    bank_->release_reservation(token_);
    bank_ = nullptr;
    token_ = 0;
  }
}

void MemoryBank::release_reservation(uint64_t token) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = reserved_.find(token);
  if (it == reserved_.end()) return;
  n_reserved_ -= static_cast<int64_t>(it->second.size());
  reserved_.erase(it);
}

uint64_t MemoryBank::next_id() const {
  uint64_t top = next_id_;
  for (const auto& [token, r] : reserved_) top = std::max(top, r.top);
  return top;
}

uint64_t MemoryBank::reserved_by(uint64_t id) const {
  for (const auto& [token, r] : reserved_) {
    if (r.holds(id)) return token;
  }
  return 0;
}

namespace {

// kInvalidArgument when the bank would hold more than limits::kMaxBankDocuments documents.
Status check_bank_limit(int64_t held, size_t more, const char* what) {
  if (static_cast<uint64_t>(held) + more > static_cast<uint64_t>(limits::kMaxBankDocuments)) {
    return Error(StatusCode::kInvalidArgument, what, ": the bank would hold ", static_cast<uint64_t>(held) + more,
                 " documents (live, removed and reserved), more than the limit of ", limits::kMaxBankDocuments,
                 " (MSA_MAX_BANK_DOCUMENTS)");
  }
  return Status::Ok();
}

}  // namespace

void MemoryBank::add_reservation_locked(Reserved r, IdReservation* out) {
  const uint64_t token = next_token_++;
  const size_t n = r.size();
  reserved_.emplace(token, std::move(r));  // may throw: nothing changed yet
  n_reserved_ += static_cast<int64_t>(n);
  out->bank_ = this;
  out->token_ = token;
}

Status MemoryBank::reserve_ids(size_t n, IdReservation* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "memory reserve: out is null");
  *out = IdReservation();
  if (n == 0) return Error(StatusCode::kInvalidArgument, "memory add: no documents (0 ids to reserve)");
  std::unique_lock<std::shared_mutex> lock(mu_);
  MSA_RETURN_IF_ERROR(check_bank_limit(n_documents() + n_reserved_, n, "memory add"));
  const uint64_t base = next_id();
  // Ids base .. base + n - 1; the last must stay below the reserved UINT64_MAX.
  if (n - 1 >= std::numeric_limits<uint64_t>::max() - base) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ids exhausted (next id ", base, ", ", n,
                 " documents)");
  }
  MSA_RETURN_IF_ERROR(begin_write_locked("memory add"));
  Reserved r;
  r.first = base;
  r.count = n;
  r.top = base + n;
  try {
    add_reservation_locked(std::move(r), out);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory reserving ", n, " ids");
  }
  out->first_ = base;
  out->count_ = n;
  return Status::Ok();
}

Status MemoryBank::reserve_ids(const std::vector<uint64_t>& ids, IdReservation* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "memory reserve: out is null");
  *out = IdReservation();
  if (ids.empty()) return Error(StatusCode::kInvalidArgument, "memory add: no documents (0 ids to reserve)");
  std::unique_lock<std::shared_mutex> lock(mu_);
  MSA_RETURN_IF_ERROR(check_bank_limit(n_documents() + n_reserved_, ids.size(), "memory add"));
  Reserved r;
  try {
    r.ids.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      MSA_RETURN_IF_ERROR(check_new_id_locked(i, ids[i], nullptr, &r.ids));
      r.top = std::max(r.top, ids[i] + 1);
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory reserving ", ids.size(), " ids");
  }
  MSA_RETURN_IF_ERROR(begin_write_locked("memory add"));
  try {
    out->ids_ = ids;
    out->explicit_ = true;
    add_reservation_locked(std::move(r), out);
  } catch (const std::bad_alloc&) {
    *out = IdReservation();
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory reserving ", ids.size(), " ids");
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------ add

Status MemoryBank::add(std::vector<DocumentRecord> docs, std::vector<PooledDocument> pooled,
                       IdReservation* reservation) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  return add_locked(docs, pooled, reservation);
}

Status MemoryBank::add_locked(std::vector<DocumentRecord>& docs, std::vector<PooledDocument>& pooled,
                              IdReservation* res) {
  const Reserved* mine = nullptr;
  int64_t new_chunks = 0;
  MSA_RETURN_IF_ERROR(check_add_batch_locked(docs, pooled, res, &mine, &new_chunks));
  if (docs.empty()) return Status::Ok();
  std::vector<EncodedPages> enc;
  MSA_RETURN_IF_ERROR(encode_batch(pooled, new_chunks, &enc));
  MSA_RETURN_IF_ERROR(reserve_capacity_locked(docs.size(), new_chunks));
  MSA_RETURN_IF_ERROR(index_ids_locked(docs));
  // Attached: commit to disk first. The new documents keep their pages in RAM; the segment is read after a reopen.
  if (!path_.empty()) {
    const Status st = commit_segment_locked(docs, pooled, enc);
    if (!st.ok()) {
      for (const DocumentRecord& d : docs) by_id_.erase(d.id);  // nothing was committed: undo the id map
      return st;
    }
  }
  if (mine != nullptr) consume_reservation_locked(res);
  append_locked(docs, pooled, enc);
  bump_version_locked(Change::kAppend);
  return Status::Ok();
}

// ---------------------------------------------------------------- validate (nothing changes on error)

Status MemoryBank::check_add_batch_locked(const std::vector<DocumentRecord>& docs,
                                          const std::vector<PooledDocument>& pooled, const IdReservation* res,
                                          const Reserved** mine, int64_t* new_chunks) const {
  if (docs.size() != pooled.size()) {
    return Error(StatusCode::kInvalidArgument, "memory add: ", docs.size(), " document records but ",
                 pooled.size(), " pooled documents");
  }
  MSA_RETURN_IF_ERROR(find_reservation_locked(res, docs.size(), mine));
  const int64_t held_by_mine = *mine ? static_cast<int64_t>((*mine)->size()) : 0;
  MSA_RETURN_IF_ERROR(check_bank_limit(n_documents() + n_reserved_ - held_by_mine, docs.size(), "memory add"));
  const int64_t pool = config_.msa.pooling_kernel_size;
  if (pool < 1) {
    return Error(StatusCode::kInvalidArgument, "memory add: the bank's pooling_kernel_size is ", pool);
  }
  // chunk_doc stores the DocStore index as int32_t.
  if (docs.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()) - docs_.size()) {
    return Error(StatusCode::kInvalidArgument, "memory add: more than 2^31 - 1 documents in one bank");
  }
  std::unordered_set<uint64_t> batch_ids;
  batch_ids.reserve(docs.size());
  *new_chunks = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    MSA_RETURN_IF_ERROR(check_new_id_locked(i, docs[i].id, *mine, &batch_ids));
    MSA_RETURN_IF_ERROR(check_pooled_document(i, docs[i], pooled[i], pool, n_router_layers(), width_));
    *new_chunks += pooled[i].n_chunks;
  }
  return Status::Ok();
}

Status MemoryBank::find_reservation_locked(const IdReservation* res, size_t n_docs, const Reserved** mine) const {
  *mine = nullptr;
  if (res == nullptr) return Status::Ok();
  auto it = res->bank_ == this ? reserved_.find(res->token_) : reserved_.end();
  if (it == reserved_.end()) {
    return Error(StatusCode::kInvalidArgument, "memory add: the id reservation is not active for this bank");
  }
  if (it->second.size() != n_docs) {
    return Error(StatusCode::kInvalidArgument, "memory add: ", n_docs, " documents for ", it->second.size(),
                 " reserved ids");
  }
  *mine = &it->second;
  return Status::Ok();
}

Status MemoryBank::check_new_id_locked(size_t i, uint64_t id, const Reserved* mine,
                                       std::unordered_set<uint64_t>* batch_ids) const {
  if (id == std::numeric_limits<uint64_t>::max()) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i,
                 ": id 18446744073709551615 (UINT64_MAX) is reserved");
  }
  if (by_id_.count(id) != 0) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", id, " is already in the bank");
  }
  if (removed_ids_.count(id) != 0) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", id,
                 " was removed; compact the bank before reusing it");
  }
  if (!batch_ids->insert(id).second) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", id, " appears twice in the batch");
  }
  if (mine != nullptr) {
    if (!mine->holds(id)) {
      return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", id,
                   " is not one of the reserved ids");
    }
  } else if (reserved_by(id) != 0) {
    return Error(StatusCode::kInvalidArgument, "memory add: document ", i, ": id ", id,
                 " is taken by another add in progress");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- encode the pages into the bank's dtype

// One router layer of a batch in the bank's dtype: rows [new_chunks, row_bytes] (all dtypes, f32 included: for
// the segment) and int8 scales [new_chunks, n_kv_heads].
struct MemoryBank::EncodedPages {
  std::vector<uint8_t> rk, k, v;
  std::vector<float> rks, ks, vs;
};

Status MemoryBank::encode_batch(const std::vector<PooledDocument>& pooled, int64_t new_chunks,
                                std::vector<EncodedPages>* enc) const {
  const int n_layers = n_router_layers();
  const int64_t heads = config_.num_key_value_heads, hd = config_.head_dim;
  const size_t row_bytes = page_row_bytes(dtype_, width_);
  const int64_t n_scales = page_row_scales(dtype_, heads);
  const bool need_enc = dtype_ != PageDType::kF32 || !path_.empty();  // f32 in RAM only: stored as given
  try {
    enc->assign(static_cast<size_t>(n_layers), EncodedPages());
    for (int l = 0; l < n_layers && need_enc; ++l) {
      EncodedPages& e = (*enc)[static_cast<size_t>(l)];
      e.rk.resize(static_cast<size_t>(new_chunks) * row_bytes);
      e.k.resize(e.rk.size());
      e.v.resize(e.rk.size());
      e.rks.resize(static_cast<size_t>(new_chunks * n_scales));
      e.ks.resize(e.rks.size());
      e.vs.resize(e.rks.size());
      int64_t at = 0;
      for (const PooledDocument& p : pooled) {
        const size_t s = static_cast<size_t>(l);
        const size_t ob = static_cast<size_t>(at) * row_bytes, os = static_cast<size_t>(at * n_scales);
        encode_rows(dtype_, p.rk[s].data(), p.n_chunks, heads, hd, e.rk.data() + ob, e.rks.data() + os);
        encode_rows(dtype_, p.k[s].data(), p.n_chunks, heads, hd, e.k.data() + ob, e.ks.data() + os);
        encode_rows(dtype_, p.v[s].data(), p.n_chunks, heads, hd, e.v.data() + ob, e.vs.data() + os);
        at += p.n_chunks;
      }
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory encoding ", new_chunks, " chunks");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- reserve (may fail; contents unchanged)

Status MemoryBank::reserve_capacity_locked(size_t n_docs, int64_t new_chunks) {
  const size_t row_bytes = page_row_bytes(dtype_, width_);
  const size_t n_scales = static_cast<size_t>(page_row_scales(dtype_, config_.num_key_value_heads));
  const int64_t old_chunks = routing_.empty() ? 0 : routing_[0].n_chunks();
  const size_t total_chunks = static_cast<size_t>(old_chunks + new_chunks);
  const size_t total_floats = total_chunks * static_cast<size_t>(width_);
  const size_t ram_total = static_cast<size_t>(ram_chunks_ + new_chunks);
  try {
    docs_.reserve(docs_.size() + n_docs);
    src_.reserve(src_.size() + n_docs);
    by_id_.reserve(by_id_.size() + n_docs);
    for (size_t l = 0; l < routing_.size(); ++l) {
      RoutingIndex& ri = routing_[l];
      ContentPages& cp = content_[l];
      ri.chunk_doc.reserve(total_chunks);
      if (dtype_ == PageDType::kF32) {
        ri.keys.reserve(total_floats);
        cp.k.reserve(ram_total * static_cast<size_t>(width_));
        cp.v.reserve(ram_total * static_cast<size_t>(width_));
      } else {
        ri.packed.reserve(total_chunks * row_bytes);
        ri.scales.reserve(total_chunks * n_scales);
        cp.qk.reserve(ram_total * row_bytes);
        cp.qv.reserve(ram_total * row_bytes);
        cp.k_scales.reserve(ram_total * n_scales);
        cp.v_scales.reserve(ram_total * n_scales);
      }
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory reserving ", new_chunks, " chunks");
  } catch (const std::length_error&) {
    return Error(StatusCode::kOutOfMemory, "memory add: ", total_chunks, " chunks exceed the vector limit");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- id map (the one step that allocates)

Status MemoryBank::index_ids_locked(const std::vector<DocumentRecord>& docs) {
  const int64_t old_docs = n_documents();
  size_t inserted = 0;
  try {
    for (size_t i = 0; i < docs.size(); ++i, ++inserted) {
      by_id_.emplace(docs[i].id, old_docs + static_cast<int64_t>(i));
    }
  } catch (const std::bad_alloc&) {
    for (size_t i = 0; i < inserted; ++i) by_id_.erase(docs[i].id);
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory indexing document ids");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- commit to disk first (attached banks)

Status MemoryBank::commit_segment_locked(const std::vector<DocumentRecord>& docs,
                                         const std::vector<PooledDocument>& pooled,
                                         const std::vector<EncodedPages>& enc) {
  try {
    MSA_RETURN_IF_ERROR(begin_write_locked("memory add"));
    std::lock_guard<std::mutex> committing(dir_->commit_mutex());
    MSA_RETURN_IF_ERROR(check_unchanged_locked("memory add"));
    const uint64_t gen = generation_ + 1;
    const size_t row_bytes = page_row_bytes(dtype_, width_);
    const int64_t n_scales = page_row_scales(dtype_, config_.num_key_value_heads);
    bankfmt::SegmentSource src;
    src.dtype = dtype_;
    src.n_kv_heads = config_.num_key_value_heads;
    src.head_dim = config_.head_dim;
    src.pooling = config_.msa.pooling_kernel_size;
    src.n_router_layers = n_router_layers();
    for (size_t i = 0; i < docs.size(); ++i) {
      bankfmt::SegmentDocIn in;
      in.id = docs[i].id;
      in.n_tokens = static_cast<uint64_t>(docs[i].n_tokens);
      in.n_chunks = static_cast<uint64_t>(pooled[i].n_chunks);
      in.text = docs[i].text;
      src.docs.push_back(in);
    }
    std::vector<int64_t> first(docs.size() + 1, 0);
    for (size_t i = 0; i < docs.size(); ++i) first[i + 1] = first[i] + pooled[i].n_chunks;
    src.routing = [&](int l, std::vector<uint8_t>* rows, std::vector<float>* scales) {
      *rows = enc[static_cast<size_t>(l)].rk;
      *scales = enc[static_cast<size_t>(l)].rks;
      return Status::Ok();
    };
    src.content = [&](int l, size_t i, bankfmt::FrameIn* f) {
      const EncodedPages& e = enc[static_cast<size_t>(l)];
      const size_t b0 = static_cast<size_t>(first[i]) * row_bytes, b1 = static_cast<size_t>(first[i + 1]) * row_bytes;
      const size_t s0 = static_cast<size_t>(first[i] * n_scales), s1 = static_cast<size_t>(first[i + 1] * n_scales);
      f->raw.clear();
      auto put = [&](const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        f->raw.insert(f->raw.end(), b, b + n);
      };
      put(e.k.data() + b0, b1 - b0);
      put(e.ks.data() + s0, (s1 - s0) * sizeof(float));
      put(e.v.data() + b0, b1 - b0);
      put(e.vs.data() + s0, (s1 - s0) * sizeof(float));
      return Status::Ok();
    };
    const std::string name = bankfmt::new_segment_name(gen);
    bankfmt::SegmentRef ref;
    MSA_RETURN_IF_ERROR(bankfmt::write_segment(path_ + "/" + name, gen, src, &ref, nullptr));
    ref.name = name;
    std::vector<bankfmt::SegmentRef> segs = seg_refs_;
    segs.push_back(ref);
    std::vector<uint64_t> tomb(removed_ids_.begin(), removed_ids_.end());
    std::sort(tomb.begin(), tomb.end());
    const Status st = commit_manifest_locked(std::move(segs), std::move(tomb));
    if (!st.ok()) bankfmt::discard_uncommitted_segment(path_, name);  // not committed: give its space back now
    return st;
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "memory add: out of memory writing the new segment to ", path_);
  }
}

// ---------------------------------------------------------------- consume the reservation, append

// The reservation becomes the documents (no allocation: erase only).
void MemoryBank::consume_reservation_locked(IdReservation* res) {
  auto it = reserved_.find(res->token_);
  n_reserved_ -= static_cast<int64_t>(it->second.size());
  reserved_.erase(it);
  res->bank_ = nullptr;
  res->token_ = 0;
}

// No allocation past reserve_capacity_locked: cannot fail.
void MemoryBank::append_locked(std::vector<DocumentRecord>& docs, const std::vector<PooledDocument>& pooled,
                               const std::vector<EncodedPages>& enc) {
  const int64_t old_docs = n_documents();
  int64_t chunk = routing_.empty() ? 0 : routing_[0].n_chunks();
  for (size_t s = 0; s < routing_.size(); ++s) {
    RoutingIndex& ri = routing_[s];
    ContentPages& cp = content_[s];
    const EncodedPages& e = enc[s];
    if (dtype_ == PageDType::kF32) {
      for (const PooledDocument& p : pooled) {
        ri.keys.insert(ri.keys.end(), p.rk[s].begin(), p.rk[s].end());
        cp.k.insert(cp.k.end(), p.k[s].begin(), p.k[s].end());
        cp.v.insert(cp.v.end(), p.v[s].begin(), p.v[s].end());
      }
    } else {
      ri.packed.insert(ri.packed.end(), e.rk.begin(), e.rk.end());
      ri.scales.insert(ri.scales.end(), e.rks.begin(), e.rks.end());
      cp.qk.insert(cp.qk.end(), e.k.begin(), e.k.end());
      cp.qv.insert(cp.qv.end(), e.v.begin(), e.v.end());
      cp.k_scales.insert(cp.k_scales.end(), e.ks.begin(), e.ks.end());
      cp.v_scales.insert(cp.v_scales.end(), e.vs.begin(), e.vs.end());
    }
  }
  for (size_t i = 0; i < docs.size(); ++i) {
    DocumentRecord& d = docs[i];
    const int64_t n_chunks = pooled[i].n_chunks;
    const int32_t doc_index = static_cast<int32_t>(old_docs + static_cast<int64_t>(i));
    for (RoutingIndex& ri : routing_) ri.chunk_doc.insert(ri.chunk_doc.end(), static_cast<size_t>(n_chunks), doc_index);
    DocSource ds;
    ds.ram_chunk = ram_chunks_;
    ram_chunks_ += n_chunks;
    src_.push_back(ds);
    d.chunk_begin = chunk;
    d.n_chunks = n_chunks;
    d.removed = false;
    chunk += n_chunks;
    if (d.id >= next_id_) next_id_ = d.id + 1;  // id < UINT64_MAX was checked: no wrap
    docs_.push_back(std::move(d));
  }
}

MemoryStats MemoryBank::stats() const {
  MemoryStats s;
  s.n_documents = n_live_documents();
  s.n_removed = n_removed_;
  s.dtype = dtype_;
  s.n_chunks = routing_.empty() ? 0 : routing_[0].n_chunks();
  for (const DocumentRecord& d : docs_) {
    if (d.removed) continue;
    s.n_tokens += d.n_tokens;
    s.text_bytes += static_cast<int64_t>(d.text.size());
  }
  for (const RoutingIndex& r : routing_) s.routing_bytes += r.bytes();
  for (const ContentPages& c : content_) s.content_ram_bytes += c.bytes();
  for (const auto& seg : segments_) s.content_file_bytes += static_cast<int64_t>(seg->content_bytes());
  s.content_bytes = s.content_ram_bytes + s.content_file_bytes;
  for (size_t l = 0; l < template_k_.size(); ++l) {
    s.template_bytes += static_cast<int64_t>(template_k_[l].size() * sizeof(float));
  }
  for (size_t l = 0; l < template_v_.size(); ++l) {
    s.template_bytes += static_cast<int64_t>(template_v_[l].size() * sizeof(float));
  }
  return s;
}

Status check_bank_matches(const ModelConfig& m, const MemoryBank& bank) {
  const ModelConfig& b = bank.config();
  const int64_t width = m.num_key_value_heads * m.head_dim;
  if (b.num_hidden_layers != m.num_hidden_layers || bank.width() != width ||
      b.msa.router_layers != m.msa.router_layers || b.msa.pooling_kernel_size != m.msa.pooling_kernel_size ||
      b.num_attention_heads != m.num_attention_heads || b.head_dim != m.head_dim ||
      bank.n_router_layers() != static_cast<int>(m.msa.router_layers.size())) {
    return Error(StatusCode::kInvalidArgument, "the memory bank was built for another model shape (bank: ",
                 b.num_hidden_layers, " layers, width ", bank.width(), ", ", b.msa.router_layers.size(),
                 " router layers, pooling ", b.msa.pooling_kernel_size, "; model: ", m.num_hidden_layers,
                 " layers, width ", width, ", ", m.msa.router_layers.size(), " router layers, pooling ",
                 m.msa.pooling_kernel_size, ")");
  }
  for (int l = 0; l < static_cast<int>(m.num_hidden_layers); ++l) {
    if (static_cast<int64_t>(bank.template_k(l).size()) != bank.template_len() * width ||
        static_cast<int64_t>(bank.template_v(l).size()) != bank.template_len() * width) {
      return Error(StatusCode::kInvalidArgument, "the memory bank's template prefix of layer ", l,
                   " has the wrong size");
    }
  }
  return Status::Ok();
}

}  // namespace msa
