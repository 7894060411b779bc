#include "engine/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <unordered_set>
#include <utility>

#include "core/limits.h"
#include "engine/template_prefix.h"
#include "memory/memory_bank.h"
#include "router/router.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace msa {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kNone: return "";
    case StopReason::kEos: return "eos";
    case StopReason::kMaxNewTokens: return "max_new_tokens";
    case StopReason::kContextLimit: return "context_limit";
    case StopReason::kMaxRounds: return "max_rounds";
    case StopReason::kCancelled: return "cancelled";
    case StopReason::kAnswerInRound: return "answer";
  }
  return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Stage-2 routing at the router layers (spec §5.1-5.5): router queries of the routing rows -> scores of every
// document -> top-k -> all chunks of the selected documents (ascending id, chunks in order) inserted after the
// template rows of the layer's prefix.
class RoutingObserver final : public ForwardObserver {
 public:
  RoutingObserver(const Model& model, const MemoryBank* bank, const std::vector<int64_t>& rows, int64_t doc_top_k,
                  bool record_scores, bool stop_after_last)
      : model_(model), bank_(bank), rows_(rows), k_(doc_top_k), record_scores_(record_scores),
        stop_after_last_(stop_after_last) {
    const ModelConfig& c = model.config();
    slot_of_layer_.assign(static_cast<size_t>(c.num_hidden_layers), -1);
    for (size_t s = 0; s < c.msa.router_layers.size(); ++s) {
      slot_of_layer_[static_cast<size_t>(c.msa.router_layers[s])] = static_cast<int>(s);
    }
    last_router_layer_ = c.msa.router_layers.empty() ? -1 : c.msa.router_layers.back();
  }

  std::vector<LayerRouting> routing;
  bool finished() const { return finished_; }

  Status before_attention(const LayerActivations& act, LayerKV* kv) override {
    const int slot = slot_of_layer_[static_cast<size_t>(act.layer)];
    if (slot < 0) return Status::Ok();
    LayerRouting lr;
    lr.layer = act.layer;
    if (bank_ != nullptr && bank_->n_live_documents() > 0 && !rows_.empty()) {
      MSA_RETURN_IF_ERROR(route_layer(act, slot, kv, &lr));
    }
    routing.push_back(std::move(lr));
    if (stop_after_last_ && act.layer == last_router_layer_) {
      finished_ = true;
      return Status(StatusCode::kCancelled, "route: last router layer routed");  // sentinel, see prefill()
    }
    return Status::Ok();
  }

