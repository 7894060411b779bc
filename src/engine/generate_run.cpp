#include "engine/generate_run.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/limits.h"
#include "engine/interleave.h"
#include "engine/session_util.h"
#include "memory/memory_bank.h"
#include "tokenizer/templates.h"
#include "tokenizer/utf8.h"

namespace msa {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Text of `ids`, special tokens kept. Ids without a token (the embedding's padding rows: the model has 151,936
// rows, the Qwen3 tokenizer 151,669 tokens) decode to nothing, as in Hugging Face `tokenizers`.
Status decode_text(const Tokenizer& tok, const std::vector<int32_t>& ids, std::string* out) {
  out->clear();
  std::vector<int32_t> valid;
  valid.reserve(ids.size());
  for (int32_t id : ids) {
    if (tok.is_valid_id(id)) valid.push_back(id);
  }
  return tok.decode(valid.data(), valid.size(), false, out);
}

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// True when the logits leave some token allowed: a value that is neither NaN nor -inf.
bool any_allowed(const float* logits, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isnan(logits[i]) && logits[i] != -std::numeric_limits<float>::infinity()) return true;
  }
  return false;
}

}  // namespace

GenerateRun::GenerateRun(Session* session, std::string_view question, const GenerateOptions& opt,
                         GenerateResult* res)
    : s_(*session), question_(question), opt_(opt), res_(res), t_start_(Clock::now()) {}

Status GenerateRun::run() {
  MSA_RETURN_IF_ERROR(validate());
  // The lock first: the bank's shape (router layers, templates) is what compact()/add() rewrite.
  BankReadLock lock(s_.bank_);
  MSA_RETURN_IF_ERROR(prepare());
  for (int round = 1; !done(); ++round) {
    MSA_RETURN_IF_ERROR(start_round(round));
    MSA_RETURN_IF_ERROR(decode_round());
  }
  return finish();
}

void GenerateRun::stop(StopReason reason) {
  res_->stop = reason;
  done_ = true;
}

void GenerateRun::cancel(const char* what) {
  res_->stop = StopReason::kCancelled;
  status_ = Error(StatusCode::kCancelled, "generate: cancelled by the ", what, " callback");
  done_ = true;
}

bool GenerateRun::emit(const std::string& piece) {
  if (piece.empty()) return true;
  res_->generated_text += piece;
  rr_->generated_text += piece;
  if (answer_stage_) answer_text_ += piece;
  return !(opt_.on_token && opt_.on_token(piece) != 0);
}

// The arguments and the options that need no bank.
Status GenerateRun::validate() {
  if (res_ == nullptr) return Error(StatusCode::kInvalidArgument, "generate: result is null");
  *res_ = GenerateResult();
  MSA_RETURN_IF_ERROR(check_common(s_.model_, question_, opt_.doc_top_k));
  if (opt_.max_new_tokens <= 0) {
    return Error(StatusCode::kInvalidArgument, "generate: max_new_tokens must be > 0, got ", opt_.max_new_tokens);
  }
  if (opt_.max_rounds <= 0 || opt_.max_rounds > limits::kMaxRounds) {
    return Error(StatusCode::kInvalidArgument, "generate: max_rounds must be in [1, MSA_MAX_ROUNDS = ",
                 limits::kMaxRounds, "], got ", opt_.max_rounds);
  }
  if (opt_.context_limit < 0) {
    return Error(StatusCode::kInvalidArgument, "generate: context_limit must be >= 0, got ", opt_.context_limit);
  }
  sp_ = resolve_sampling(opt_.sampling, s_.model_.config().generation);
  MSA_RETURN_IF_ERROR(validate_sampling(sp_));
  tok_ = s_.model_.tokenizer();
  return Status::Ok();
}

// Under the bank's lock: its shape, the first prompt against the limits, the template K/V of a bank-less session,
// the sampler and the streaming decoder.
Status GenerateRun::prepare() {
  const ModelConfig& c = s_.model_.config();
  if (s_.bank_) MSA_RETURN_IF_ERROR(check_bank_matches(c, *s_.bank_));

  interleave_mode_ = opt_.mode == GenerateMode::kInterleave && s_.bank_ != nullptr;
  first_ = opt_.first_position >= 0 ? opt_.first_position : 3 + opt_.doc_top_k;
  limit_ = opt_.context_limit > 0 ? opt_.context_limit : c.max_position_embeddings;
  if (limit_ <= 0 || limit_ > std::numeric_limits<int32_t>::max()) limit_ = std::numeric_limits<int32_t>::max();
  const std::vector<int32_t>& eos_list = c.generation.eos_token_ids.empty() ? c.eos_token_ids : c.generation.eos_token_ids;
  eos_.insert(eos_list.begin(), eos_list.end());

  MSA_RETURN_IF_ERROR(encode_query(*tok_, question_, &prompt_, &doc_ids_));
  MSA_RETURN_IF_ERROR(check_prompt_tokens("generate", prompt_.size()));
  if (first_ + static_cast<int64_t>(prompt_.size()) > limit_) {
    return Error(StatusCode::kContextOverflow, "generate: the prompt (", prompt_.size(), " tokens from position ",
                 first_, ") does not fit below the context limit ", limit_);
  }
  if (!s_.bank_) MSA_RETURN_IF_ERROR(s_.ensure_template());

  sampler_.emplace(sp_);
  dec_.emplace(*tok_);
  s_.logits_.resize(static_cast<size_t>(c.vocab_size));
  vocab_ = c.vocab_size;
  answer_stage_ = !interleave_mode_;  // plain mode decodes the answer directly
  return Status::Ok();
}

