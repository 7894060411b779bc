#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

namespace msa {

// ------------------------------------------------------------------------------------------------ LayerKV

Status LayerKV::set_prefix(const float* k, const float* v, int64_t n) {
  if (n < 0 || (n > 0 && (k == nullptr || v == nullptr))) {
    return Error(StatusCode::kInvalidArgument, "LayerKV::set_prefix: bad rows (n = ", n, ")");
  }
  MSA_RETURN_IF_ERROR(erase_prefix(0, n_prefix_));
  return insert_prefix(0, k, v, n);
}

Status LayerKV::insert_prefix(int64_t at, const float* k, const float* v, int64_t n) {
  if (at < 0 || at > n_prefix_ || n < 0 || (n > 0 && (k == nullptr || v == nullptr))) {
    return Error(StatusCode::kInvalidArgument, "LayerKV::insert_prefix: at ", at, ", n ", n, " with ", n_prefix_,
                 " prefix rows");
  }
  const auto off = static_cast<std::ptrdiff_t>(at * width_);
  const auto len = static_cast<std::ptrdiff_t>(n * width_);
  k_.insert(k_.begin() + off, k, k + len);
  v_.insert(v_.begin() + off, v, v + len);
  n_prefix_ += n;
  return Status::Ok();
}

Status LayerKV::erase_prefix(int64_t at, int64_t n) {
  if (at < 0 || n < 0 || at + n > n_prefix_) {
    return Error(StatusCode::kInvalidArgument, "LayerKV::erase_prefix: rows [", at, ", ", at + n, ") of ",
                 n_prefix_, " prefix rows");
  }
  const auto off = static_cast<std::ptrdiff_t>(at * width_);
  const auto len = static_cast<std::ptrdiff_t>(n * width_);
  k_.erase(k_.begin() + off, k_.begin() + off + len);
  v_.erase(v_.begin() + off, v_.begin() + off + len);
  n_prefix_ -= n;
  return Status::Ok();
}

void LayerKV::append(const float* k, const float* v, int64_t n, const int32_t* seg) {
  if (n <= 0) return;
  const auto len = static_cast<std::ptrdiff_t>(n * width_);
  k_.insert(k_.end(), k, k + len);
  v_.insert(v_.end(), v, v + len);
  if (seg) {
    seg_.insert(seg_.end(), seg, seg + n);
  } else {
    seg_.insert(seg_.end(), static_cast<size_t>(n), 0);
  }
}

void LayerKV::truncate_cached(int64_t n) {
  if (n < 0 || n >= n_cached()) return;
  const auto rows = static_cast<size_t>(n_prefix_ + n);
  k_.resize(rows * static_cast<size_t>(width_));
  v_.resize(rows * static_cast<size_t>(width_));
  seg_.resize(static_cast<size_t>(n));
}

void LayerKV::clear() {
  k_.clear();
  v_.clear();
  seg_.clear();
  n_prefix_ = 0;
}

void KVContext::init(const ModelConfig& config) {
  layers.assign(static_cast<size_t>(config.num_hidden_layers), LayerKV(config.num_key_value_heads * config.head_dim));
}

void KVContext::truncate_cached(int64_t n) {
  for (LayerKV& l : layers) l.truncate_cached(n);
}

void KVContext::clear() {
  for (LayerKV& l : layers) l.clear();
}

Status ForwardObserver::before_attention(const LayerActivations&, LayerKV*) { return Status::Ok(); }
Status ForwardObserver::after_layer(int, const float*, int64_t) { return Status::Ok(); }

// ------------------------------------------------------------------------------------------------ helpers

namespace {

Status check_matrix(const TensorView& t, int64_t rows, int64_t cols, const std::string& name) {
  if (t.data == nullptr || t.ndim() != 2 || t.dim(0) != rows || t.dim(1) != cols) {
    return Error(StatusCode::kShape, "forward: weight ", name, " is ", shape_to_string(t.shape),
                 t.data ? "" : " (unbound)", ", expected [", rows, ", ", cols, "]");
  }
  return Status::Ok();
}

Status check_vector(const TensorView& t, int64_t n, const std::string& name) {
  if (t.data == nullptr || t.ndim() != 1 || t.dim(0) != n) {
    return Error(StatusCode::kShape, "forward: weight ", name, " is ", shape_to_string(t.shape),
                 t.data ? "" : " (unbound)", ", expected [", n, "]");
  }
  return Status::Ok();
}

// Every view the forward reads must match the config: the backend trusts weight shapes for the sizes of
// the activations it reads.
Status check_weights(const ModelWeights& w, const ModelConfig& c) {
  const int64_t hidden = c.hidden_size, qw = c.num_attention_heads * c.head_dim;
  const int64_t kvw = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  if (static_cast<int64_t>(w.layers.size()) != c.num_hidden_layers) {
    return Error(StatusCode::kShape, "forward: ", w.layers.size(), " bound layers, config has ",
                 c.num_hidden_layers);
  }
  MSA_RETURN_IF_ERROR(check_matrix(w.embed_tokens, c.vocab_size, hidden, "model.embed_tokens.weight"));
  MSA_RETURN_IF_ERROR(check_vector(w.final_norm, hidden, "model.norm.weight"));
  if (!w.lm_head.empty()) MSA_RETURN_IF_ERROR(check_matrix(w.lm_head, c.vocab_size, hidden, "lm_head.weight"));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    MSA_RETURN_IF_ERROR(check_vector(l.input_norm, hidden, p + "input_layernorm.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.q_proj, qw, hidden, p + "self_attn.q_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.k_proj, kvw, hidden, p + "self_attn.k_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.v_proj, kvw, hidden, p + "self_attn.v_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.o_proj, hidden, qw, p + "self_attn.o_proj.weight"));
    MSA_RETURN_IF_ERROR(check_vector(l.q_norm, c.head_dim, p + "self_attn.q_norm.weight"));
    MSA_RETURN_IF_ERROR(check_vector(l.k_norm, c.head_dim, p + "self_attn.k_norm.weight"));
    MSA_RETURN_IF_ERROR(check_vector(l.post_norm, hidden, p + "post_attention_layernorm.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.gate_proj, inter, hidden, p + "mlp.gate_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.up_proj, inter, hidden, p + "mlp.up_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.down_proj, hidden, inter, p + "mlp.down_proj.weight"));
  }
  return Status::Ok();
}

Status check_config(const ModelConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0) {
    return Error(StatusCode::kConfig, "forward: inconsistent model config (heads ", c.num_attention_heads,
                 ", kv heads ", c.num_key_value_heads, ", head_dim ", c.head_dim, ")");
  }
  return Status::Ok();
}

int64_t n_logit_rows(const ForwardBatch& batch, const ForwardOptions& options) {
  switch (options.logits) {
    case LogitsMode::kNone: return 0;
    case LogitsMode::kLast: return 1;
    case LogitsMode::kAll: return batch.n_tokens;
    case LogitsMode::kSelected: return options.n_logit_rows;
  }
  return 0;
}

}  // namespace

int64_t forward_logits_size(const ModelConfig& config, const ForwardBatch& batch, const ForwardOptions& options) {
  return n_logit_rows(batch, options) * config.vocab_size;
}

// ------------------------------------------------------------------------------------------------ forward

// One forward call: holds the references so the steps can be separate functions.
class ForwardRunner {
 public:
  ForwardRunner(const ModelWeights& w, const ModelConfig& c, const ForwardBatch& b, KVContext* kv,
                const ForwardOptions& o, ForwardWorkspace* ws)
      : w_(w), c_(c), b_(b), kv_(*kv), o_(o), ws_(*ws), be_(o.backend ? o.backend : default_backend()) {}

