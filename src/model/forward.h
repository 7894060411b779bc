// The Qwen3 decoder forward (spec §2) in f32 from bf16/f16/f32 weights, shaped so that the MSA engine can
// plug in its attention modes without changing it:
//
// * Every layer's attention reads a LayerKV: a block of `prefix` rows visible to every new token (the
//   template prefix and, in router layers, the memory chunks MSA injects, spec §5.5) followed by the cached
//   own-token rows, each with a segment id. The new tokens' K/V rows are appended to it, then attention runs.
// * A ForwardBatch carries explicit RoPE positions (MSA restarts positions per document and starts query
//   positions at 3 + k, spec §3.5, §4.2), optional segment ids (stage-1 encoding packs several documents into
//   one forward; a token then only sees earlier tokens of its own segment, spec §4.3) and a causal flag.
// * A ForwardObserver sees, for every layer, the normed layer input `a`, q, k (after norm and RoPE) and v of
//   the new tokens plus the LayerKV before attention runs, so it can pool K/V/router keys (memory encoding,
//   spec §4.4) or compute router queries and inject chunks into the prefix (spec §5.1-5.5).
//
// Threading: ModelWeights/ModelConfig are only read. All scratch lives in a ForwardWorkspace, and all state in
// a KVContext, both owned by the caller: two threads may run forwards on the same model at the same time as
// long as each uses its own workspace and KV context.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/buffer.h"
#include "core/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace msa {

// One layer's attention state, f32. Rows are n_kv_heads * head_dim wide; K rows are post-k_norm, post-RoPE.
// Layout: [prefix rows (n_prefix) | cached rows (n_cached)], contiguous, so attention reads one key array.
struct LayerKV {
 public:
  LayerKV() = default;
  explicit LayerKV(int64_t width) : width_(width) {}

  int64_t width() const { return width_; }
  int64_t n_prefix() const { return n_prefix_; }
  int64_t n_cached() const { return static_cast<int64_t>(seg_.size()); }
  int64_t n_rows() const { return n_prefix_ + n_cached(); }

  // [n_rows, width]; row r of K is k() + r * width(). Pointers are invalidated by every mutating call.
  const float* k() const { return k_.data(); }
  const float* v() const { return v_.data(); }
  float* k_mut() { return k_.data(); }
  float* v_mut() { return v_.data(); }
  const float* k_row(int64_t r) const { return k_.data() + r * width_; }
  const float* v_row(int64_t r) const { return v_.data() + r * width_; }
  // Segment id of cached row c (0 <= c < n_cached); rows appended without segments get 0.
  const int32_t* segments() const { return seg_.data(); }

  // Replaces the whole prefix by n rows (k, v: [n, width]); cached rows are kept after it.
  // Errors: kInvalidArgument (n < 0, null rows with n > 0).
  Status set_prefix(const float* k, const float* v, int64_t n);
  // Inserts n prefix rows before prefix row `at` (0 <= at <= n_prefix; MSA puts memory chunks after the
  // 3 template rows). Errors: kInvalidArgument (at out of range, n < 0, null rows with n > 0).
  Status insert_prefix(int64_t at, const float* k, const float* v, int64_t n);
  // Removes prefix rows [at, at + n). Errors: kInvalidArgument.
  Status erase_prefix(int64_t at, int64_t n);
  // Appends n cached rows with segment ids `seg` (null: 0).
  void append(const float* k, const float* v, int64_t n, const int32_t* seg);
  // Keeps the first n cached rows (n <= n_cached), e.g. to roll back a speculative step.
  void truncate_cached(int64_t n);
  // Drops all rows (prefix and cached); keeps the width.
  void clear();

 private:
  int64_t width_ = 0;
  int64_t n_prefix_ = 0;
  std::vector<float> k_;
  std::vector<float> v_;
  std::vector<int32_t> seg_;  // one per cached row
};

// Per-sequence KV state: one LayerKV per decoder layer. All layers hold the same number of cached rows (the
// sequence's tokens so far); prefixes may differ per layer (router layers hold injected chunks).
struct KVContext {
  std::vector<LayerKV> layers;

  // Sizes `layers` for the model (num_hidden_layers layers of width n_kv_heads * head_dim), all empty.
  void init(const ModelConfig& config);
  // Number of cached rows (those of layer 0); 0 when uninitialised.
  int64_t n_cached() const { return layers.empty() ? 0 : layers[0].n_cached(); }
  void truncate_cached(int64_t n);  // on every layer
  void clear();                     // every layer: prefix and cached rows
};

// The new tokens of one forward call.
struct ForwardBatch {
  const int32_t* tokens = nullptr;     // [n_tokens], ids in [0, vocab_size)
  const int32_t* positions = nullptr;  // [n_tokens] RoPE positions (required; not implied by the cache)
  const int32_t* segments = nullptr;   // [n_tokens] or null. When set, a new token attends only to cached and
                                       // new rows with the same segment id (plus the prefix).
  int64_t n_tokens = 0;
  // true: new token i attends to new tokens 0..i (standard). false: to all new tokens of the call
  // (the reference's multi-token decode injection, spec Q#7).
  bool causal = true;
};

