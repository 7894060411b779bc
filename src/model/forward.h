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
#include "core/status.h"
#include "model/config.h"
#include "model/device_model.h"
#include "model/weights.h"

namespace msa {

// One layer's attention state in backend memory, f32. Rows are n_kv_heads * head_dim wide; K rows are
// post-k_norm, post-RoPE. Layout: [prefix rows (n_prefix) | cached rows (n_cached)], contiguous, so attention
// reads one key array. Every edit is a backend copy: the engine never reads the rows itself.
class LayerKV {
 public:
  LayerKV() = default;
  LayerKV(Backend* backend, int64_t width) : be_(backend), width_(width) {}

  int64_t width() const { return width_; }
  int64_t n_prefix() const { return n_prefix_; }
  int64_t n_cached() const { return n_cached_; }
  int64_t n_rows() const { return n_prefix_ + n_cached_; }
  Backend* backend() const { return be_; }

  // [n_rows, width] in backend memory; invalidated by every mutating call.
  const float* k() const { return k_.as<float>(); }
  const float* v() const { return v_.as<float>(); }

  // Replaces the whole prefix by n rows (k, v: backend memory [n, width]); cached rows are kept after it.
  // Errors: kInvalidArgument (n < 0, null rows with n > 0), kOutOfMemory, device errors.
  Status set_prefix(const float* k, const float* v, int64_t n);
  // Inserts n prefix rows before prefix row `at` (0 <= at <= n_prefix; MSA puts memory chunks after the
  // 3 template rows). Errors: kInvalidArgument (at out of range, n < 0, null rows with n > 0), kOutOfMemory.
  Status insert_prefix(int64_t at, const float* k, const float* v, int64_t n);
  // Removes prefix rows [at, at + n). Errors: kInvalidArgument.
  Status erase_prefix(int64_t at, int64_t n);
  // Appends n cached rows (backend memory). Errors: kOutOfMemory, device errors.
  Status append(const float* k, const float* v, int64_t n);
  // Keeps the first n cached rows (n <= n_cached), e.g. to roll back a speculative step.
  void truncate_cached(int64_t n);
  // Drops all rows (prefix and cached); keeps the width and the memory.
  void clear();
  // Host copies of all rows (tests, tools): [n_rows, width] each.
  Status download(std::vector<float>* k, std::vector<float>* v) const;

 private:
  // Rebuilds the rows as [0, at) + n new rows + [at + drop, n_rows) into the spare buffers, then swaps.
  Status splice(int64_t at, int64_t drop, const float* k, const float* v, int64_t n);
  Status reserve(int64_t rows);  // capacity >= rows, contents kept

  Backend* be_ = nullptr;
  int64_t width_ = 0;
  int64_t n_prefix_ = 0;
  int64_t n_cached_ = 0;
  int64_t cap_rows_ = 0;
  DeviceBuffer k_, v_, spare_k_, spare_v_;
};

// Per-sequence KV state: one LayerKV per decoder layer. All layers hold the same number of cached rows (the
// sequence's tokens so far); prefixes may differ per layer (router layers hold injected chunks).
struct KVContext {
  std::vector<LayerKV> layers;
  std::vector<int32_t> segments;  // host: segment id of every cached row (0 for rows appended without one)