  Status validate(float* logits, int64_t logits_cap) const;
  Status run(float* logits);

 private:
  void prepare();
  Status layer(int l);
  Status mlp(const LayerWeights& lw);
  Status compute_logits(float* logits);

  const ModelWeights& w_;
  const ModelConfig& c_;
  const ForwardBatch& b_;
  KVContext& kv_;
  const ForwardOptions& o_;
  ForwardWorkspace& ws_;
  Backend* be_;
  int64_t n_ = 0;
  int64_t cached0_ = 0;  // cached rows before this call
  float eps_ = 0.0f;
};

Status ForwardRunner::validate(float* logits, int64_t logits_cap) const {
  const ForwardBatch& b = b_;
  if (b.n_tokens <= 0) return Error(StatusCode::kInvalidArgument, "forward: n_tokens must be > 0, got ", b.n_tokens);
  if (b.tokens == nullptr || b.positions == nullptr) {
    return Error(StatusCode::kInvalidArgument, "forward: tokens and positions are required");
  }
  MSA_RETURN_IF_ERROR(check_config(c_));
  for (int64_t i = 0; i < b.n_tokens; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= c_.vocab_size) {
      return Error(StatusCode::kInvalidArgument, "forward: token id ", b.tokens[i], " at index ", i,
                   " outside [0, ", c_.vocab_size, ")");
    }
  }
  MSA_RETURN_IF_ERROR(check_weights(w_, c_));
  const int64_t width = c_.num_key_value_heads * c_.head_dim;
  if (static_cast<int64_t>(kv_.layers.size()) != c_.num_hidden_layers) {
    return Error(StatusCode::kInvalidArgument, "forward: KV context has ", kv_.layers.size(), " layers, model has ",
                 c_.num_hidden_layers, " (call KVContext::init)");
  }
  for (size_t l = 0; l < kv_.layers.size(); ++l) {
    if (kv_.layers[l].width() != width) {
      return Error(StatusCode::kInvalidArgument, "forward: KV layer ", l, " has rows of ", kv_.layers[l].width(),
                   " floats, model needs ", width);
    }
    if (kv_.layers[l].n_cached() != kv_.layers[0].n_cached()) {
      return Error(StatusCode::kInvalidArgument, "forward: KV layer ", l, " caches ", kv_.layers[l].n_cached(),
                   " rows, layer 0 caches ", kv_.layers[0].n_cached());
    }
  }
  if (o_.logits == LogitsMode::kSelected) {
    if (o_.n_logit_rows <= 0 || o_.logit_rows == nullptr) {
      return Error(StatusCode::kInvalidArgument, "forward: kSelected needs logit_rows");
    }
    for (int64_t i = 0; i < o_.n_logit_rows; ++i) {
      if (o_.logit_rows[i] < 0 || o_.logit_rows[i] >= b.n_tokens) {
        return Error(StatusCode::kInvalidArgument, "forward: logit row ", o_.logit_rows[i], " outside [0, ",
                     b.n_tokens, ")");
      }
    }
  }
  const int64_t need = forward_logits_size(c_, b, o_);
  if (need > 0 && logits == nullptr) return Error(StatusCode::kInvalidArgument, "forward: logits buffer is null");
  if (need > logits_cap) {
    return Error(StatusCode::kBufferTooSmall, "forward: logits need ", need, " floats, buffer holds ", logits_cap);
  }
  if (o_.mlp_chunk_rows <= 0) return Error(StatusCode::kInvalidArgument, "forward: mlp_chunk_rows must be > 0");
  return Status::Ok();
}

