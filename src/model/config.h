// ModelConfig: the validated contents of a checkpoint's config.json (Qwen3 fields + the MSA `msa_config`
// block, spec §1.1) and of generation_config.json when present.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace msa {

// Bounds of the config.json sizes that include/msa/msa.h does not list (those are MSA_MAX_LAYERS for
// num_hidden_layers and MSA_MAX_VOCAB for vocab_size and every token id; src/core/limits.h). The weights must
// match these sizes, so a checkpoint within them is bounded by its own file; the bounds keep every product
// (vocab x hidden, heads x head_dim, tokens x width) far from overflow and refuse absurd values up front.
// They are several times the largest released Qwen3 shapes (hidden 5120, FFN 25600, 64 heads, head_dim 128).
namespace config_limits {
inline constexpr int64_t kMaxHiddenSize = int64_t{1} << 16;        // hidden_size
inline constexpr int64_t kMaxIntermediateSize = int64_t{1} << 20;  // intermediate_size
inline constexpr int64_t kMaxHeads = int64_t{1} << 12;             // num_attention_heads, num_key_value_heads
inline constexpr int64_t kMaxHeadDim = int64_t{1} << 12;           // head_dim (given or hidden / heads)
inline constexpr int64_t kMaxAttentionWidth = int64_t{1} << 18;    // num_attention_heads x head_dim
inline constexpr int64_t kMaxEosTokens = 1024;                     // entries of an eos_token_id list
}  // namespace config_limits

enum class HeadReduce { kMean, kMax };
enum class QueryReduce { kMax, kMean, kLast };
enum class ChunkReduce { kMax, kMean };

// Member defaults are for code that builds a config by hand. parse_model_config fills keys missing from
// msa_config with the *resave defaults* of spec §1.1 instead (router_layer_idx "all", top_k_docs 2,
// pooling_kernel_size 2, decouple_router false, aux_loss_method "INFONCE", every reduce method "max").
struct MsaConfig {
  bool present = false;                  // false for a plain Qwen3 checkpoint (no routing possible)
  std::string router_layer_idx = "all";  // as written in the file
  std::vector<int> router_layers;        // parsed, ascending, unique
  int pooling_kernel_size = 64;
  bool decouple_router = false;
  std::string aux_loss_method = "INFONCE";
  HeadReduce head_reduce = HeadReduce::kMax;
  QueryReduce query_reduce = QueryReduce::kMax;
  ChunkReduce chunk_reduce = ChunkReduce::kMax;
  int top_k_docs = 2;  // training-only; inference k is a runtime parameter (spec Q#1)

  // Spec §4.4/§5.1 (Q#2): normalisation happens only when aux_loss_method == "INFONCE" exactly.
  bool normalize_routing() const { return aux_loss_method == "INFONCE"; }
  // Scale 128^-0.5 applied to router queries unless (INFONCE && decouple_router).
  bool scale_routing() const { return !(normalize_routing() && decouple_router); }
};

struct GenerationDefaults {
  bool present = false;
  bool do_sample = false;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  std::vector<int32_t> eos_token_ids;  // from generation_config.json, else config.json eos_token_id
  int32_t pad_token_id = -1;
};

struct ModelConfig {
  std::string model_type;  // "qwen3" or "msa"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  std::string torch_dtype = "bfloat16";
  std::string hidden_act = "silu";
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  MsaConfig msa;
  GenerationDefaults generation;

  bool is_router_layer(int layer) const;
};

const char* head_reduce_name(HeadReduce r);    // "max" | "mean"
const char* query_reduce_name(QueryReduce r);  // "max" | "mean" | "last"
const char* chunk_reduce_name(ChunkReduce r);  // "max" | "mean"

// Parses msa_config.router_layer_idx: "all" (every layer) or comma-separated layer indices, each in
// [0, num_layers); the result is ascending and unique. Errors: kConfig (message without a file name).
Status parse_router_layer_idx(const std::string& spec, int64_t num_layers, std::vector<int>* out);

// Parses and validates config.json text. `path` is used in messages only. Errors: kConfig (malformed JSON,
// missing/ill-typed field, a size above its limit — MSA_MAX_LAYERS, MSA_MAX_VOCAB, config_limits —,
// inconsistent values such as heads % kv_heads != 0), kUnsupported (rope_scaling
// of a kind we do not implement, hidden_act other than silu, attention_bias true, sliding window on).
Status parse_model_config(const std::string& json_text, const std::string& path, ModelConfig* out);

// Parses generation_config.json text (do_sample, temperature, top_p, top_k, eos_token_id as an int or a list
// of at most config_limits::kMaxEosTokens ids, pad_token_id; token ids < MSA_MAX_VOCAB; other keys are
// ignored). Sets out->present. Keys that are absent keep their defaults, except
// eos_token_ids, which is left empty when absent. Errors: kConfig naming `path` and the field.
Status parse_generation_config(const std::string& json_text, const std::string& path,
                               GenerationDefaults* out);

// Reads <dir>/config.json and, when present, <dir>/generation_config.json (when that file has no
// eos_token_id, or is absent, generation.eos_token_ids = the config's eos ids). Errors: kIo (config.json
// unreadable), and those of parse_model_config / parse_generation_config.
Status load_model_config(const std::string& dir, ModelConfig* out);

}  // namespace msa
