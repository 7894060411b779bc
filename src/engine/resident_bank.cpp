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
  synced_ = false;
  const int64_t n = bank.n_documents();
  doc_ids_.resize(static_cast<size_t>(n));
  removed_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    doc_ids_[static_cast<size_t>(i)] = bank.document(i).id;
    removed_[static_cast<size_t>(i)] = bank.is_removed(i) ? 1 : 0;
  }
  routing_.clear();
  routing_.resize(static_cast<size_t>(bank.n_router_layers()));
  for (int s = 0; s < bank.n_router_layers(); ++s) {
    MSA_RETURN_IF_ERROR(be_->upload_routing_index(routing_view(bank, s, doc_ids_, removed_),
                                                  &routing_[static_cast<size_t>(s)]));
  }
  const size_t n_layers = static_cast<size_t>(bank.config().num_hidden_layers);
  tk_.resize(n_layers);
  tv_.resize(n_layers);
  for (size_t l = 0; l < n_layers; ++l) {
    const std::vector<float>& k = bank.template_k(static_cast<int>(l));
    const std::vector<float>& v = bank.template_v(static_cast<int>(l));
    MSA_RETURN_IF_ERROR(upload_vector(be_, k.data(), k.size(), &tk_[l]));
    MSA_RETURN_IF_ERROR(upload_vector(be_, v.data(), v.size(), &tv_[l]));
  }
  MSA_RETURN_IF_ERROR(be_->synchronize());
  bank_ = &bank;
  version_ = bank.version();
  synced_ = true;
  return Status::Ok();
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
