#include "engine/session.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/limits.h"
#include "engine/generate_run.h"
#include "engine/session_util.h"
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

}  // namespace

// Shared with GenerateRun (session_util.h).
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
  GenerateRun run(this, question, opt, res);  // the call's clock starts here
  return run.run();
}

}  // namespace msa
