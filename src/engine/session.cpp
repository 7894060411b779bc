#include "engine/session.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "core/limits.h"
#include "core/thread_pool.h"
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
// document -> top-k (all on the backend, router.h) -> all chunks of the selected documents (ascending id, chunks
// in order) inserted after the template rows of the layer's prefix: their raw pages are staged by the bank into
// host staging memory in one call, uploaded in one transfer and decoded on the backend.
class RoutingObserver final : public ForwardObserver {
 public:
  RoutingObserver(const DeviceModel& dm, const MemoryBank* bank, const ResidentBank* resident, const int32_t* rows,
                  int64_t n_rows, int64_t doc_top_k, bool record_scores, SessionScratch* scratch)
      : dm_(dm), bank_(bank), resident_(resident), rows_(rows), n_rows_(n_rows), k_(doc_top_k),
        record_scores_(record_scores), scratch_(scratch) {
    const ModelConfig& c = dm.config();
    slot_of_layer_.assign(static_cast<size_t>(c.num_hidden_layers), -1);
    for (size_t s = 0; s < c.msa.router_layers.size(); ++s) {
      slot_of_layer_[static_cast<size_t>(c.msa.router_layers[s])] = static_cast<int>(s);
    }
  }

  std::vector<LayerRouting> routing;

  Status before_attention(const LayerActivations& act, LayerKV* kv) override {
    const int slot = slot_of_layer_[static_cast<size_t>(act.layer)];
    if (slot < 0) return Status::Ok();
    LayerRouting lr;
    lr.layer = act.layer;
    if (bank_ != nullptr && bank_->n_live_documents() > 0 && n_rows_ > 0) {
      MSA_RETURN_IF_ERROR(route_layer_and_inject(act, slot, kv, &lr));
    }
    routing.push_back(std::move(lr));
    return Status::Ok();
  }

 private:
  Status route_layer_and_inject(const LayerActivations& act, int slot, LayerKV* kv, LayerRouting* lr) {
    const ModelConfig& c = dm_.config();
    Backend* be = act.backend;
    const int64_t width = c.num_key_value_heads * c.head_dim;
    const LayerWeights& lw = dm_.weights().views().layers[static_cast<size_t>(act.layer)];
    RouteSelection rr;
    const int64_t k = std::min<int64_t>(k_, bank_->n_documents());
    MSA_RETURN_IF_ERROR(route_layer(be, c, lw, act.a, act.q, act.n_tokens, rows_, n_rows_, resident_->routing(slot),
                                    k, record_scores_, &scratch_->router, &rr));
    lr->top = std::move(rr.top);
    if (record_scores_) lr->scores = std::move(rr.scores);

    // Context order: ascending document id, every chunk of each document in order (spec §5.4, Part A).
    std::vector<ScoredDocument> by_id = lr->top;
    std::sort(by_id.begin(), by_id.end(),
              [](const ScoredDocument& a, const ScoredDocument& b) { return a.id < b.id; });
    std::vector<int64_t> docs;
    for (const ScoredDocument& s : by_id) docs.push_back(s.index);
    StagedPagesLayout layout;
    MSA_RETURN_IF_ERROR(bank_->staged_layout(docs.data(), docs.size(), &layout));
    if (layout.n_rows == 0) return Status::Ok();
    // Raw pages (the bank's dtype) -> staging (pinned on a GPU) -> one upload -> decoded on the backend.
    if (scratch_->staging.bytes() < layout.bytes) {
      MSA_RETURN_IF_ERROR(be->alloc_staging(layout.bytes + layout.bytes / 2, &scratch_->staging));
    }
    // The documents are verified and decompressed in parallel on the host: the backend's CPU threads, or the
    // process pool for a GPU backend (whose host threads are idle meanwhile).
    ThreadPool* pool = be->thread_pool() != nullptr ? be->thread_pool() : &ThreadPool::global();
    MSA_RETURN_IF_ERROR(bank_->stage_pages(slot, docs.data(), docs.size(), scratch_->staging.as<uint8_t>(),
                                           scratch_->staging.bytes(), &layout, pool));
    MSA_RETURN_IF_ERROR(be->ensure(&scratch_->raw, layout.bytes));
    // Not waited for: the staging buffer is written again only at the next router layer, after route()'s download.
    MSA_RETURN_IF_ERROR(be->upload_staged(scratch_->raw.data(), scratch_->staging.data(), layout.bytes));
    const size_t rows_bytes = static_cast<size_t>(layout.n_rows * width) * sizeof(float);
    MSA_RETURN_IF_ERROR(be->ensure(&scratch_->pages_k, rows_bytes));
    MSA_RETURN_IF_ERROR(be->ensure(&scratch_->pages_v, rows_bytes));
    const uint8_t* raw = scratch_->raw.as<uint8_t>();
    const bool i8 = layout.dtype == PageDType::kInt8;
    MSA_RETURN_IF_ERROR(be->decode_pages(layout.dtype, raw + layout.k_rows,
                                         i8 ? reinterpret_cast<const float*>(raw + layout.k_scales) : nullptr,
                                         layout.n_rows, c.num_key_value_heads, c.head_dim, scratch_->pages_k.as<float>()));
    MSA_RETURN_IF_ERROR(be->decode_pages(layout.dtype, raw + layout.v_rows,
                                         i8 ? reinterpret_cast<const float*>(raw + layout.v_scales) : nullptr,
                                         layout.n_rows, c.num_key_value_heads, c.head_dim, scratch_->pages_v.as<float>()));
    return kv->insert_prefix(bank_->template_len(), scratch_->pages_k.as<float>(), scratch_->pages_v.as<float>(),
                             layout.n_rows);
  }