// Sizes the scratch, builds the RoPE table and each new token's range of visible own rows.
void ForwardRunner::prepare() {
  const int64_t n = n_, hidden = c_.hidden_size;
  const int64_t qw = c_.num_attention_heads * c_.head_dim, kvw = c_.num_key_value_heads * c_.head_dim;
  const int64_t mlp_rows = std::min(n, o_.mlp_chunk_rows);
  ws_.x_.resize(static_cast<size_t>(n * hidden));
  ws_.a_.resize(static_cast<size_t>(n * hidden));
  ws_.q_.resize(static_cast<size_t>(n * qw));
  ws_.k_.resize(static_cast<size_t>(n * kvw));
  ws_.v_.resize(static_cast<size_t>(n * kvw));
  ws_.attn_.resize(static_cast<size_t>(n * qw));
  ws_.proj_.resize(static_cast<size_t>(n * hidden));
  ws_.gate_.resize(static_cast<size_t>(mlp_rows * c_.intermediate_size));
  ws_.up_.resize(static_cast<size_t>(mlp_rows * c_.intermediate_size));
  const int64_t half = c_.head_dim / 2;
  ws_.rope_cos_.resize(static_cast<size_t>(n * half));
  ws_.rope_sin_.resize(static_cast<size_t>(n * half));
  compute_rope_table(b_.positions, n, c_.head_dim, c_.rope_theta, ws_.rope_cos_.data(), ws_.rope_sin_.data());

  // Own rows are indexed among cached rows; new token i is own row cached0 + i.
  ws_.own_begin_.assign(static_cast<size_t>(n), 0);
  ws_.own_end_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ws_.own_end_[static_cast<size_t>(i)] = cached0_ + (b_.causal ? i + 1 : n);
  if (b_.segments) {
    // Start each token's range at the first row of its segment (rows of other segments inside the range are
    // filtered by the attention op); for documents packed one after the other this makes the range exact.
    std::unordered_map<int32_t, int64_t> first;
    const int32_t* cached_seg = kv_.layers[0].segments();
    for (int64_t r = 0; r < cached0_; ++r) first.emplace(cached_seg[r], r);
    for (int64_t i = 0; i < n; ++i) {
      auto it = first.emplace(b_.segments[i], cached0_ + i).first;
      ws_.own_begin_[static_cast<size_t>(i)] = it->second;
    }
  }
}

