// GenerateRun: one Session::generate call (engine-internal; not part of the public headers). The call's state
// — options resolved once, the round's sequence and position, the sampler, the streaming decoder, the
// counters and the stop flag — lives in members, and each step of the protocol (session.h, interleave.h) is a
// method:
//
//   validate            arguments and options (before the bank lock)
//   prepare             bank shape, the first prompt and its context check, template K/V, sampler (under the lock)
//   start_round         prefill of the round's prompt with routing; the RoundRecord and first-round records
//   sample_one          the logits callback, the sampler, the EOS check, the token's text streamed
//   on_end_of_retrieve  interleave: "<End-of-Retrieve>" (or the length rule) -> question injection, answer stage
//   on_round_end        interleave: "<|object_ref_end|>" -> documents injection, the next round's prompt
//   decode_step         the single-token forward of the sampled token
//   finish              the decoder's tail, the transcript, the answer, the timings
//
// A step that ends the call records the StopReason (and, for a callback's cancel, the kCancelled status that
// finish returns) and sets done(); an error Status returned by a step is returned by run() at once, as is.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/status.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "tokenizer/tokenizer.h"

namespace msa {

class GenerateRun {
 public:
  // Starts the call's clock. `session` (a friend: prefill, step, ensure_template, its logits buffer) and the
  // arguments must outlive the run.
  GenerateRun(Session* session, std::string_view question, const GenerateOptions& opt, GenerateResult* res);
  GenerateRun(const GenerateRun&) = delete;
  GenerateRun& operator=(const GenerateRun&) = delete;

  // The whole call: Session::generate's result.
  Status run();

 private:
  Status validate();
  Status prepare();
  Status start_round(int round);
  Status decode_round();
  Status sample_one(int32_t* t);
  Status on_end_of_retrieve(int32_t t, bool* triggered);
  Status on_round_end(bool* ended);
  Status decode_step(int32_t t);
  Status finish();

  bool emit(const std::string& piece);  // appends a streamed piece to the texts; false when on_token cancels
  void cancel(const char* what);
  void stop(StopReason reason);
  bool done() const { return done_; }

  Session& s_;
  const std::string_view question_;
  const GenerateOptions& opt_;
  GenerateResult* const res_;
  const std::chrono::steady_clock::time_point t_start_;

  // Fixed by validate() / prepare().
  const Tokenizer* tok_ = nullptr;
  SamplingParams sp_;
  bool interleave_mode_ = false;
  int64_t first_ = 0;  // position of every round's first prompt token
  int64_t limit_ = 0;  // positions stay < limit_
  std::unordered_set<int32_t> eos_;
  int64_t vocab_ = 0;
  std::optional<Sampler> sampler_;
  std::optional<StreamingDecoder> dec_;

  // The call.
  Status status_ = Status::Ok();  // kCancelled once a callback cancels
  bool answer_stage_ = false;     // plain mode decodes the answer directly
  std::string answer_text_;       // text generated in the answer stage
  std::vector<int32_t> prompt_, doc_ids_;  // the current (then the next) round's prompt
  std::vector<int32_t> seq_;              // the current round's sequence (prompt + generated + injected)
  int64_t n_sampled_ = 0;
  bool done_ = false;

  // The current round.
  int round_ = 0;
  RoundRecord* rr_ = nullptr;
  int64_t pos_ = 0;
  int64_t round_sampled_ = 0;
};

}  // namespace msa