// Stage 2 of a round: the prompt's prefill with routing (its logits choose the round's first token) and the
// round's record; the first round's routing, prefill time and logits are the call's.
Status GenerateRun::start_round(int round) {
  round_ = round;
  res_->rounds.emplace_back();
  rr_ = &res_->rounds.back();
  rr_->round = round;
  rr_->prompt_tokens = static_cast<int64_t>(prompt_.size());
  rr_->routing_tokens = std::count(doc_ids_.begin(), doc_ids_.end(), 0);

  const Clock::time_point tp = Clock::now();
  std::vector<LayerRouting> routing;
  Status s = s_.prefill(prompt_, doc_ids_, first_, opt_.doc_top_k, opt_.record_scores, false, &routing,
                        s_.logits_.data());
  if (!s.ok()) {
    res_->rounds.pop_back();
    rr_ = nullptr;
    return s;
  }
  const double prefill_ms = ms_since(tp);
  res_->timings.prefill_ms_total += prefill_ms;
  if (round == 1) {
    res_->timings.prefill_ms = prefill_ms;
    res_->timings.prompt_tokens = static_cast<int64_t>(prompt_.size());
    if (opt_.record_first_logits) res_->first_logits.assign(s_.logits_.begin(), s_.logits_.end());
    res_->routing = routing;
  }
  rr_->routing = std::move(routing);

  seq_ = prompt_;
  pos_ = first_ + static_cast<int64_t>(prompt_.size());
  round_sampled_ = 0;
  return Status::Ok();
}

// Stage 3 of a round: sample, react to the protocol's markers, feed the token back; until the call stops
// (done()) or the round ends with the next round's prompt set.
Status GenerateRun::decode_round() {
  while (!done()) {
    int32_t t = -1;
    MSA_RETURN_IF_ERROR(sample_one(&t));
    if (done()) break;
    if (!answer_stage_) {
      bool triggered = false;
      MSA_RETURN_IF_ERROR(on_end_of_retrieve(t, &triggered));
      if (triggered) continue;  // stopped, or the answer stage goes on from the injection's logits
      bool ended = false;
      MSA_RETURN_IF_ERROR(on_round_end(&ended));
      if (ended) break;  // stopped, or the next round's prompt is set
    }
    MSA_RETURN_IF_ERROR(decode_step(t));
  }
  return Status::Ok();
}

// One token from the current logits: the logits callback, the sampler, the EOS check, the token's text streamed.
Status GenerateRun::sample_one(int32_t* t) {
  if (n_sampled_ >= opt_.max_new_tokens) {
    stop(StopReason::kMaxNewTokens);
    return Status::Ok();
  }
  if (opt_.on_logits) {
    LogitsStep ls;
    ls.round = round_;
    ls.index = n_sampled_;
    ls.round_index = round_sampled_;
    ls.answer_stage = answer_stage_;
    if (opt_.on_logits(ls, s_.logits_.data(), vocab_) != 0) {
      cancel("logits");
      return Status::Ok();
    }
    if (!any_allowed(s_.logits_.data(), vocab_)) {
      return Error(StatusCode::kInvalidArgument, "generate: the logits callback produced no finite logit (round ",
                   round_, ", step ", n_sampled_, "): every one of the ", vocab_,
                   " logits is NaN or -inf; it must leave at least one token allowed");
    }
  }
  *t = sampler_->sample(s_.logits_.data(), vocab_);
  ++round_sampled_;
  if (*t < 0) return Error(StatusCode::kInternal, "generate: the model produced only NaN logits");
  res_->generated_ids.push_back(*t);
  if (++n_sampled_ == 1) res_->timings.ttft_ms = ms_since(t_start_);
  if (eos_.count(*t)) {
    stop(StopReason::kEos);
    return Status::Ok();
  }
  std::string piece;
  if (tok_->is_valid_id(*t)) MSA_RETURN_IF_ERROR(dec_->push(*t, &piece));  // else: no text (see decode_text)
  seq_.push_back(*t);
  if (!emit(piece)) cancel("token");
  return Status::Ok();
}