Status ForwardRunner::run(float* logits) {
  n_ = b_.n_tokens;
  cached0_ = kv_.n_cached();
  eps_ = static_cast<float>(c_.rms_norm_eps);
  prepare();
  MSA_RETURN_IF_ERROR(be_->embedding(w_.embed_tokens, b_.tokens, n_, ws_.x_.data()));
  for (int l = 0; l < static_cast<int>(c_.num_hidden_layers); ++l) {
    Status s = layer(l);
    if (!s.ok()) {
      kv_.truncate_cached(cached0_);
      return s;
    }
  }
  if (o_.logits == LogitsMode::kNone) return Status::Ok();
  return compute_logits(logits);
}

Status ForwardRunner::layer(int l) {
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t n = n_, hidden = c_.hidden_size, d = c_.head_dim;
  const int64_t hq = c_.num_attention_heads, hkv = c_.num_key_value_heads;
  float* x = ws_.x_.data();
  float* a = ws_.a_.data();
  float* q = ws_.q_.data();
  float* k = ws_.k_.data();
  float* v = ws_.v_.data();

  // Attention block: a = norm(x); q/k/v projections, per-head norms, RoPE.
  MSA_RETURN_IF_ERROR(be_->rmsnorm(x, n, hidden, lw.input_norm, eps_, a));
  MSA_RETURN_IF_ERROR(be_->matmul(a, n, lw.q_proj, q));
  MSA_RETURN_IF_ERROR(be_->matmul(a, n, lw.k_proj, k));
  MSA_RETURN_IF_ERROR(be_->matmul(a, n, lw.v_proj, v));
  MSA_RETURN_IF_ERROR(be_->rmsnorm(q, n * hq, d, lw.q_norm, eps_, q));
  MSA_RETURN_IF_ERROR(be_->rmsnorm(k, n * hkv, d, lw.k_norm, eps_, k));
  be_->rope(q, n, hq, d, ws_.rope_cos_.data(), ws_.rope_sin_.data());
  be_->rope(k, n, hkv, d, ws_.rope_cos_.data(), ws_.rope_sin_.data());

  LayerKV& kv = kv_.layers[static_cast<size_t>(l)];
  if (o_.observer) {
    LayerActivations act;
    act.layer = l;
    act.n_tokens = n;
    act.batch = &b_;
    act.a = a;
    act.q = q;
    act.k = k;
    act.v = v;
    act.backend = be_;
    MSA_RETURN_IF_ERROR(o_.observer->before_attention(act, &kv));
    if (kv.n_cached() != cached0_ || kv.width() != hkv * d) {
      return Error(StatusCode::kInternal, "forward: the observer changed the cached rows of layer ", l);
    }
  }

  kv.append(k, v, n, b_.segments);
  AttentionArgs args;
  args.q = q;
  args.k = kv.k();
  args.v = kv.v();
  args.out = ws_.attn_.data();
  args.n_q = n;
  args.n_kv = kv.n_rows();
  args.n_prefix = kv.n_prefix();
  args.n_heads = hq;
  args.n_kv_heads = hkv;
  args.head_dim = d;
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  args.own_begin = ws_.own_begin_.data();
  args.own_end = ws_.own_end_.data();
  args.q_seg = b_.segments;
  args.kv_seg = b_.segments ? kv.segments() : nullptr;
  Status s = be_->attention(args);
  if (!o_.keep_kv || !s.ok()) kv.truncate_cached(cached0_);
  MSA_RETURN_IF_ERROR(s);

  MSA_RETURN_IF_ERROR(be_->matmul(ws_.attn_.data(), n, lw.o_proj, ws_.proj_.data()));
  be_->add(x, ws_.proj_.data(), x, n * hidden);
  MSA_RETURN_IF_ERROR(mlp(lw));
  if (o_.observer) MSA_RETURN_IF_ERROR(o_.observer->after_layer(l, x, n));
  return Status::Ok();
}