// What the observer sees of one layer (pointers valid during the callback only).
struct LayerActivations {
  int layer = 0;
  int64_t n_tokens = 0;
  const ForwardBatch* batch = nullptr;
  const float* a = nullptr;  // [n, hidden]            input_layernorm(x): input of q/k/v and router projections
  const float* q = nullptr;  // [n, n_heads * head_dim]    after q_norm and RoPE
  const float* k = nullptr;  // [n, n_kv_heads * head_dim] after k_norm and RoPE
  const float* v = nullptr;  // [n, n_kv_heads * head_dim]
  Backend* backend = nullptr;  // the backend running this forward, for the observer's own ops
};

// Hooks into every layer. Default implementations do nothing. A non-OK status aborts the forward and is
// returned by it (the KV context is then left as it was before the call, except for prefix edits the
// observer itself made).
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // After q/k/v of layer `act.layer` are computed and before its attention. `kv` holds the prefix and the
  // cached rows of earlier calls; the new tokens' rows are appended right after this returns. The observer
  // may change the prefix (set_prefix / insert_prefix / erase_prefix), not the cached rows.
  virtual Status before_attention(const LayerActivations& act, LayerKV* kv);
  // After the layer's MLP: x = the layer's output residual stream [n_tokens, hidden].
  virtual Status after_layer(int layer, const float* x, int64_t n_tokens);
};

enum class LogitsMode : int {
  kNone = 0,      // stop after the last layer; no final norm, no lm_head (memory encoding)
  kLast = 1,      // logits of the last new token: [vocab]
  kAll = 2,       // logits of every new token: [n_tokens, vocab]
  kSelected = 3,  // logits of the rows listed in ForwardOptions::logit_rows: [n_logit_rows, vocab]
};

struct ForwardOptions {
  LogitsMode logits = LogitsMode::kLast;
  const int64_t* logit_rows = nullptr;  // kSelected: indices into the new tokens, each in [0, n_tokens)
  int64_t n_logit_rows = 0;
  ForwardObserver* observer = nullptr;
  // false: the new rows are appended for the attention of each layer and removed right after it, so the
  // context keeps only what it had (memory encoding needs one layer's K/V at a time, not all of them).
  bool keep_kv = true;
  Backend* backend = nullptr;  // null: default_backend()
  // Rows per MLP sub-batch: bounds the [rows, intermediate] scratch for long encode batches.
  int64_t mlp_chunk_rows = 512;
};

// Scratch for forward(); grows to the largest batch seen. Not thread-safe: one per thread/session.
class ForwardWorkspace {
 public:
  ForwardWorkspace() = default;
  ForwardWorkspace(const ForwardWorkspace&) = delete;
  ForwardWorkspace& operator=(const ForwardWorkspace&) = delete;

 private:
  friend class ForwardRunner;
  AlignedVec<float> x_, a_, q_, k_, v_, attn_, proj_, gate_, up_, rope_cos_, rope_sin_, final_;
  std::vector<int64_t> own_begin_, own_end_;
};

// Number of floats forward() writes to `logits` for these options and batch (0 for kNone).
int64_t forward_logits_size(const ModelConfig& config, const ForwardBatch& batch, const ForwardOptions& options);

// Runs the decoder on `batch`, attending to `kv` (prefix + cached rows) and, when options.keep_kv, appending
// the new tokens' K/V to it. `kv` must have been init()ed for this config. Logits (f32) go to `logits`, which
// must hold `logits_cap` >= forward_logits_size() floats (may be null for kNone).
// Errors: kInvalidArgument (null pointers, n_tokens <= 0, a token id outside [0, vocab), bad logit rows,
// a KV context of another shape or with layers holding different numbers of cached rows), kBufferTooSmall,
// kConfig (head counts that do not divide, odd head_dim), kShape/kDtype (weights that do not match the config),
// kOutOfMemory, kInternal (an observer changed the cached rows), or an observer's own status. On error the new
// rows are not left in `kv`.
Status forward(const ModelWeights& weights, const ModelConfig& config, const ForwardBatch& batch, KVContext* kv,
               const ForwardOptions& options, ForwardWorkspace* workspace, float* logits, int64_t logits_cap);

// Plain causal forward of `tokens` at positions 0..n-1 with an empty cache. all_positions: logits holds
// [n, vocab] floats, else [vocab] (last position). Errors: as forward(); kContextOverflow when n exceeds
// max_position_embeddings (when the config sets one).
// backend null: default_backend().
Status forward_logits(const ModelWeights& weights, const ModelConfig& config, const int32_t* tokens, int64_t n,
                      float* logits, bool all_positions = false, Backend* backend = nullptr);

// Index of the largest value (the lowest index among equal maxima; NaNs are ignored; -1 when n <= 0 or all
// values are NaN).
int64_t argmax(const float* values, int64_t n);

// Greedy decoding with the KV cache: prefill `prompt` (positions 0..n_prompt-1), then n_new steps of one token
// each, argmax (lowest id on ties), no stop tokens. out_ids: [n_new]. Errors: as forward(); kContextOverflow.
Status greedy_generate(const ModelWeights& weights, const ModelConfig& config, const int32_t* prompt,
                       int64_t n_prompt, int64_t n_new, int32_t* out_ids);

}  // namespace msa
