#include "engine/resident_bank.h"

namespace msa {

RoutingIndexView routing_view(const MemoryBank& bank, int slot, const std::vector<uint64_t>& ids,
                              const std::vector<uint8_t>& removed) {
  const RoutingIndex& ri = bank.routing(slot);
  const ModelConfig& c = bank.config();
  RoutingIndexView v;
  v.dtype = ri.dtype;
  v.n_chunks = ri.n_chunks();
  v.n_kv_heads = c.num_key_value_heads;
  v.head_dim = c.head_dim;
  v.keys = ri.keys.empty() ? nullptr : ri.keys.data();
  v.packed = ri.packed.empty() ? nullptr : ri.packed.data();
  v.scales = ri.scales.empty() ? nullptr : ri.scales.data();
  v.chunk_doc = ri.chunk_doc.empty() ? nullptr : ri.chunk_doc.data();
  v.n_documents = bank.n_documents();
  v.doc_ids = ids.empty() ? nullptr : ids.data();
  v.removed = removed.empty() ? nullptr : removed.data();
  return v;
}

Status ResidentBank::sync(const MemoryBank& bank) {
  std::lock_guard<std::mutex> lock(mu_);
  if (synced_ && bank_ == &bank && version_ == bank.version()) return Status::Ok();
  const bool append = synced_ && bank_ == &bank && layout_version_ == bank.layout_version() &&
                      bank.n_documents() >= static_cast<int64_t>(doc_ids_.size()) &&
                      routing_.size() == static_cast<size_t>(bank.n_router_layers());
  synced_ = false;  // until this sync succeeds
  MSA_RETURN_IF_ERROR(append ? sync_append(bank) : sync_full(bank));
  MSA_RETURN_IF_ERROR(be_->synchronize());
  bank_ = &bank;
  version_ = bank.version();
  layout_version_ = bank.layout_version();
  synced_ = true;
  return Status::Ok();
}

// The per-document arrays the routing views point into: ids (appended ones only change) and tombstones.
void ResidentBank::refresh_documents(const MemoryBank& bank) {
  const int64_t n = bank.n_documents();
  const size_t old = doc_ids_.size();
  doc_ids_.resize(static_cast<size_t>(n));
  removed_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<size_t>(i) >= old) doc_ids_[static_cast<size_t>(i)] = bank.document(i).id;
    removed_[static_cast<size_t>(i)] = bank.is_removed(i) ? 1 : 0;
  }
}

Status ResidentBank::sync_full(const MemoryBank& bank) {
  last_ = SyncStats();
  last_.kind = SyncKind::kFull;
  doc_ids_.clear();
  refresh_documents(bank);
  routing_.clear();
  routing_.resize(static_cast<size_t>(bank.n_router_layers()));
  for (int s = 0; s < bank.n_router_layers(); ++s) {
    MSA_RETURN_IF_ERROR(be_->upload_routing_index(routing_view(bank, s, doc_ids_, removed_),
                                                  &routing_[static_cast<size_t>(s)]));
    last_.chunks_copied += bank.routing(s).n_chunks();
  }
  last_.documents_copied = bank.n_documents();
  const size_t n_layers = static_cast<size_t>(bank.config().num_hidden_layers);
  tk_.resize(n_layers);
  tv_.resize(n_layers);
  for (size_t l = 0; l < n_layers; ++l) {
    const std::vector<float>& k = bank.template_k(static_cast<int>(l));
    const std::vector<float>& v = bank.template_v(static_cast<int>(l));
    MSA_RETURN_IF_ERROR(upload_vector(be_, k.data(), k.size(), &tk_[l]));
    MSA_RETURN_IF_ERROR(upload_vector(be_, v.data(), v.size(), &tv_[l]));
  }
  return Status::Ok();
}

// Only add() / remove() since the last sync: the template K/V are unchanged, every router layer's index grows.
Status ResidentBank::sync_append(const MemoryBank& bank) {
  last_ = SyncStats();
  last_.kind = SyncKind::kAppend;
  const int64_t old_docs = static_cast<int64_t>(doc_ids_.size());
  refresh_documents(bank);
  for (int s = 0; s < bank.n_router_layers(); ++s) {
    ResidentRoutingIndex* r = routing_[static_cast<size_t>(s)].get();
    const int64_t old_chunks = r->n_chunks();
    MSA_RETURN_IF_ERROR(be_->update_routing_index(routing_view(bank, s, doc_ids_, removed_), r));
    last_.chunks_copied += bank.routing(s).n_chunks() - old_chunks;
  }
  last_.documents_copied = bank.n_documents() - old_docs;
  return Status::Ok();
}

ResidentBank::SyncStats ResidentBank::last_sync() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

int64_t ResidentBank::routing_device_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t b = 0;
  for (const auto& r : routing_) {
    if (r) b += r->device_bytes();
  }
  return b;
}

}  // namespace msa
