// Session: stages 2 and 3 of MSA — query prefill with routing, KV assembly, decoding — and the Memory
// Interleave driver (spec §3.3, §3.5, §5, §6; Part A).
//
// Stage 2 (prefill of one round's prompt):
//   * round 1 input = bpe(question block) + [151645, 198] + [151644] (templates.h encode_query); routing
//     tokens = the question-block tokens (doc_ids == 0); later rounds: interleave::encode_regenerate_prompt.
//   * positions first_position + i (default 3 + doc_top_k, spec §3.5 / Q#3).
//   * every layer's KV prefix = the bank's 3-row template K/V; at each router layer, before attention, the
//     router queries of the routing tokens (router_q_proj(a) with decouple_router, else the attention q after
//     q_norm + RoPE; L2-normalised per head when aux_loss_method == "INFONCE"; times head_dim^-0.5 unless
//     INFONCE with a decoupled router) are scored against the layer's routing index (router.h), the top
//     k = min(doc_top_k, n_documents) documents are taken, and ALL chunks of each, documents in ascending id,
//     chunks in order, are inserted after the template rows. Non-router layers keep [template; query].
//     The query's own rows are causal, so attention is bottom-right aligned (spec §5.5).
// Stage 3: one token per forward over the per-layer compact caches, positions continuing after the prompt;
//   Sampler (sampler.h); stop on the EOS ids of generation_config.json, max_new_tokens, the context limit.
// Without a bank (bank == nullptr) the session runs plain generation over [template; query]: the template K/V
//   are computed once per session from the model, nothing is routed, Memory Interleave is not available (the
//   mode falls back to kPlain).
//
// Thread-safety: a Session is used by one thread at a time (it owns its KV caches and scratch). The model and
// the bank are only read; the bank's shared lock is held for the whole generate()/route() call, so adding
// documents (writer lock) waits for it — callbacks must therefore not add documents to the same bank (that
// would deadlock).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "engine/interleave.h"
#include "engine/sampler.h"
#include "memory/memory_bank.h"
#include "engine/resident_bank.h"
#include "model/device_model.h"
#include "model/forward.h"
#include "model/model.h"
#include "router/router.h"

namespace msa {

enum class GenerateMode : int {
  kPlain = 0,       // stages 2 + 3 only: one prefill with routing, then decode to EOS / max_new_tokens
  kInterleave = 1,  // the Memory Interleave protocol (interleave.h)
};

enum class StopReason : int {
  kNone = 0,
  kEos = 1,            // an EOS id was sampled (not part of the text)
  kMaxNewTokens = 2,   // max_new_tokens tokens were sampled
  kContextLimit = 3,   // the next token would be at a position >= the context limit
  kMaxRounds = 4,      // interleave: round max_rounds ended with another "<|object_ref_end|>"
  kCancelled = 5,      // a callback returned non-zero (the call's status is kCancelled)
  kAnswerInRound = 6,  // interleave: a round ended while the transcript already held "The answer to the
                       // question is:" — the reference's outer loop stops there (should_regenerate)
};
// The one spelling of each reason, also the C API's (msa_result_stop_reason): "", "eos", "max_new_tokens",
// "context_limit", "max_rounds", "cancelled", "answer".
const char* stop_reason_name(StopReason r);

// Routing of one router layer for one prefill.
struct LayerRouting {
  int layer = 0;                     // decoder layer index
  std::vector<ScoredDocument> top;   // selected documents by (score desc, id asc); their chunks enter the context
  std::vector<float> scores;         // every document's score (DocStore index order); only when requested
};

struct RoundRecord {
  int round = 0;                        // 1-based
  int64_t prompt_tokens = 0;            // tokens prefilled for this round
  int64_t routing_tokens = 0;           // of which routing tokens (doc_ids == 0)
  std::vector<LayerRouting> routing;    // per router layer (top-k; scores with record_scores)
  std::string generated_text;           // what the model generated in this round
  std::vector<uint64_t> documents_read; // ids injected at the end of the round (sorted, present in the bank)
  bool question_injected = false;       // "<End-of-Retrieve>" seen: the question was injected, stage 4 follows
};

struct GenerateTimings {
  double prefill_ms = 0;         // first round's prefill (tokenisation excluded)
  double prefill_ms_total = 0;   // all prefills (re-encoded rounds included)
  double ttft_ms = 0;            // from the call's start to the first sampled token
  double decode_ms = 0;          // single-token decode steps (forward + sampling)
  int64_t decode_steps = 0;
  double decode_tokens_per_s = 0;  // decode_steps / decode_ms
  double total_ms = 0;
  int64_t prompt_tokens = 0;     // first round's prompt
};

using TokenCallback = std::function<int(std::string_view piece)>;       // non-zero: cancel
using RoundCallback = std::function<int(const RoundRecord& round)>;      // non-zero: cancel

// Where a sampling step is, for a LogitsCallback.
struct LogitsStep {
  int round = 1;              // 1-based interleave round (plain mode: 1)
  int64_t index = 0;          // tokens sampled before this one over the whole call
  int64_t round_index = 0;    // tokens sampled before this one in this round
  bool answer_stage = false;  // interleave: after the question restatement (plain mode: always true)
};
// Constrained decoding (a Hugging Face LogitsProcessor, a llama.cpp grammar): sees the logits of every
// sampling step before the sampler and may change them in place — -inf forbids a token; leaving a single
// finite logit forces it. Non-zero return cancels the call.
using LogitsCallback = std::function<int(const LogitsStep& step, float* logits, int64_t vocab)>;

struct GenerateOptions {
  GenerateMode mode = GenerateMode::kInterleave;
  int64_t doc_top_k = 16;          // k (> 0); k = min(doc_top_k, n_documents) documents per router layer
  int64_t first_position = -1;     // position of the first prompt token; < 0: 3 + doc_top_k
  int64_t max_new_tokens = 256;    // > 0; sampled tokens over the whole call (all rounds, EOS included)
  int64_t context_limit = 0;       // positions must stay < this; 0: max_position_embeddings (0 there: none)
  SamplingParams sampling;         // default: the checkpoint's generation_config.json (greedy without one)
  int max_rounds = 4;              // interleave: prefills (rounds) per call, > 0
  int64_t max_round_chars = interleave::kMaxRoundChars;  // reference's 1000-char rule; 0 disables
  TokenCallback on_token;          // streamed text of generated tokens (never split inside UTF-8)
  RoundCallback on_round;          // after every interleave round that injected documents
  LogitsCallback on_logits;        // constrained decoding (see LogitsCallback); empty: none
  bool record_scores = false;      // every document's score per router layer (LayerRouting::scores) of every
                                   // round (GenerateResult::routing and RoundRecord::routing)
  bool record_first_logits = false;  // GenerateResult::first_logits
};

struct GenerateResult {
  // Plain mode: everything generated (EOS excluded) == the concatenation of the streamed pieces.
  // Interleave mode: interleave::extract_answer of the text generated after the question injection (empty
  // when the protocol never reached it).
  std::string answer;
  std::string generated_text;        // every generated token's text, all rounds (== streamed pieces)
  std::string transcript;            // the last round's full sequence from the question block on, special tokens
                                     // kept (re-encoded rounds included), the final EOS excluded
  std::vector<int32_t> generated_ids;  // every sampled token, all rounds, a final EOS included
  std::vector<RoundRecord> rounds;   // interleave rounds (plain mode: one)
  std::vector<LayerRouting> routing; // first round, per router layer (scores when record_scores)
  std::vector<float> first_logits;   // logits [vocab] that chose the first token (when record_first_logits)
  StopReason stop = StopReason::kNone;
  GenerateTimings timings;
};

struct RouteOptions {
  int64_t doc_top_k = 16;
  int64_t first_position = -1;  // -1: 3 + doc_top_k
  bool record_scores = true;    // every document's score per router layer
};

struct RouteResult {
  std::vector<LayerRouting> layers;  // one per router layer, ascending layer index
  int64_t prompt_tokens = 0;
  int64_t routing_tokens = 0;
};

// Backend scratch of a session's routing: routing-row indices, router queries, staged and decoded pages.
struct SessionScratch {
  DeviceBuffer rows;      // int32 routing rows of the prompt
  RouterScratch router;
  DeviceBuffer staging;   // host staging (pinned on a GPU): raw pages of the selected documents
  DeviceBuffer raw;       // the same bytes on the backend
  DeviceBuffer pages_k, pages_v;  // decoded f32 rows
};

class Session {
 public:
  // Runs on dm's backend. bank may be null (plain generation, no routing). resident: the bank's resident part
  // on dm's backend, shared with other sessions (null: the session keeps its own). The model, bank and
  // resident bank must outlive the session.
  Session(const DeviceModel& dm, const MemoryBank* bank, ResidentBank* resident = nullptr);
  // Convenience: binds `model` to `backend` (null: a backend of its own from the registry's default) for this
  // session alone. A failure to prepare the weights is reported by the first generate()/route().
  Session(const Model& model, const MemoryBank* bank, Backend* backend = nullptr);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const { return model_; }
  Backend* backend() const;
  const MemoryBank* bank() const { return bank_; }

