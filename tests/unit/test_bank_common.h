// Shared by the on-disk bank tests (test_bank_file.cpp, test_bank_lock.cpp): the document texts their banks are
// built from, the model fingerprint a bank is opened with (cached per model), and a hash of a bank's state.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/cpu/routing_scan.h"
#include "engine/resident_bank.h"
#include "memory/bank_fingerprint.h"
#include "memory/memory_bank.h"
#include "model/model.h"


// Routing rows [c0, c0 + n) of router slot `slot` decoded to f32 (the CPU scan's decode of the bank's index).
inline void decode_routing_rows(const msa::MemoryBank& b, int slot, int64_t c0, int64_t n, float* dst) {
  static const std::vector<uint64_t> no_ids;
  static const std::vector<uint8_t> no_flags;
  msa::decode_index_rows(msa::routing_view(b, slot, no_ids, no_flags), c0, n, dst);
}

namespace bank_test {

inline const std::vector<std::string> kTexts = {
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Mount Everest is the highest mountain above sea level, 8849 metres.",
    "The Great Wall of China is thousands of kilometres long.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Honey never spoils; archaeologists found edible honey in tombs.",
};

// model_fingerprint hashes tokenizer.json (11 MB): once per model (the test models are cached for the whole
// process, so their addresses are stable keys).
inline const msa::bankfmt::Fingerprint& fingerprint_of(const msa::Model& model) {
  static std::map<const msa::Model*, msa::bankfmt::Fingerprint> cache;
  auto it = cache.find(&model);
  if (it == cache.end()) it = cache.emplace(&model, msa::model_fingerprint(model)).first;
  return it->second;
}

// Everything observable about a bank (documents, tombstones, routing rows, decoded pages), or 0 when a page
// cannot be read. No Catch macros: also used in forked children.
inline uint64_t state_of(const msa::MemoryBank& b) {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  auto put = [&](const void* p, size_t n) { XXH64_update(st, p, n); };
  std::vector<float> rows, k, v;
  bool ok = true;
  for (int64_t i = 0; i < b.n_documents() && ok; ++i) {
    const msa::DocumentRecord& d = b.document(i);
    const uint8_t removed = d.removed ? 1 : 0;
    put(&d.id, 8);
    put(&removed, 1);
    put(d.text.data(), d.text.size());
    put(&d.n_tokens, 8);
    for (int l = 0; l < b.n_router_layers() && ok; ++l) {
      rows.resize(static_cast<size_t>(d.n_chunks * b.width()));
      decode_routing_rows(b, l, d.chunk_begin, d.n_chunks, rows.data());
      put(rows.data(), rows.size() * 4);
      k.resize(rows.size());
      v.resize(rows.size());
      ok = b.read_pages(l, i, k.data(), v.data()).ok();
      put(k.data(), k.size() * 4);
      put(v.data(), v.size() * 4);
    }
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return ok ? h : 0;
}

}  // namespace bank_test
