#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

namespace msa {

// ------------------------------------------------------------------------------------------------ LayerKV

namespace {
size_t row_bytes(int64_t width, int64_t rows) { return static_cast<size_t>(rows * width) * sizeof(float); }
}  // namespace

Status LayerKV::reserve(int64_t rows) {
  if (rows <= cap_rows_) return Status::Ok();
  // Grow by half again (decode appends one row per step), keeping the rows.
  const int64_t cap = std::max<int64_t>({rows, cap_rows_ + cap_rows_ / 2, 16});
  MSA_RETURN_IF_ERROR(be_->ensure(&spare_k_, row_bytes(width_, cap)));
  MSA_RETURN_IF_ERROR(be_->ensure(&spare_v_, row_bytes(width_, cap)));
  MSA_RETURN_IF_ERROR(be_->copy(spare_k_.data(), k_.data(), row_bytes(width_, n_rows())));
  MSA_RETURN_IF_ERROR(be_->copy(spare_v_.data(), v_.data(), row_bytes(width_, n_rows())));
  std::swap(k_, spare_k_);
  std::swap(v_, spare_v_);
  cap_rows_ = static_cast<int64_t>(k_.bytes() / sizeof(float)) / width_;
  return Status::Ok();
}

Status LayerKV::splice(int64_t at, int64_t drop, const float* k, const float* v, int64_t n) {
  const int64_t rows = n_rows() - drop + n;
  const int64_t cap = std::max(rows, cap_rows_);
  MSA_RETURN_IF_ERROR(be_->ensure(&spare_k_, row_bytes(width_, cap)));
  MSA_RETURN_IF_ERROR(be_->ensure(&spare_v_, row_bytes(width_, cap)));
  float* nk = spare_k_.as<float>();
  float* nv = spare_v_.as<float>();
  const int64_t tail = n_rows() - at - drop;
  MSA_RETURN_IF_ERROR(be_->copy(nk, k_.data(), row_bytes(width_, at)));
  MSA_RETURN_IF_ERROR(be_->copy(nv, v_.data(), row_bytes(width_, at)));
  MSA_RETURN_IF_ERROR(be_->copy(nk + at * width_, k, row_bytes(width_, n)));
  MSA_RETURN_IF_ERROR(be_->copy(nv + at * width_, v, row_bytes(width_, n)));
  MSA_RETURN_IF_ERROR(be_->copy(nk + (at + n) * width_, k_.as<float>() + (at + drop) * width_, row_bytes(width_, tail)));
  MSA_RETURN_IF_ERROR(be_->copy(nv + (at + n) * width_, v_.as<float>() + (at + drop) * width_, row_bytes(width_, tail)));
  std::swap(k_, spare_k_);
  std::swap(v_, spare_v_);
  cap_rows_ = static_cast<int64_t>(k_.bytes() / sizeof(float)) / width_;
  return Status::Ok();
}

Status LayerKV::set_prefix(const float* k, const float* v, int64_t n) {
  if (n < 0 || (n > 0 && (k == nullptr || v == nullptr))) {
    return Error(StatusCode::kInvalidArgument, "LayerKV::set_prefix: bad rows (n = ", n, ")");
  }
  if (be_ == nullptr) return Error(StatusCode::kInvalidArgument, "LayerKV::set_prefix: not initialised");
  MSA_RETURN_IF_ERROR(splice(0, n_prefix_, k, v, n));
  n_prefix_ = n;
  return Status::Ok();
}

Status LayerKV::insert_prefix(int64_t at, const float* k, const float* v, int64_t n) {
  if (at < 0 || at > n_prefix_ || n < 0 || (n > 0 && (k == nullptr || v == nullptr)) || be_ == nullptr) {
    return Error(StatusCode::kInvalidArgument, "LayerKV::insert_prefix: at ", at, ", n ", n, " with ", n_prefix_,
                 " prefix rows");
  }
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(splice(at, 0, k, v, n));
  n_prefix_ += n;
  return Status::Ok();
}

Status LayerKV::erase_prefix(int64_t at, int64_t n) {
  if (at < 0 || n < 0 || at + n > n_prefix_) {
    return Error(StatusCode::kInvalidArgument, "LayerKV::erase_prefix: rows [", at, ", ", at + n, ") of ",
                 n_prefix_, " prefix rows");
  }
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(splice(at, n, nullptr, nullptr, 0));
  n_prefix_ -= n;
  return Status::Ok();
}

Status LayerKV::append(const float* k, const float* v, int64_t n) {
  if (n <= 0) return Status::Ok();
  if (be_ == nullptr) return Error(StatusCode::kInvalidArgument, "LayerKV::append: not initialised");
  MSA_RETURN_IF_ERROR(reserve(n_rows() + n));
  MSA_RETURN_IF_ERROR(be_->copy(k_.as<float>() + n_rows() * width_, k, row_bytes(width_, n)));
  MSA_RETURN_IF_ERROR(be_->copy(v_.as<float>() + n_rows() * width_, v, row_bytes(width_, n)));
  n_cached_ += n;
  return Status::Ok();
}

void LayerKV::truncate_cached(int64_t n) {
  if (n < 0 || n >= n_cached_) return;
  n_cached_ = n;
}

void LayerKV::clear() {
  n_prefix_ = 0;
  n_cached_ = 0;
}

Status LayerKV::download(std::vector<float>* k, std::vector<float>* v) const {
  const size_t n = static_cast<size_t>(n_rows() * width_);
  k->resize(n);
  v->resize(n);
  if (n == 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(be_->download(k->data(), k_.data(), n * sizeof(float)));
  return be_->download(v->data(), v_.data(), n * sizeof(float));
}

void KVContext::init(const ModelConfig& config, Backend* backend) {
  const int64_t width = config.num_key_value_heads * config.head_dim;
  const size_t n = static_cast<size_t>(config.num_hidden_layers);
  // Keep the layers' memory when the shape and backend are unchanged (a session re-inits per prefill).
  if (layers.size() == n && !layers.empty() && layers[0].width() == width && layers[0].backend() == backend) {
    clear();
    return;
  }
  layers.clear();
  layers.reserve(n);
  for (size_t l = 0; l < n; ++l) layers.emplace_back(backend, width);
  segments.clear();
}

void KVContext::truncate_cached(int64_t n) {
  for (LayerKV& l : layers) l.truncate_cached(n);
  if (n >= 0 && static_cast<size_t>(n) < segments.size()) segments.resize(static_cast<size_t>(n));
}

void KVContext::clear() {
  for (LayerKV& l : layers) l.clear();
  segments.clear();
}

Status ForwardObserver::before_attention(const LayerActivations&, LayerKV*) { return Status::Ok(); }
Status ForwardObserver::after_layer(int, const float*, int64_t) { return Status::Ok(); }

// ------------------------------------------------------------------------------------------------ helpers

namespace {

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
  ForwardRunner(const DeviceWeights& w, const ForwardBatch& b, KVContext* kv, const ForwardOptions& o,
                ForwardWorkspace* ws)
      : w_(w.views()), dw_(w), c_(w.config()), b_(b), kv_(*kv), o_(o), ws_(*ws), be_(w.backend()) {}

  Status validate(float* logits, int64_t logits_cap) const;
  Status run(float* logits);

 private:
  Status prepare();
  Status layer(int l);
  Status mlp(const LayerWeights& lw);
  Status compute_logits(float* logits);
  template <typename T>
  Status grow(DeviceBuffer* buf, int64_t n) {
    return be_->ensure(buf, static_cast<size_t>(n) * sizeof(T));
  }

  const ModelWeights& w_;
  const DeviceWeights& dw_;
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
  for (int64_t i = 0; i < b.n_tokens; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= c_.vocab_size) {
      return Error(StatusCode::kInvalidArgument, "forward: token id ", b.tokens[i], " at index ", i,
                   " outside [0, ", c_.vocab_size, ")");
    }
    if (b.positions[i] < 0) {
      return Error(StatusCode::kInvalidArgument, "forward: position ", b.positions[i], " at index ", i, " < 0");
    }
  }
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
    if (kv_.layers[l].backend() != be_) {
      return Error(StatusCode::kInvalidArgument, "forward: KV layer ", l, " lives on another backend");
    }
    if (kv_.layers[l].n_cached() != kv_.layers[0].n_cached()) {
      return Error(StatusCode::kInvalidArgument, "forward: KV layer ", l, " caches ", kv_.layers[l].n_cached(),
                   " rows, layer 0 caches ", kv_.layers[0].n_cached());
    }
  }
  if (o_.last_layer < -1 || o_.last_layer >= c_.num_hidden_layers) {
    return Error(StatusCode::kInvalidArgument, "forward: last_layer ", o_.last_layer, " outside [-1, ",
                 c_.num_hidden_layers, ")");
  }
  if (o_.stop_before_attention && o_.last_layer < 0) {
    return Error(StatusCode::kInvalidArgument, "forward: stop_before_attention needs last_layer >= 0");
  }
  if (o_.last_layer >= 0 && (o_.last_layer + 1 < c_.num_hidden_layers || o_.stop_before_attention) &&
      o_.logits != LogitsMode::kNone) {
    return Error(StatusCode::kInvalidArgument, "forward: a forward stopped at layer ", o_.last_layer,
                 " has no logits (use LogitsMode::kNone)");
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

// Sizes the scratch, uploads the batch (ids, positions, segments) and each new token's range of visible own
// rows: the only host -> device traffic of a forward besides injected pages.
Status ForwardRunner::prepare() {
  const int64_t n = n_, hidden = c_.hidden_size;
  const int64_t qw = c_.num_attention_heads * c_.head_dim, kvw = c_.num_key_value_heads * c_.head_dim;
  const int64_t mlp_rows = std::min(n, o_.mlp_chunk_rows);
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.x_, n * hidden));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.a_, n * hidden));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.q_, n * qw));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.k_, n * kvw));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.v_, n * kvw));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.attn_, n * qw));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.proj_, n * hidden));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.gate_, mlp_rows * c_.intermediate_size));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.up_, mlp_rows * c_.intermediate_size));
  MSA_RETURN_IF_ERROR(upload_vector(be_, b_.tokens, static_cast<size_t>(n), &ws_.tokens_));
  MSA_RETURN_IF_ERROR(upload_vector(be_, b_.positions, static_cast<size_t>(n), &ws_.positions_));

  // Own rows are indexed among cached rows; new token i is own row cached0 + i.
  ws_.own_begin_host_.assign(static_cast<size_t>(n), 0);
  ws_.own_end_host_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ws_.own_end_host_[static_cast<size_t>(i)] = cached0_ + (b_.causal ? i + 1 : n);
  if (b_.segments) {
    // Start each token's range at the first row of its segment (rows of other segments inside the range are
    // filtered by the attention op); for documents packed one after the other this makes the range exact.
    std::unordered_map<int32_t, int64_t> first;
    for (int64_t r = 0; r < cached0_; ++r) first.emplace(kv_.segments[static_cast<size_t>(r)], r);
    for (int64_t i = 0; i < n; ++i) {
      auto it = first.emplace(b_.segments[i], cached0_ + i).first;
      ws_.own_begin_host_[static_cast<size_t>(i)] = it->second;
    }
    ws_.kv_seg_host_.assign(kv_.segments.begin(), kv_.segments.begin() + cached0_);
    ws_.kv_seg_host_.insert(ws_.kv_seg_host_.end(), b_.segments, b_.segments + n);
    MSA_RETURN_IF_ERROR(upload_vector(be_, b_.segments, static_cast<size_t>(n), &ws_.q_seg_));
    MSA_RETURN_IF_ERROR(upload_vector(be_, ws_.kv_seg_host_.data(), ws_.kv_seg_host_.size(), &ws_.kv_seg_));
  }
  MSA_RETURN_IF_ERROR(upload_vector(be_, ws_.own_begin_host_.data(), ws_.own_begin_host_.size(), &ws_.own_begin_));
  return upload_vector(be_, ws_.own_end_host_.data(), ws_.own_end_host_.size(), &ws_.own_end_);
}