// x += down(silu(gate(m)) * up(m)), m = post_norm(x), in sub-batches of mlp_chunk_rows rows.
Status ForwardRunner::mlp(const LayerWeights& lw) {
  const int64_t hidden = c_.hidden_size, inter = c_.intermediate_size;
  for (int64_t r0 = 0; r0 < n_; r0 += o_.mlp_chunk_rows) {
    const int64_t rows = std::min(o_.mlp_chunk_rows, n_ - r0);
    float* x = ws_.x_.data() + r0 * hidden;
    float* m = ws_.a_.data();
    MSA_RETURN_IF_ERROR(be_->rmsnorm(x, rows, hidden, lw.post_norm, eps_, m));
    MSA_RETURN_IF_ERROR(be_->matmul(m, rows, lw.gate_proj, ws_.gate_.data()));
    MSA_RETURN_IF_ERROR(be_->matmul(m, rows, lw.up_proj, ws_.up_.data()));
    be_->swiglu(ws_.gate_.data(), ws_.up_.data(), ws_.gate_.data(), rows * inter);
    MSA_RETURN_IF_ERROR(be_->matmul(ws_.gate_.data(), rows, lw.down_proj, ws_.proj_.data()));
    be_->add(x, ws_.proj_.data(), x, rows * hidden);
  }
  return Status::Ok();
}

// Final norm and lm_head on the selected rows only.
Status ForwardRunner::compute_logits(float* logits) {
  const int64_t hidden = c_.hidden_size;
  const int64_t rows = n_logit_rows(b_, o_);
  ws_.final_.resize(static_cast<size_t>(rows * hidden));
  for (int64_t r = 0; r < rows; ++r) {
    int64_t src = r;
    if (o_.logits == LogitsMode::kLast) src = n_ - 1;
    if (o_.logits == LogitsMode::kSelected) src = o_.logit_rows[r];
    std::copy_n(ws_.x_.data() + src * hidden, hidden, ws_.final_.data() + r * hidden);
  }
  MSA_RETURN_IF_ERROR(be_->rmsnorm(ws_.final_.data(), rows, hidden, w_.final_norm, eps_, ws_.final_.data()));
  const TensorView& head = w_.lm_head.empty() ? w_.embed_tokens : w_.lm_head;
  return be_->matmul(ws_.final_.data(), rows, head, logits);
}