 private:
  Status route_layer(const LayerActivations& act, int slot, LayerKV* kv, LayerRouting* lr) {
    const ModelConfig& c = model_.config();
    const MsaConfig& m = c.msa;
    const int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads, d = c.head_dim;
    const int64_t qw = hq * d, width = hkv * d, hidden = c.hidden_size;
    const int64_t nr = static_cast<int64_t>(rows_.size());

    // Router queries Qr [nr, n_heads * head_dim].
    qr_.resize(static_cast<size_t>(nr * qw));
    if (m.decouple_router) {
      const TensorView& w = model_.weights().layers[static_cast<size_t>(act.layer)].router_q;
      if (w.empty()) return Error(StatusCode::kMissingTensor, "router layer ", act.layer, " has no router_q_proj");
      gathered_.resize(static_cast<size_t>(nr * hidden));
      for (int64_t i = 0; i < nr; ++i) {
        std::copy_n(act.a + rows_[static_cast<size_t>(i)] * hidden, hidden, gathered_.data() + i * hidden);
      }
      MSA_RETURN_IF_ERROR(act.backend->matmul(gathered_.data(), nr, w, qr_.data()));
    } else {
      for (int64_t i = 0; i < nr; ++i) {
        std::copy_n(act.q + rows_[static_cast<size_t>(i)] * qw, qw, qr_.data() + i * qw);
      }
    }
    if (m.normalize_routing()) l2_normalize_heads(qr_.data(), nr * hq, d);
    if (m.scale_routing()) {
      const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
      for (float& x : qr_) x *= scale;
    }

    RouterQuery q;
    q.q = qr_.data();
    q.n_tokens = nr;
    q.n_heads = hq;
    q.n_kv_heads = hkv;
    q.head_dim = d;
    RouterReductions red;
    red.head = m.head_reduce;
    red.query = m.query_reduce;
    red.chunk = m.chunk_reduce;
    std::vector<float> scores;
    RouterOptions ro;
    ro.pool = act.backend ? act.backend->thread_pool() : nullptr;
    MSA_RETURN_IF_ERROR(score_documents(q, bank_->routing(slot), bank_->n_documents(), red, &scores, ro));
    const int64_t k = std::min<int64_t>(k_, bank_->n_documents());
    MSA_RETURN_IF_ERROR(select_top_k(scores, *bank_, k, &lr->top));
    if (record_scores_) lr->scores = std::move(scores);

    // Context order: ascending document id, every chunk of each document in order (spec §5.4, Part A).
    std::vector<ScoredDocument> by_id = lr->top;
    std::sort(by_id.begin(), by_id.end(),
              [](const ScoredDocument& a, const ScoredDocument& b) { return a.id < b.id; });
    int64_t n_rows = 0;
    for (const ScoredDocument& s : by_id) n_rows += bank_->document(s.index).n_chunks;
    kbuf_.resize(static_cast<size_t>(n_rows * width));
    vbuf_.resize(static_cast<size_t>(n_rows * width));
    int64_t at = 0;
    for (const ScoredDocument& s : by_id) {
      // Decodes the document's pages (RAM or a mapped segment frame, checksum-verified) to f32.
      MSA_RETURN_IF_ERROR(bank_->read_pages(slot, s.index, kbuf_.data() + at * width, vbuf_.data() + at * width));
      at += bank_->document(s.index).n_chunks;
    }
    return kv->insert_prefix(bank_->template_len(), kbuf_.data(), vbuf_.data(), n_rows);
  }

  const Model& model_;
  const MemoryBank* bank_;
  const std::vector<int64_t>& rows_;
  int64_t k_;
  bool record_scores_;
  bool stop_after_last_;
  std::vector<int> slot_of_layer_;
  int last_router_layer_ = -1;
  bool finished_ = false;
  std::vector<float> qr_, gathered_, kbuf_, vbuf_;
};

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

Status check_common(const Model& model, std::string_view question, int64_t doc_top_k) {
  if (model.tokenizer() == nullptr) {
    return Error(StatusCode::kTokenizer, "the model was loaded without its tokenizer; generation needs it");
  }
  if (question.empty()) return Error(StatusCode::kInvalidArgument, "the question is empty");
  if (!tok::utf8_is_valid(question)) return Error(StatusCode::kInvalidUtf8, "the question is not valid UTF-8");
  if (doc_top_k <= 0) return Error(StatusCode::kInvalidArgument, "doc_top_k must be > 0, got ", doc_top_k);
  return Status::Ok();
}

// The prompt's token count against MSA_MAX_PROMPT_TOKENS (checked before any position or KV is sized from it).
Status check_prompt_tokens(const char* fn, size_t n) {
  if (static_cast<uint64_t>(n) > static_cast<uint64_t>(limits::kMaxPromptTokens)) {
    return Error(StatusCode::kContextOverflow, fn, ": the prompt is ", n, " tokens, more than MSA_MAX_PROMPT_TOKENS (",
                 limits::kMaxPromptTokens, ")");
  }
  return Status::Ok();
}

// True when the logits leave some token allowed: a value that is neither NaN nor -inf.
bool any_allowed(const float* logits, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isnan(logits[i]) && logits[i] != -std::numeric_limits<float>::infinity()) return true;
  }
  return false;
}

}  // namespace

Session::Session(const Model& model, const MemoryBank* bank, Backend* backend)
    : model_(model), bank_(bank), backend_(backend) {}