Status ForwardRunner::run(float* logits) {
  n_ = b_.n_tokens;
  cached0_ = kv_.n_cached();
  eps_ = static_cast<float>(c_.rms_norm_eps);
  // Cached rows without a segment id (appended by an older call without segments) count as segment 0.
  if (static_cast<int64_t>(kv_.segments.size()) < cached0_) kv_.segments.resize(static_cast<size_t>(cached0_), 0);
  Status s = prepare();
  if (s.ok()) s = be_->embedding(w_.embed_tokens, ws_.tokens_.as<int32_t>(), n_, ws_.x_.as<float>());
  const int n_layers = o_.last_layer >= 0 ? o_.last_layer + 1 : static_cast<int>(c_.num_hidden_layers);
  for (int l = 0; s.ok() && l < n_layers; ++l) s = layer(l);
  if (s.ok() && n_layers == c_.num_hidden_layers && !o_.stop_before_attention && o_.logits != LogitsMode::kNone) {
    s = compute_logits(logits);
  }
  if (s.ok()) s = be_->synchronize();
  if (!s.ok()) {
    kv_.truncate_cached(cached0_);
    return s;
  }
  if (o_.keep_kv) {
    kv_.segments.resize(static_cast<size_t>(cached0_));
    if (b_.segments) {
      kv_.segments.insert(kv_.segments.end(), b_.segments, b_.segments + n_);
    } else {
      kv_.segments.resize(static_cast<size_t>(cached0_ + n_), 0);
    }
  }
  return Status::Ok();
}