  // Answers `question`. Errors: kInvalidArgument (empty question, doc_top_k <= 0, max_new_tokens <= 0,
  // max_rounds outside [1, limits::kMaxRounds], bad sampling parameters, a bank of another model shape, an
  // on_logits callback that left no logit other than NaN / -inf), kTokenizer (a model without tokenizer),
  // kInvalidUtf8 (question), kContextOverflow (the first prompt is more than limits::kMaxPromptTokens tokens
  // or does not fit below the context limit), kCancelled (a callback asked to stop; `result` holds
  // everything up to that point), forward/router errors. The bank's shared lock is taken before the bank is
  // first read (its shape check included).
  Status generate(std::string_view question, const GenerateOptions& options, GenerateResult* result);

  // Retrieval only: stage 2 of round 1 up to the routing of the last router layer (no decoding). Errors: as
  // generate() for the shared parameters.
  Status route(std::string_view question, const RouteOptions& options, RouteResult* result);

 private:
  friend class GenerateRun;  // generate()'s steps (generate_run.h)

  Status prefill(const std::vector<int32_t>& ids, const std::vector<int32_t>& doc_ids, int64_t first_position,
                 int64_t doc_top_k, bool record_scores, bool stop_after_routing, std::vector<LayerRouting>* routing,
                 float* logits);
  // Runs on dm; a bank without a shared resident part gets one of the session's own.
  void bind(const DeviceModel* dm, ResidentBank* resident);
  Status ensure_template();
  Status step(const int32_t* ids, int64_t n, int64_t position, float* logits);

  const Model& model_;
  const MemoryBank* bank_;
  std::unique_ptr<DeviceModel> owned_dm_;
  const DeviceModel* dm_ = nullptr;
  Status init_ = Status::Ok();
  std::unique_ptr<ResidentBank> owned_resident_;
  ResidentBank* resident_ = nullptr;
  ForwardWorkspace workspace_;
  KVContext kv_;
  SessionScratch scratch_;
  std::vector<DeviceBuffer> own_template_k_, own_template_v_;  // no-bank sessions
  std::vector<float> logits_;
  std::vector<int32_t> positions_;
};

}  // namespace msa