  // Sizes `layers` for the model (num_hidden_layers layers of width n_kv_heads * head_dim) on `backend`, empty.
  void init(const ModelConfig& config, Backend* backend);
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

// What the observer sees of one layer: backend pointers, valid during the callback only. The observer works on
// them with backend ops (act.backend) and never reads them directly.
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
// observer itself made). To end a forward early on purpose use ForwardOptions::last_layer, not a status.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // After q/k/v of layer `act.layer` are computed and before its attention. `kv` holds the prefix and the
  // cached rows of earlier calls; the new tokens' rows are appended right after this returns. The observer
  // may change the prefix (set_prefix / insert_prefix / erase_prefix), not the cached rows.
  virtual Status before_attention(const LayerActivations& act, LayerKV* kv);
  // After the layer's MLP: x = the layer's output residual stream [n_tokens, hidden].
  virtual Status after_layer(int layer, const float* x, int64_t n_tokens);  // x: backend memory
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
  // Run layers 0..last_layer only (then stop: no final norm, logits must be kNone); -1: every layer. With
  // keep_kv, only the layers that ran receive the new rows: the layers then hold different row counts and every
  // later forward on the context is refused (kInvalidArgument) until it is truncate_cached() back or init()ed.
  int last_layer = -1;
  // With last_layer >= 0: stop inside layer last_layer right after its observer's before_attention (q/k/v and
  // the observer's work done; no attention, no MLP; its KV gets no new rows). Memory encoding and retrieval
  // stop so at the last router layer: nothing after the routing/pooling hook contributes.
  bool stop_before_attention = false;
  // Rows per MLP sub-batch: bounds the [rows, intermediate] scratch for long encode batches.
  int64_t mlp_chunk_rows = 512;
};

// Scratch for forward() in backend memory; grows to the largest batch seen (and moves to another backend when
// used with one). Not thread-safe: one per thread/session.
class ForwardWorkspace {
 public:
  ForwardWorkspace() = default;
  ForwardWorkspace(const ForwardWorkspace&) = delete;
  ForwardWorkspace& operator=(const ForwardWorkspace&) = delete;

 private:
  friend class ForwardRunner;
  DeviceBuffer x_, a_, q_, k_, v_, attn_, proj_, gate_, up_, final_, logits_;
  DeviceBuffer tokens_, positions_, q_seg_, kv_seg_, own_begin_, own_end_, logit_rows_;
  std::vector<int64_t> own_begin_host_, own_end_host_;
  std::vector<int32_t> kv_seg_host_, logit_rows_host_;
};

// Number of floats forward() writes to `logits` for these options and batch (0 for kNone).
int64_t forward_logits_size(const ModelConfig& config, const ForwardBatch& batch, const ForwardOptions& options);

// Runs the decoder on `batch` with the weights' backend, attending to `kv` (prefix + cached rows) and, when
// options.keep_kv, appending the new tokens' K/V to it. `kv` must have been init()ed for this config on the
// same backend. Logits (f32, host memory) go to `logits`, which must hold `logits_cap` >=
// forward_logits_size() floats (may be null for kNone).
// Errors: kInvalidArgument (null pointers, n_tokens <= 0, a token id outside [0, vocab), bad logit rows,
// last_layer out of range or with logits, a KV context of another shape or backend or with layers holding
// different numbers of cached rows), kBufferTooSmall, kOutOfMemory, kInternal (an observer changed the
// cached rows), device errors, or an observer's own status. On error the new rows are not left in `kv`.
Status forward(const DeviceWeights& weights, const ForwardBatch& batch, KVContext* kv, const ForwardOptions& options,
               ForwardWorkspace* workspace, float* logits, int64_t logits_cap);

// Plain causal forward of `tokens` at positions 0..n-1 with an empty cache. all_positions: logits holds
// [n, vocab] floats, else [vocab] (last position). Errors: as forward(); kContextOverflow when n exceeds
// max_position_embeddings (when the config sets one).
Status forward_logits(const DeviceWeights& weights, const int32_t* tokens, int64_t n, float* logits,
                      bool all_positions = false);

// Index of the largest value (the lowest index among equal maxima; NaNs are ignored; -1 when n <= 0 or all
// values are NaN).
int64_t argmax(const float* values, int64_t n);

// Greedy decoding with the KV cache: prefill `prompt` (positions 0..n_prompt-1), then n_new steps of one token
// each, argmax (lowest id on ties), no stop tokens. out_ids: [n_new]. Errors: as forward(); kContextOverflow.
Status greedy_generate(const DeviceWeights& weights, const int32_t* prompt, int64_t n_prompt, int64_t n_new,
                       int32_t* out_ids);

}  // namespace msa