Status ForwardRunner::layer(int l) {
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t n = n_, hidden = c_.hidden_size, d = c_.head_dim;
  const int64_t hq = c_.num_attention_heads, hkv = c_.num_key_value_heads;
  float* x = ws_.x_.as<float>();
  float* a = ws_.a_.as<float>();
  float* q = ws_.q_.as<float>();
  float* k = ws_.k_.as<float>();
  float* v = ws_.v_.as<float>();
  const int32_t* pos = ws_.positions_.as<int32_t>();

  // Attention block: a = norm(x); q/k/v projections, per-head norms, RoPE.
  MSA_RETURN_IF_ERROR(be_->rmsnorm(x, n, hidden, lw.input_norm, eps_, a));
  MSA_RETURN_IF_ERROR(be_->matmul(a, n, lw.q_proj, q));
  MSA_RETURN_IF_ERROR(be_->matmul(a, n, lw.k_proj, k));
  MSA_RETURN_IF_ERROR(be_->matmul(a, n, lw.v_proj, v));
  MSA_RETURN_IF_ERROR(be_->rmsnorm(q, n * hq, d, lw.q_norm, eps_, q));
  MSA_RETURN_IF_ERROR(be_->rmsnorm(k, n * hkv, d, lw.k_norm, eps_, k));
  MSA_RETURN_IF_ERROR(be_->rope(q, n, hq, d, pos, c_.rope_theta));
  MSA_RETURN_IF_ERROR(be_->rope(k, n, hkv, d, pos, c_.rope_theta));

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
  if (o_.stop_before_attention && l == o_.last_layer) return Status::Ok();

  MSA_RETURN_IF_ERROR(kv.append(k, v, n));
  AttentionArgs args;
  args.q = q;
  args.k = kv.k();
  args.v = kv.v();
  args.out = ws_.attn_.as<float>();
  args.n_q = n;
  args.n_kv = kv.n_rows();
  args.n_prefix = kv.n_prefix();
  args.n_heads = hq;
  args.n_kv_heads = hkv;
  args.head_dim = d;
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  args.own_begin = ws_.own_begin_.as<int64_t>();
  args.own_end = ws_.own_end_.as<int64_t>();
  args.q_seg = b_.segments ? ws_.q_seg_.as<int32_t>() : nullptr;
  args.kv_seg = b_.segments ? ws_.kv_seg_.as<int32_t>() : nullptr;
  Status s = be_->attention(args);
  if (!o_.keep_kv || !s.ok()) kv.truncate_cached(cached0_);
  MSA_RETURN_IF_ERROR(s);

  MSA_RETURN_IF_ERROR(be_->matmul(ws_.attn_.as<float>(), n, lw.o_proj, ws_.proj_.as<float>()));
  be_->add(x, ws_.proj_.as<float>(), x, n * hidden);
  MSA_RETURN_IF_ERROR(mlp(lw));
  if (o_.observer) MSA_RETURN_IF_ERROR(o_.observer->after_layer(l, x, n));
  return Status::Ok();
}