Status Session::ensure_template() {
  if (!own_template_k_.empty()) return Status::Ok();
  std::vector<int32_t> head;
  MSA_RETURN_IF_ERROR(template_head_ids(model_, &head));
  return compute_template_kv(model_, head, backend_, &own_template_k_, &own_template_v_);
}

Status Session::prefill(const std::vector<int32_t>& ids, const std::vector<int32_t>& doc_ids, int64_t first_position,
                        int64_t doc_top_k, bool record_scores, bool stop_after_routing,
                        std::vector<LayerRouting>* routing, float* logits) {
  const ModelConfig& c = model_.config();
  kv_.init(c);
  for (size_t l = 0; l < kv_.layers.size(); ++l) {
    const int l_int = static_cast<int>(l);
    const std::vector<float>& tk = bank_ ? bank_->template_k(l_int) : own_template_k_[l];
    const std::vector<float>& tv = bank_ ? bank_->template_v(l_int) : own_template_v_[l];
    MSA_RETURN_IF_ERROR(kv_.layers[l].set_prefix(tk.data(), tv.data(), 3));
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  positions_.resize(ids.size());
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i) {
    positions_[static_cast<size_t>(i)] = static_cast<int32_t>(first_position + i);
    if (doc_ids[static_cast<size_t>(i)] == 0) rows.push_back(i);
  }
  RoutingObserver obs(model_, bank_, rows, doc_top_k, record_scores, stop_after_routing);
  ForwardBatch b;
  b.tokens = ids.data();
  b.positions = positions_.data();
  b.n_tokens = n;
  ForwardOptions o;
  o.logits = stop_after_routing ? LogitsMode::kNone : LogitsMode::kLast;
  o.observer = &obs;
  o.keep_kv = true;
  o.backend = backend_;
  Status s = forward(model_.weights(), c, b, &kv_, o, &workspace_, logits, stop_after_routing ? 0 : c.vocab_size);
  if (!s.ok() && !(obs.finished() && s.code() == StatusCode::kCancelled)) return s;
  if (routing) *routing = std::move(obs.routing);
  return Status::Ok();
}

Status Session::step(const int32_t* ids, int64_t n, int64_t position, float* logits) {
  positions_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions_[static_cast<size_t>(i)] = static_cast<int32_t>(position + i);
  ForwardBatch b;
  b.tokens = ids;
  b.positions = positions_.data();
  b.n_tokens = n;
  b.causal = true;  // Part A: causal among the tokens of a multi-token injection
  ForwardOptions o;
  o.logits = LogitsMode::kLast;
  o.keep_kv = true;
  o.backend = backend_;
  return forward(model_.weights(), model_.config(), b, &kv_, o, &workspace_, logits, model_.config().vocab_size);
}

Status Session::route(std::string_view question, const RouteOptions& options, RouteResult* result) {
  if (result == nullptr) return Error(StatusCode::kInvalidArgument, "route: result is null");
  *result = RouteResult();
  MSA_RETURN_IF_ERROR(check_common(model_, question, options.doc_top_k));
  const ModelConfig& c = model_.config();
  // The lock first: the bank's shape (router layers, templates) is what compact()/add() rewrite.
  BankReadLock lock(bank_);
  if (bank_) MSA_RETURN_IF_ERROR(check_bank_matches(c, *bank_));
  std::vector<int32_t> ids, doc_ids;
  MSA_RETURN_IF_ERROR(encode_query(*model_.tokenizer(), question, &ids, &doc_ids));
  MSA_RETURN_IF_ERROR(check_prompt_tokens("route", ids.size()));
  const int64_t first = options.first_position >= 0 ? options.first_position : 3 + options.doc_top_k;
  const int64_t limit = c.max_position_embeddings > 0 ? std::min<int64_t>(c.max_position_embeddings, INT32_MAX)
                                                      : std::numeric_limits<int32_t>::max();
  if (first + static_cast<int64_t>(ids.size()) > limit) {
    return Error(StatusCode::kContextOverflow, "route: the prompt needs positions up to ",
                 first + static_cast<int64_t>(ids.size()) - 1, ", the context limit is ", limit);
  }
  result->prompt_tokens = static_cast<int64_t>(ids.size());
  result->routing_tokens = std::count(doc_ids.begin(), doc_ids.end(), 0);
  if (c.msa.router_layers.empty()) return Status::Ok();
  if (bank_ == nullptr || bank_->n_live_documents() == 0) {
    for (int l : c.msa.router_layers) result->layers.push_back(LayerRouting{l, {}, {}});
    return Status::Ok();
  }
  return prefill(ids, doc_ids, first, options.doc_top_k, options.record_scores, true, &result->layers, nullptr);
}