  const DeviceModel& dm_;
  const MemoryBank* bank_;
  const ResidentBank* resident_;
  const int32_t* rows_;
  int64_t n_rows_;
  int64_t k_;
  bool record_scores_;
  SessionScratch* scratch_;
  std::vector<int> slot_of_layer_;
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

Session::Session(const DeviceModel& dm, const MemoryBank* bank, ResidentBank* resident)
    : model_(dm.model()), bank_(bank) {
  bind(&dm, resident);
}

Session::Session(const Model& model, const MemoryBank* bank, Backend* backend) : model_(model), bank_(bank) {
  init_ = DeviceModel::create(model, backend, &owned_dm_);
  if (init_.ok()) bind(owned_dm_.get(), nullptr);
}

void Session::bind(const DeviceModel* dm, ResidentBank* resident) {
  dm_ = dm;
  resident_ = resident;
  if (bank_ != nullptr && resident_ == nullptr) {
    owned_resident_ = std::make_unique<ResidentBank>(dm->backend());
    resident_ = owned_resident_.get();
  }
}

Session::~Session() = default;

Backend* Session::backend() const { return dm_ ? dm_->backend() : nullptr; }

Status Session::ensure_template() {
  if (!own_template_k_.empty()) return Status::Ok();
  std::vector<int32_t> head;
  MSA_RETURN_IF_ERROR(template_head_ids(model_, &head));
  std::vector<std::vector<float>> k, v;
  MSA_RETURN_IF_ERROR(compute_template_kv(dm_->weights(), head, &k, &v));
  std::vector<DeviceBuffer> dk(k.size()), dv(v.size());
  for (size_t l = 0; l < k.size(); ++l) {
    MSA_RETURN_IF_ERROR(upload_vector(backend(), k[l].data(), k[l].size(), &dk[l]));
    MSA_RETURN_IF_ERROR(upload_vector(backend(), v[l].data(), v[l].size(), &dv[l]));
  }
  own_template_k_ = std::move(dk);
  own_template_v_ = std::move(dv);
  return Status::Ok();
}

Status Session::prefill(const std::vector<int32_t>& ids, const std::vector<int32_t>& doc_ids, int64_t first_position,
                        int64_t doc_top_k, bool record_scores, bool stop_after_routing,
                        std::vector<LayerRouting>* routing, float* logits) {
  const ModelConfig& c = model_.config();
  Backend* be = backend();
  if (bank_) MSA_RETURN_IF_ERROR(resident_->sync(*bank_));  // under the caller's read lock
  kv_.init(c, be);
  for (size_t l = 0; l < kv_.layers.size(); ++l) {
    const int l_int = static_cast<int>(l);
    const float* tk = bank_ ? resident_->template_k(l_int) : own_template_k_[l].as<float>();
    const float* tv = bank_ ? resident_->template_v(l_int) : own_template_v_[l].as<float>();
    MSA_RETURN_IF_ERROR(kv_.layers[l].set_prefix(tk, tv, 3));
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  positions_.resize(ids.size());
  std::vector<int32_t> rows;
  for (int64_t i = 0; i < n; ++i) {
    positions_[static_cast<size_t>(i)] = static_cast<int32_t>(first_position + i);
    if (doc_ids[static_cast<size_t>(i)] == 0) rows.push_back(static_cast<int32_t>(i));
  }
  MSA_RETURN_IF_ERROR(upload_vector(be, rows.data(), rows.size(), &scratch_.rows));
  RoutingObserver obs(*dm_, bank_, resident_, scratch_.rows.as<int32_t>(), static_cast<int64_t>(rows.size()),
                      doc_top_k, record_scores, &scratch_);
  ForwardBatch b;
  b.tokens = ids.data();
  b.positions = positions_.data();
  b.n_tokens = n;
  ForwardOptions o;
  o.logits = stop_after_routing ? LogitsMode::kNone : LogitsMode::kLast;
  o.observer = &obs;
  o.keep_kv = !stop_after_routing;  // retrieval only: nothing decodes after it, keep the context consistent
  if (stop_after_routing && !c.msa.router_layers.empty()) {
    o.last_layer = c.msa.router_layers.back();
    o.stop_before_attention = true;  // the routing of the last router layer is all retrieval needs
  }
  MSA_RETURN_IF_ERROR(forward(dm_->weights(), b, &kv_, o, &workspace_, logits, stop_after_routing ? 0 : c.vocab_size));
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
  return forward(dm_->weights(), b, &kv_, o, &workspace_, logits, model_.config().vocab_size);
}

Status Session::route(std::string_view question, const RouteOptions& options, RouteResult* result) {
  if (result == nullptr) return Error(StatusCode::kInvalidArgument, "route: result is null");
  *result = RouteResult();
  MSA_RETURN_IF_ERROR(init_);
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
  if (!init_.ok()) {
    if (res) *res = GenerateResult();
    return init_;
  }
  GenerateRun run(this, question, opt, res);  // the call's clock starts here
  return run.run();
}

}  // namespace msa