// x += down(silu(gate(m)) * up(m)), m = post_norm(x), in sub-batches of mlp_chunk_rows rows.
Status ForwardRunner::mlp(const LayerWeights& lw) {
  const int64_t hidden = c_.hidden_size, inter = c_.intermediate_size;
  float* gate = ws_.gate_.as<float>();
  float* up = ws_.up_.as<float>();
  float* proj = ws_.proj_.as<float>();
  for (int64_t r0 = 0; r0 < n_; r0 += o_.mlp_chunk_rows) {
    const int64_t rows = std::min(o_.mlp_chunk_rows, n_ - r0);
    float* x = ws_.x_.as<float>() + r0 * hidden;
    float* m = ws_.a_.as<float>();
    MSA_RETURN_IF_ERROR(be_->rmsnorm(x, rows, hidden, lw.post_norm, eps_, m));
    MSA_RETURN_IF_ERROR(be_->matmul(m, rows, lw.gate_proj, gate));
    MSA_RETURN_IF_ERROR(be_->matmul(m, rows, lw.up_proj, up));
    be_->swiglu(gate, up, gate, rows * inter);
    MSA_RETURN_IF_ERROR(be_->matmul(gate, rows, lw.down_proj, proj));
    be_->add(x, proj, x, rows * hidden);
  }
  return Status::Ok();
}

