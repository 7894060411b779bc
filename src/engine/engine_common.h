// Helpers shared by the Encoder and the Session (internal to engine/; not part of the public C++ API):
// per-head L2 normalisation of routing vectors, the template-prefix forward, bank/model compatibility, and a
// shared-lock guard for MemoryBank.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "memory/memory_bank.h"
#include "model/config.h"
#include "model/model.h"

namespace msa::engine_detail {

// x: [rows * heads, dim]. Every head vector v becomes v / max(||v||_2, 1e-12) (F.normalize semantics, spec §4.4).
// The squared norm is accumulated in double, in element order, then rounded to f32; the division is in f32.
// The result depends only on the vector itself (never on how rows were batched).
void l2_normalize_heads(float* x, int64_t n_vectors, int64_t dim);

// Template-prefix K/V of every layer (spec §4.6): the tokens `head` (Qwen3: [151644, 872, 198]) run alone at
// positions 0..n-1 through the whole model. k/v receive one [n * width] vector per layer.
// Errors: those of forward().
Status compute_template_kv(const Model& model, const std::vector<int32_t>& head, Backend* backend,
                           std::vector<std::vector<float>>* k, std::vector<std::vector<float>>* v);

// The template head ids the engine uses: chat_template_ids(tokenizer).head, which must be 3 tokens (the
// reference hard-codes 3, spec §3.5). Errors: kInvalidArgument (no tokenizer), kUnsupported (another length).
Status template_head_ids(const Model& model, std::vector<int32_t>* head);

// kInvalidArgument unless `bank` was built for a model of this shape (layers, width, router layers, P).
Status check_bank_matches(const ModelConfig& model, const MemoryBank& bank);

// Number of Unicode code points of a well-formed UTF-8 string (Python's len()).
int64_t utf8_length(std::string_view s);

// RAII reader lock on a MemoryBank (null: no-op).
class BankReadLock {
 public:
  explicit BankReadLock(const MemoryBank* bank) : bank_(bank) {
    if (bank_) bank_->lock_shared();
  }
  ~BankReadLock() {
    if (bank_) bank_->unlock_shared();
  }
  BankReadLock(const BankReadLock&) = delete;
  BankReadLock& operator=(const BankReadLock&) = delete;

 private:
  const MemoryBank* bank_;
};

}  // namespace msa::engine_detail