Status forward(const ModelWeights& weights, const ModelConfig& config, const ForwardBatch& batch, KVContext* kv,
               const ForwardOptions& options, ForwardWorkspace* workspace, float* logits, int64_t logits_cap) {
  if (kv == nullptr || workspace == nullptr) {
    return Error(StatusCode::kInvalidArgument, "forward: KV context and workspace are required");
  }
  ForwardRunner runner(weights, config, batch, kv, options, workspace);
  MSA_RETURN_IF_ERROR(runner.validate(logits, logits_cap));
  return runner.run(logits);
}

// ------------------------------------------------------------------------------------------------ helpers

namespace {

Status check_context(const ModelConfig& config, int64_t n_positions) {
  if (config.max_position_embeddings > 0 && n_positions > config.max_position_embeddings) {
    return Error(StatusCode::kContextOverflow, "forward: ", n_positions, " positions exceed max_position_embeddings ",
                 config.max_position_embeddings);
  }
  if (n_positions > INT32_MAX) return Error(StatusCode::kContextOverflow, "forward: ", n_positions, " positions");
  return Status::Ok();
}

}  // namespace

Status forward_logits(const ModelWeights& weights, const ModelConfig& config, const int32_t* tokens, int64_t n,
                      float* logits, bool all_positions, Backend* backend) {
  if (tokens == nullptr || logits == nullptr || n <= 0) {
    return Error(StatusCode::kInvalidArgument, "forward_logits: need tokens, n > 0 (got ", n, ") and a logits buffer");
  }
  MSA_RETURN_IF_ERROR(check_context(config, n));
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  ForwardBatch batch;
  batch.tokens = tokens;
  batch.positions = positions.data();
  batch.n_tokens = n;
  ForwardOptions options;
  options.logits = all_positions ? LogitsMode::kAll : LogitsMode::kLast;
  options.backend = backend;
  KVContext kv;
  kv.init(config);
  ForwardWorkspace ws;
  return forward(weights, config, batch, &kv, options, &ws, logits, forward_logits_size(config, batch, options));
}

int64_t argmax(const float* values, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(values[i])) continue;
    if (best < 0 || values[i] > values[best]) best = i;
  }
  return best;
}

Status greedy_generate(const ModelWeights& weights, const ModelConfig& config, const int32_t* prompt,
                       int64_t n_prompt, int64_t n_new, int32_t* out_ids) {
  if (prompt == nullptr || n_prompt <= 0 || n_new < 0 || (n_new > 0 && out_ids == nullptr)) {
    return Error(StatusCode::kInvalidArgument, "greedy_generate: need a prompt (n_prompt ", n_prompt,
                 "), n_new >= 0 (", n_new, ") and an output buffer");
  }
  if (n_new == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(check_context(config, n_prompt + n_new - 1));
  KVContext kv;
  kv.init(config);
  ForwardWorkspace ws;
  ForwardOptions options;
  options.logits = LogitsMode::kLast;
  std::vector<float> logits(static_cast<size_t>(config.vocab_size));
  std::vector<int32_t> positions(static_cast<size_t>(n_prompt));
  for (int64_t i = 0; i < n_prompt; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i);

  ForwardBatch batch;
  batch.tokens = prompt;
  batch.positions = positions.data();
  batch.n_tokens = n_prompt;
  for (int64_t step = 0; step < n_new; ++step) {
    MSA_RETURN_IF_ERROR(forward(weights, config, batch, &kv, options, &ws, logits.data(), config.vocab_size));
    const int64_t id = argmax(logits.data(), config.vocab_size);
    if (id < 0) return Error(StatusCode::kInternal, "greedy_generate: all logits are NaN at step ", step);
    out_ids[step] = static_cast<int32_t>(id);
    // Next step: the token just chosen, at the next position.
    positions.assign(1, static_cast<int32_t>(n_prompt + step));
    batch.tokens = out_ids + step;
    batch.positions = positions.data();
    batch.n_tokens = 1;
  }
  return Status::Ok();
}

}  // namespace msa