Status Session::generate(std::string_view question, const GenerateOptions& opt, GenerateResult* res) {
  const Clock::time_point t_start = Clock::now();
  if (res == nullptr) return Error(StatusCode::kInvalidArgument, "generate: result is null");
  *res = GenerateResult();
  MSA_RETURN_IF_ERROR(check_common(model_, question, opt.doc_top_k));
  if (opt.max_new_tokens <= 0) {
    return Error(StatusCode::kInvalidArgument, "generate: max_new_tokens must be > 0, got ", opt.max_new_tokens);
  }
  if (opt.max_rounds <= 0 || opt.max_rounds > limits::kMaxRounds) {
    return Error(StatusCode::kInvalidArgument, "generate: max_rounds must be in [1, MSA_MAX_ROUNDS = ",
                 limits::kMaxRounds, "], got ", opt.max_rounds);
  }
  if (opt.context_limit < 0) {
    return Error(StatusCode::kInvalidArgument, "generate: context_limit must be >= 0, got ", opt.context_limit);
  }
  const ModelConfig& c = model_.config();
  const SamplingParams sp = resolve_sampling(opt.sampling, c.generation);
  MSA_RETURN_IF_ERROR(validate_sampling(sp));
  const Tokenizer& tok = *model_.tokenizer();
  // The lock first: the bank's shape (router layers, templates) is what compact()/add() rewrite.
  BankReadLock lock(bank_);
  if (bank_) MSA_RETURN_IF_ERROR(check_bank_matches(c, *bank_));

  const bool interleave_mode = opt.mode == GenerateMode::kInterleave && bank_ != nullptr;
  const int64_t first = opt.first_position >= 0 ? opt.first_position : 3 + opt.doc_top_k;
  int64_t limit = opt.context_limit > 0 ? opt.context_limit : c.max_position_embeddings;
  if (limit <= 0 || limit > std::numeric_limits<int32_t>::max()) limit = std::numeric_limits<int32_t>::max();
  const std::vector<int32_t>& eos_list = c.generation.eos_token_ids.empty() ? c.eos_token_ids : c.generation.eos_token_ids;
  const std::unordered_set<int32_t> eos(eos_list.begin(), eos_list.end());

  std::vector<int32_t> prompt, doc_ids;
  MSA_RETURN_IF_ERROR(encode_query(tok, question, &prompt, &doc_ids));
  MSA_RETURN_IF_ERROR(check_prompt_tokens("generate", prompt.size()));
  if (first + static_cast<int64_t>(prompt.size()) > limit) {
    return Error(StatusCode::kContextOverflow, "generate: the prompt (", prompt.size(), " tokens from position ",
                 first, ") does not fit below the context limit ", limit);
  }
  if (!bank_) MSA_RETURN_IF_ERROR(ensure_template());

  Sampler sampler(sp);
  StreamingDecoder dec(tok);
  logits_.resize(static_cast<size_t>(c.vocab_size));
  const int64_t vocab = c.vocab_size;
  Status status = Status::Ok();
  bool answer_stage = !interleave_mode;  // plain mode decodes the answer directly
  std::string answer_text;               // text generated in the answer stage
  std::vector<int32_t> seq;              // the current round's sequence (prompt + generated + injected)
  int64_t n_sampled = 0;
  bool done = false;

  // Appends a streamed piece to the texts; false when the callback cancels.
  auto emit = [&](const std::string& piece, RoundRecord* rr) -> bool {
    if (piece.empty()) return true;
    res->generated_text += piece;
    if (rr) rr->generated_text += piece;
    if (answer_stage) answer_text += piece;
    return !(opt.on_token && opt.on_token(piece) != 0);
  };
  auto cancel = [&](const char* what) {
    res->stop = StopReason::kCancelled;
    status = Error(StatusCode::kCancelled, "generate: cancelled by the ", what, " callback");
    done = true;
  };

  for (int round = 1; !done; ++round) {
    res->rounds.emplace_back();
    RoundRecord* rr = &res->rounds.back();
    rr->round = round;
    rr->prompt_tokens = static_cast<int64_t>(prompt.size());
    rr->routing_tokens = std::count(doc_ids.begin(), doc_ids.end(), 0);

    const Clock::time_point tp = Clock::now();
    std::vector<LayerRouting> routing;
    Status s = prefill(prompt, doc_ids, first, opt.doc_top_k, opt.record_scores, false, &routing, logits_.data());
    if (!s.ok()) {
      res->rounds.pop_back();
      return s;
    }
    const double prefill_ms = ms_since(tp);
    res->timings.prefill_ms_total += prefill_ms;
    if (round == 1) {
      res->timings.prefill_ms = prefill_ms;
      res->timings.prompt_tokens = static_cast<int64_t>(prompt.size());
      if (opt.record_first_logits) res->first_logits.assign(logits_.begin(), logits_.end());
      res->routing = routing;
    }
    rr->routing = std::move(routing);

    seq = prompt;
    int64_t pos = first + static_cast<int64_t>(prompt.size());
    bool next_round = false;
    int64_t round_sampled = 0;
    while (!done && !next_round) {
      if (n_sampled >= opt.max_new_tokens) {
        res->stop = StopReason::kMaxNewTokens;
        done = true;
        break;
      }
      if (opt.on_logits) {
        LogitsStep ls;
        ls.round = round;
        ls.index = n_sampled;
        ls.round_index = round_sampled;
        ls.answer_stage = answer_stage;
        if (opt.on_logits(ls, logits_.data(), vocab) != 0) {
          cancel("logits");
          break;
        }
        if (!any_allowed(logits_.data(), vocab)) {
          return Error(StatusCode::kInvalidArgument, "generate: the logits callback produced no finite logit (round ",
                       round, ", step ", n_sampled, "): every one of the ", vocab,
                       " logits is NaN or -inf; it must leave at least one token allowed");
        }
      }
      const int32_t t = sampler.sample(logits_.data(), vocab);
      ++round_sampled;
      if (t < 0) return Error(StatusCode::kInternal, "generate: the model produced only NaN logits");
      res->generated_ids.push_back(t);
      if (++n_sampled == 1) res->timings.ttft_ms = ms_since(t_start);
      if (eos.count(t)) {
        res->stop = StopReason::kEos;
        done = true;
        break;
      }
      std::string piece;
      if (tok.is_valid_id(t)) MSA_RETURN_IF_ERROR(dec.push(t, &piece));  // else: no text (see decode_text)
      seq.push_back(t);
      if (!emit(piece, rr)) {
        cancel("token");
        break;
      }

      if (!answer_stage) {
        const bool eor = contains(rr->generated_text, interleave::kEndOfRetrieve);
        const bool too_long =
            opt.max_round_chars > 0 && tok::utf8_length(rr->generated_text) > opt.max_round_chars;
        if (eor || too_long) {
          // Stage 3: the question is re-stated (or, after the length rule alone, nothing is injected), then the
          // answer is decoded (stage 4). The token completing the marker is fed together with the injection.
          if (n_sampled >= opt.max_new_tokens) {
            res->stop = StopReason::kMaxNewTokens;
            done = true;
            break;
          }
          std::vector<int32_t> feed{t};
          if (eor) {
            std::string fed;
            MSA_RETURN_IF_ERROR(decode_text(tok, seq, &fed));
            MSA_RETURN_IF_ERROR(
                tok.encode(interleave::format_question_injection(interleave::extract_question(fed)), &feed));
          }
          if (pos + static_cast<int64_t>(feed.size()) > limit) {
            res->stop = StopReason::kContextLimit;
            done = true;
            break;
          }
          rr->question_injected = eor;
          seq.insert(seq.end(), feed.begin() + 1, feed.end());
          MSA_RETURN_IF_ERROR(step(feed.data(), static_cast<int64_t>(feed.size()), pos, logits_.data()));
          pos += static_cast<int64_t>(feed.size());
          answer_stage = true;
          continue;
        }
        if (contains(rr->generated_text, interleave::kRoundEnd)) {
          // End of a retrieval round: inject the documents named in it, then re-encode everything.
          std::vector<std::pair<uint64_t, std::string_view>> docs;
          for (uint64_t id : interleave::parse_document_ids(rr->generated_text)) {
            const int64_t idx = bank_->find(id);
            if (idx < 0) continue;
            docs.emplace_back(id, bank_->document(idx).text);
            rr->documents_read.push_back(id);
          }
          MSA_RETURN_IF_ERROR(tok.encode(interleave::format_documents_injection(docs), &seq));
          if (opt.on_round && opt.on_round(*rr) != 0) {
            cancel("round");
            break;
          }
          std::string transcript;
          MSA_RETURN_IF_ERROR(decode_text(tok, seq, &transcript));
          const std::string next = interleave::regenerate_prompt_text(transcript);
          if (!interleave::should_regenerate(next)) {
            res->stop = StopReason::kAnswerInRound;
            done = true;
            break;
          }
          if (n_sampled >= opt.max_new_tokens) {
            res->stop = StopReason::kMaxNewTokens;
            done = true;
            break;
          }
          if (round >= opt.max_rounds) {
            res->stop = StopReason::kMaxRounds;
            done = true;
            break;
          }
          MSA_RETURN_IF_ERROR(interleave::encode_regenerate_prompt(tok, next, &prompt, &doc_ids));
          if (first + static_cast<int64_t>(prompt.size()) > limit) {
            res->stop = StopReason::kContextLimit;
            done = true;
            break;
          }
          next_round = true;
          break;
        }
      }

      if (n_sampled >= opt.max_new_tokens) {  // no forward for a token nothing will follow
        res->stop = StopReason::kMaxNewTokens;
        done = true;
        break;
      }
      if (pos >= limit) {
        res->stop = StopReason::kContextLimit;
        done = true;
        break;
      }
      const Clock::time_point td = Clock::now();
      MSA_RETURN_IF_ERROR(step(&t, 1, pos, logits_.data()));
      res->timings.decode_ms += ms_since(td);
      ++res->timings.decode_steps;
      ++pos;
    }
  }

  std::string tail;
  dec.flush(&tail);
  if (!tail.empty()) {
    res->generated_text += tail;
    if (!res->rounds.empty()) res->rounds.back().generated_text += tail;
    if (answer_stage) answer_text += tail;
    if (opt.on_token && status.ok() && opt.on_token(tail) != 0) cancel("token");
  }
  MSA_RETURN_IF_ERROR(decode_text(tok, seq, &res->transcript));
  res->answer = interleave_mode ? (answer_stage ? interleave::extract_answer(answer_text) : std::string())
                                : res->generated_text;
  res->timings.total_ms = ms_since(t_start);
  if (res->timings.decode_ms > 0) {
    res->timings.decode_tokens_per_s = 1000.0 * static_cast<double>(res->timings.decode_steps) / res->timings.decode_ms;
  }
  return status;
}

}  // namespace msa