// Interleave: the round's text holds "<End-of-Retrieve>" or is over max_round_chars (*triggered). Stage 3's
// question is re-stated (or, after the length rule alone, nothing is injected), then the answer is decoded
// (stage 4). The token completing the marker is fed together with the injection.
Status GenerateRun::on_end_of_retrieve(int32_t t, bool* triggered) {
  const bool eor = contains(rr_->generated_text, interleave::kEndOfRetrieve);
  const bool too_long = opt_.max_round_chars > 0 && tok::utf8_length(rr_->generated_text) > opt_.max_round_chars;
  *triggered = eor || too_long;
  if (!*triggered) return Status::Ok();
  if (n_sampled_ >= opt_.max_new_tokens) {
    stop(StopReason::kMaxNewTokens);
    return Status::Ok();
  }
  std::vector<int32_t> feed{t};
  if (eor) {
    std::string fed;
    MSA_RETURN_IF_ERROR(decode_text(*tok_, seq_, &fed));
    MSA_RETURN_IF_ERROR(
        tok_->encode(interleave::format_question_injection(interleave::extract_question(fed)), &feed));
  }
  if (pos_ + static_cast<int64_t>(feed.size()) > limit_) {
    stop(StopReason::kContextLimit);
    return Status::Ok();
  }
  rr_->question_injected = eor;
  seq_.insert(seq_.end(), feed.begin() + 1, feed.end());
  MSA_RETURN_IF_ERROR(s_.step(feed.data(), static_cast<int64_t>(feed.size()), pos_, s_.logits_.data()));
  pos_ += static_cast<int64_t>(feed.size());
  answer_stage_ = true;
  return Status::Ok();
}

// Interleave: the round's text holds "<|object_ref_end|>" (*ended): the documents named in it are injected, then
// everything is re-encoded as the next round's prompt — unless the call stops here.
Status GenerateRun::on_round_end(bool* ended) {
  *ended = contains(rr_->generated_text, interleave::kRoundEnd);
  if (!*ended) return Status::Ok();
  std::vector<std::pair<uint64_t, std::string_view>> docs;
  for (uint64_t id : interleave::parse_document_ids(rr_->generated_text)) {
    const int64_t idx = s_.bank_->find(id);
    if (idx < 0) continue;
    docs.emplace_back(id, s_.bank_->document(idx).text);
    rr_->documents_read.push_back(id);
  }
  MSA_RETURN_IF_ERROR(tok_->encode(interleave::format_documents_injection(docs), &seq_));
  if (opt_.on_round && opt_.on_round(*rr_) != 0) {
    cancel("round");
    return Status::Ok();
  }
  std::string transcript;
  MSA_RETURN_IF_ERROR(decode_text(*tok_, seq_, &transcript));
  const std::string next = interleave::regenerate_prompt_text(transcript);
  if (!interleave::should_regenerate(next)) {
    stop(StopReason::kAnswerInRound);
    return Status::Ok();
  }
  if (n_sampled_ >= opt_.max_new_tokens) {
    stop(StopReason::kMaxNewTokens);
    return Status::Ok();
  }
  if (round_ >= opt_.max_rounds) {
    stop(StopReason::kMaxRounds);
    return Status::Ok();
  }
  MSA_RETURN_IF_ERROR(interleave::encode_regenerate_prompt(*tok_, next, &prompt_, &doc_ids_));
  if (first_ + static_cast<int64_t>(prompt_.size()) > limit_) stop(StopReason::kContextLimit);
  return Status::Ok();
}

// The sampled token's single-token forward (its logits choose the next token).
Status GenerateRun::decode_step(int32_t t) {
  if (n_sampled_ >= opt_.max_new_tokens) {  // no forward for a token nothing will follow
    stop(StopReason::kMaxNewTokens);
    return Status::Ok();
  }
  if (pos_ >= limit_) {
    stop(StopReason::kContextLimit);
    return Status::Ok();
  }
  const Clock::time_point td = Clock::now();
  MSA_RETURN_IF_ERROR(s_.step(&t, 1, pos_, s_.logits_.data()));
  res_->timings.decode_ms += ms_since(td);
  ++res_->timings.decode_steps;
  ++pos_;
  return Status::Ok();
}

// The decoder's held-back tail, the transcript, the answer and the timings; the call's status (kCancelled when a
// callback cancelled).
Status GenerateRun::finish() {
  std::string tail;
  dec_->flush(&tail);
  if (!tail.empty()) {
    res_->generated_text += tail;
    if (!res_->rounds.empty()) res_->rounds.back().generated_text += tail;
    if (answer_stage_) answer_text_ += tail;
    if (opt_.on_token && status_.ok() && opt_.on_token(tail) != 0) cancel("token");
  }
  MSA_RETURN_IF_ERROR(decode_text(*tok_, seq_, &res_->transcript));
  res_->answer = interleave_mode_ ? (answer_stage_ ? interleave::extract_answer(answer_text_) : std::string())
                                  : res_->generated_text;
  res_->timings.total_ms = ms_since(t_start_);
  if (res_->timings.decode_ms > 0) {
    res_->timings.decode_tokens_per_s =
        1000.0 * static_cast<double>(res_->timings.decode_steps) / res_->timings.decode_ms;
  }
  return status_;
}

}  // namespace msa