// Final norm and lm_head on the selected rows only, then one download of the logits.
Status ForwardRunner::compute_logits(float* logits) {
  const int64_t hidden = c_.hidden_size;
  const int64_t rows = n_logit_rows(b_, o_);
  ws_.logit_rows_host_.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    int64_t src = r;
    if (o_.logits == LogitsMode::kLast) src = n_ - 1;
    if (o_.logits == LogitsMode::kSelected) src = o_.logit_rows[r];
    ws_.logit_rows_host_[static_cast<size_t>(r)] = static_cast<int32_t>(src);
  }
  MSA_RETURN_IF_ERROR(upload_vector(be_, ws_.logit_rows_host_.data(), ws_.logit_rows_host_.size(), &ws_.logit_rows_));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.final_, rows * hidden));
  MSA_RETURN_IF_ERROR(grow<float>(&ws_.logits_, rows * c_.vocab_size));
  float* fin = ws_.final_.as<float>();
  MSA_RETURN_IF_ERROR(be_->gather_rows(ws_.x_.as<float>(), n_, hidden, ws_.logit_rows_.as<int32_t>(), rows, fin));
  MSA_RETURN_IF_ERROR(be_->rmsnorm(fin, rows, hidden, w_.final_norm, eps_, fin));
  MSA_RETURN_IF_ERROR(be_->matmul(fin, rows, dw_.head(), ws_.logits_.as<float>()));
  return be_->download(logits, ws_.logits_.data(), static_cast<size_t>(rows * c_.vocab_size) * sizeof(float));
}

Status forward(const DeviceWeights& weights, const ForwardBatch& batch, KVContext* kv, const ForwardOptions& options,
               ForwardWorkspace* workspace, float* logits, int64_t logits_cap) {
  if (kv == nullptr || workspace == nullptr) {
    return Error(StatusCode::kInvalidArgument, "forward: KV context and workspace are required");
  }
  ForwardRunner runner(weights, batch, kv, options, workspace);
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

Status forward_logits(const DeviceWeights& weights, const int32_t* tokens, int64_t n, float* logits,
                      bool all_positions) {
  if (tokens == nullptr || logits == nullptr || n <= 0) {
    return Error(StatusCode::kInvalidArgument, "forward_logits: need tokens, n > 0 (got ", n, ") and a logits buffer");
  }
  const ModelConfig& config = weights.config();
  MSA_RETURN_IF_ERROR(check_context(config, n));
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  ForwardBatch batch;
  batch.tokens = tokens;
  batch.positions = positions.data();
  batch.n_tokens = n;
  ForwardOptions options;
  options.logits = all_positions ? LogitsMode::kAll : LogitsMode::kLast;
  KVContext kv;
  kv.init(config, weights.backend());
  ForwardWorkspace ws;
  return forward(weights, batch, &kv, options, &ws, logits, forward_logits_size(config, batch, options));
}

int64_t argmax(const float* values, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(values[i])) continue;
    if (best < 0 || values[i] > values[best]) best = i;
  }
  return best;
}

Status greedy_generate(const DeviceWeights& weights, const int32_t* prompt, int64_t n_prompt, int64_t n_new,
                       int32_t* out_ids) {
  if (prompt == nullptr || n_prompt <= 0 || n_new < 0 || (n_new > 0 && out_ids == nullptr)) {
    return Error(StatusCode::kInvalidArgument, "greedy_generate: need a prompt (n_prompt ", n_prompt,
                 "), n_new >= 0 (", n_new, ") and an output buffer");
  }
  if (n_new == 0) return Status::Ok();
  const ModelConfig& config = weights.config();
  MSA_RETURN_IF_ERROR(check_context(config, n_prompt + n_new - 1));
  KVContext kv;
  kv.init(config, weights.backend());
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
    MSA_RETURN_IF_ERROR(forward(weights, batch, &kv, options, &ws, logits.data(), config.vocab_size));
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
