// Encoder: stage 1 of MSA (spec §3.2, §4) — memory documents in, pooled K̄/V̄/K̄ᴿ per router layer out.
//
// * Formatting: document `text` with id `id` becomes "<|im_start|>[id]. text[id]<|im_end|>", tokenised with
//   add_special_tokens=False (special-token strings inside the text become their ids, as in HF).
// * Every document is encoded in isolation (its own causal attention, RoPE positions 0..len-1, spec §4.3).
//   For throughput several documents are packed into one forward call with one segment per document, up to a
//   token budget (EncoderOptions::batch_tokens; a longer document runs alone).
// * At every router layer (ModelConfig::msa.router_layers) the observer pools, per chunk of P =
//   pooling_kernel_size tokens of each document (last chunk partial): K̄ (keys after k_norm and RoPE), V̄, and
//   the routing keys K̄ᴿ = mean(router_k_proj(a)) (no norm, no RoPE) — or K̄ itself when decouple_router is
//   false. Routing keys are L2-normalised per (chunk, head) exactly when aux_loss_method == "INFONCE".
// * Pooling arithmetic (Part A): each chunk is summed on its own, sequentially in f32 in token order, then
//   divided by its token count in f32 (Backend::mean_pool). The forward's per-row outputs do not depend on the
//   batch composition (see encoder.cpp, "Batching independence"), so the memory of a document is bit-identical
//   however the documents were batched — and incremental adds or persistence never change old documents.
//   The reference instead pools by block-wide f32 prefix-sum differences (Q#4); the two differ at the ulp level
//   (a few f32 ulps of the chunk sums; invisible after the reference's own bf16 rounding in most elements).
//
// Thread-safety: an Encoder holds scratch (ForwardWorkspace) and is used by one thread at a time; the model is
// only read. add_documents reserves its ids in the bank (MemoryBank::reserve_ids) before encoding and adds with
// that reservation (writer lock, add()), so Encoders on several threads may add to one bank at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "memory/memory_bank.h"
#include "model/device_model.h"
#include "model/forward.h"
#include "model/model.h"

namespace msa {

// Backend buffers of one packed batch's pooled pages: per router slot, [chunks of the batch, width] each.
struct PoolBuffers {
  std::vector<DeviceBuffer> k, v, rk;
  DeviceBuffer rk_rows;  // router_k_proj(a) of the batch's tokens (decouple_router)
};

struct EncodeProgress {
  int64_t documents_done = 0;
  int64_t documents_total = 0;
  int64_t tokens_done = 0;   // formatted tokens encoded so far
  int64_t tokens_total = 0;
};

// Called after every packed forward call. Non-zero return cancels: the call returns kCancelled and nothing is
// added to the bank.
using EncodeProgressFn = std::function<int(const EncodeProgress&)>;

struct EncoderOptions {
  int64_t batch_tokens = 4096;  // token budget of one packed forward call (> 0)
  Backend* backend = nullptr;   // Encoder(const Model&) only: the backend to run on (null: one of its own from
                                // the registry's default)
  EncodeProgressFn progress;    // may be empty
};

// Stage-1 output for a list of documents, ready for MemoryBank::add.
struct EncodedDocuments {
  std::vector<DocumentRecord> records;  // id, text, n_tokens, n_chunks (chunk_begin is set by the bank)
  std::vector<PooledDocument> pooled;
};

// Formatted document text (spec §3.2) for a caller id (any uint64).
std::string format_memory_document(uint64_t id, std::string_view text);

// Template-prefix K/V of every layer (spec §4.6): [151644, 872, 198] at positions 0,1,2, run alone, keep_kv.
// k/v: one [3 * width] vector per decoder layer. Errors: kInvalidArgument (no tokenizer), forward errors.
Status compute_template_prefix(const DeviceModel& model, std::vector<std::vector<float>>* k,
                               std::vector<std::vector<float>>* v);

// A new, empty memory bank for `model` (its template prefix computed here, its fingerprint set from the model)
// holding pages in `dtype`. backend null: default.
// Errors: kInvalidArgument (no tokenizer, a checkpoint without router layers: see MemoryBank::create),
// forward errors.
Status create_memory_bank(const DeviceModel& model, std::unique_ptr<MemoryBank>* out,
                          PageDType dtype = PageDType::kF32);
// As above on `backend` (null: a backend of its own from the registry's default), weights prepared for the call.
Status create_memory_bank(const Model& model, Backend* backend, std::unique_ptr<MemoryBank>* out,
                          PageDType dtype = PageDType::kF32);

class Encoder {
 public:
  // Runs on dm's backend (options.backend is ignored); dm must outlive the encoder.
  explicit Encoder(const DeviceModel& dm, EncoderOptions options = EncoderOptions());
  // Convenience: binds `model` to options.backend (null: a backend of its own) for this encoder. A failure
  // to prepare the weights is reported by the first encode/add_documents.
  explicit Encoder(const Model& model, EncoderOptions options = EncoderOptions());
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  const EncoderOptions& options() const { return options_; }
  void set_options(EncoderOptions options) { options_ = std::move(options); }

  // Encodes `texts` with the given ids (ids.size() == texts.size(); the id is the number written into the
  // formatted document). Errors (nothing is returned on error):
  //   kInvalidArgument  empty list, an empty text (message names its index and id), ids.size() mismatch,
  //                     duplicate ids, batch_tokens <= 0, a model without tokenizer;
  //   kInvalidUtf8      a text that is not well-formed UTF-8 (index and id named);
  //   kContextOverflow  a formatted document longer than max_position_embeddings (limit, index and id named);
  //   kCancelled        the progress callback returned non-zero;
  //   forward / backend errors.
  Status encode(const std::vector<std::string_view>& texts, const std::vector<uint64_t>& ids,
                EncodedDocuments* out);

  // Encodes and adds to `bank` atomically: either every document is added or none (the bank is unchanged on
  // any error, including cancellation). ids: null → consecutive automatic ids from bank.next_id() (reserved
  // before encoding: concurrent adders get distinct ones); else one per text, none in the bank, removed or
  // reserved by another add in progress. assigned_ids (may be null) receives the ids used. Additional errors:
  // kInvalidArgument (bank built for another model shape, an id already in the bank), those of
  // MemoryBank::reserve_ids and MemoryBank::add (an attached bank: kBusy when another process writes the
  // directory or it changed on disk since the bank was opened, reported before encoding; kIo).
  Status add_documents(MemoryBank* bank, const std::vector<std::string_view>& texts,
                       const std::vector<uint64_t>* ids = nullptr, std::vector<uint64_t>* assigned_ids = nullptr);

 private:
  Status encode_batch(const std::vector<std::vector<int32_t>>& tokens, size_t first, size_t count,
                      EncodedDocuments* out);

  const Model& model_;
  std::unique_ptr<DeviceModel> owned_;
  const DeviceModel* dm_ = nullptr;
  Status init_ = Status::Ok();
  EncoderOptions options_;
  ForwardWorkspace workspace_;
  KVContext kv_;
  PoolBuffers pool_;
  std::vector<float> host_;
};

}  // namespace msa
