// ResidentBank: what of a MemoryBank lives on a backend — every router layer's routing index (the routing
// tier: device memory on a GPU; on the CPU backend the bank's host index itself, zero-copy) and the
// template-prefix K/V of every layer. Content pages are not resident: they stay in host RAM / mapped segment
// files and are staged per query (Session). One ResidentBank per (bank, backend); the sessions of one C API
// memory handle share it.
//
// sync() brings it up to date with the bank (MemoryBank::version()); call it under the bank's read lock.
// Thread-safe: concurrent sync() calls are serialised; since a bank only changes under its writer lock, the
// contents stay stable for as long as the caller holds the read lock after sync() returned.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "memory/memory_bank.h"

namespace msa {

class ResidentBank {
 public:
  explicit ResidentBank(Backend* backend) : be_(backend) {}
  ResidentBank(const ResidentBank&) = delete;
  ResidentBank& operator=(const ResidentBank&) = delete;

  // What the last sync() that changed something did.
  enum class SyncKind { kNone, kFull, kAppend };
  struct SyncStats {
    SyncKind kind = SyncKind::kNone;
    int64_t chunks_copied = 0;     // routing rows copied to the backend, all router layers together
    int64_t documents_copied = 0;  // document ids copied (the tombstone flags of every document always are)
  };

  Backend* backend() const { return be_; }
  // Brings the resident copy up to date with the bank when its version() moved. While the bank's
  // layout_version() is the one of the last sync (only add() and remove() happened since), only the appended
  // routing rows, the new documents' ids and the tombstone flags are copied (Backend::update_routing_index);
  // otherwise, or for a different bank than the last one, everything is uploaded again. A failed sync leaves
  // nothing usable behind: the next one uploads everything. Errors: the backend's (kOutOfMemory, device errors).
  Status sync(const MemoryBank& bank);
  SyncStats last_sync() const;

  const ResidentRoutingIndex& routing(int router_slot) const { return *routing_[static_cast<size_t>(router_slot)]; }
  // Template-prefix K/V of decoder layer `layer`, backend memory [template_len, width].
  const float* template_k(int layer) const { return tk_[static_cast<size_t>(layer)].as<float>(); }
  const float* template_v(int layer) const { return tv_[static_cast<size_t>(layer)].as<float>(); }
  // Bytes of backend memory held by the routing tier (0 on the CPU backend, which reads the bank in place).
  int64_t routing_device_bytes() const;

 private:
  Status sync_full(const MemoryBank& bank);
  Status sync_append(const MemoryBank& bank);
  void refresh_documents(const MemoryBank& bank);

  mutable std::mutex mu_;
  Backend* be_;
  const MemoryBank* bank_ = nullptr;
  uint64_t version_ = 0;
  uint64_t layout_version_ = 0;
  bool synced_ = false;
  SyncStats last_;
  std::vector<uint64_t> doc_ids_;  // host arrays the CPU backend's zero-copy index points into
  std::vector<uint8_t> removed_;
  std::vector<std::unique_ptr<ResidentRoutingIndex>> routing_;
  std::vector<DeviceBuffer> tk_, tv_;
};

// The host view of one router slot of `bank` (ids and removed: per-document arrays the view points into).
RoutingIndexView routing_view(const MemoryBank& bank, int router_slot, const std::vector<uint64_t>& ids,
                              const std::vector<uint8_t>& removed);

}  // namespace msa
