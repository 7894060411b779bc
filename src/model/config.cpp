#include "model/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>

#include "core/file_map.h"
#include "core/limits.h"
#include "core/log.h"

namespace msa {

namespace {

using json = nlohmann::json;

// Counts that are not sizes (training-only values, chunk lengths) are bounded by int32.
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

// Reads fields of one JSON object; every error is kConfig "<path>: field '<prefix><key>': ...".
class Fields {
 public:
  Fields(const json& obj, const std::string& path, std::string prefix = "")
      : obj_(obj), path_(path), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool has(const char* key) const {
    auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }
  const json& at(const char* key) const { return *obj_.find(key); }

  template <typename... Args>
  Status error(const char* key, Args&&... args) const {
    return Error(StatusCode::kConfig, path_, ": field '", prefix_, key, "' ", std::forward<Args>(args)...);
  }
  Status missing(const char* key) const { return error(key, "is missing"); }

  // An integer in [lo, hi]. Absent/null: `*out = def`, or kConfig when `required`.
  Status get_int(const char* key, bool required, int64_t def, int64_t lo, int64_t hi, int64_t* out) const {
    if (!has(key)) {
      if (required) return missing(key);
      *out = def;
      return Status::Ok();
    }
    const json& v = at(key);
    int64_t x = 0;
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return error(key, "= ", v.dump(), " is out of range [", lo, ", ", hi, "]");
      }
      x = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else {
      return error(key, "must be an integer, got ", v.type_name(), " ", v.dump());
    }
    if (x < lo || x > hi) return error(key, "= ", x, " is out of range [", lo, ", ", hi, "]");
    *out = x;
    return Status::Ok();
  }

  Status get_int32(const char* key, bool required, int64_t def, int64_t lo, int64_t hi, int* out) const {
    int64_t x = 0;
    MSA_RETURN_IF_ERROR(get_int(key, required, def, lo, hi, &x));
    *out = static_cast<int>(x);
    return Status::Ok();
  }

  // A finite number (integer or float) in [lo, hi], or in (lo, hi] when `lo_open`.
  Status get_double(const char* key, double def, double lo, double hi, double* out,
                    bool lo_open = false) const {
    if (!has(key)) {
      *out = def;
      return Status::Ok();
    }
    const json& v = at(key);
    if (!v.is_number()) return error(key, "must be a number, got ", v.type_name(), " ", v.dump());
    double x = v.get<double>();
    if (!std::isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi) {
      return error(key, "= ", v.dump(), " is out of range ", lo_open ? "(" : "[", lo, ", ", hi, "]");
    }
    *out = x;
    return Status::Ok();
  }

  Status get_bool(const char* key, bool def, bool* out) const {
    if (!has(key)) {
      *out = def;
      return Status::Ok();
    }
    const json& v = at(key);
    if (!v.is_boolean()) return error(key, "must be true or false, got ", v.type_name(), " ", v.dump());
    *out = v.get<bool>();
    return Status::Ok();
  }

  Status get_string(const char* key, bool required, const std::string& def, std::string* out) const {
    if (!has(key)) {
      if (required) return missing(key);
      *out = def;
      return Status::Ok();
    }
    const json& v = at(key);
    if (!v.is_string()) return error(key, "must be a string, got ", v.type_name(), " ", v.dump());
    *out = v.get<std::string>();
    return Status::Ok();
  }

  // A token id or a list of token ids (each in [0, 2^31)); absent/null leaves *out empty.
  Status get_token_ids(const char* key, std::vector<int32_t>* out) const {
    out->clear();
    if (!has(key)) return Status::Ok();
    const json& v = at(key);
    auto one = [&](const json& e) -> Status {
      if (!(e.is_number_unsigned() || e.is_number_integer())) {
        return error(key, "must be a token id or a list of token ids, got ", e.type_name(), " ", e.dump());
      }
      if (e.is_number_integer() && !e.is_number_unsigned() && e.get<int64_t>() < 0) {
        return error(key, "has a negative token id ", e.dump());
      }
      if (e.get<uint64_t>() >= static_cast<uint64_t>(limits::kMaxVocab)) {
        return error(key, "has an out-of-range token id ", e.dump(), " (ids are < ", limits::kMaxVocab,
                     ", MSA_MAX_VOCAB)");
      }
      out->push_back(static_cast<int32_t>(e.get<uint64_t>()));
      return Status::Ok();
    };
    if (v.is_array()) {
      if (v.size() > static_cast<size_t>(config_limits::kMaxEosTokens))
        return error(key, "lists ", v.size(), " token ids, more than ", config_limits::kMaxEosTokens);
      for (const json& e : v) MSA_RETURN_IF_ERROR(one(e));
      return Status::Ok();
    }
    return one(v);
  }

  // A string that must be one of `allowed`; returns its index.
  Status get_choice(const char* key, const std::string& def, const std::vector<const char*>& allowed,
                    size_t* out) const {
    std::string s;
    MSA_RETURN_IF_ERROR(get_string(key, false, def, &s));
    for (size_t i = 0; i < allowed.size(); ++i) {
      if (s == allowed[i]) {
        *out = i;
        return Status::Ok();
      }
    }
    std::string list;
    for (size_t i = 0; i < allowed.size(); ++i)
      list += (i ? ", " : "") + std::string("\"") + allowed[i] + "\"";
    return error(key, "= \"", s, "\" is not one of the allowed values: ", list);
  }

 private:
  const json& obj_;
  const std::string& path_;
  std::string prefix_;
};

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return std::string();
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// rope_scaling / rope_parameters: null, absent, or {"rope_type"|"type": "default"}.
Status check_rope(const Fields& f, const char* key, const std::string& path) {
  if (!f.has(key)) return Status::Ok();
  const json& v = f.at(key);
  if (!v.is_object()) return f.error(key, "must be null or an object, got ", v.type_name());
  std::string kind;
  for (const char* k : {"rope_type", "type"}) {
    auto it = v.find(k);
    if (it != v.end() && !it->is_null()) {
      if (!it->is_string()) return f.error(key, "has a non-string \"", k, "\": ", it->dump());
      kind = it->get<std::string>();
      break;
    }
  }
  if (kind.empty()) {
    if (v.empty()) return Status::Ok();
    return f.error(key, "has no \"rope_type\": ", v.dump());
  }
  if (kind != "default") {
    return Error(StatusCode::kUnsupported, path, ": ", key, " of type \"", kind,
                 "\" is not supported (only default RoPE, rope_scaling null)");
  }
  return Status::Ok();
}

Status parse_msa_block(const json& block, const std::string& path, int64_t num_layers, MsaConfig* m) {
  if (!block.is_object()) {
    return Error(StatusCode::kConfig, path, ": field 'msa_config' must be an object, got ",
                 block.type_name());
  }
  Fields f(block, path, "msa_config.");
  m->present = true;
  MSA_RETURN_IF_ERROR(f.get_string("router_layer_idx", false, "all", &m->router_layer_idx));
  Status st = parse_router_layer_idx(m->router_layer_idx, num_layers, &m->router_layers);
  if (!st.ok()) return f.error("router_layer_idx", "= \"", m->router_layer_idx, "\": ", st.message());
  MSA_RETURN_IF_ERROR(f.get_int32("pooling_kernel_size", false, 2, 1, kMaxDim, &m->pooling_kernel_size));
  MSA_RETURN_IF_ERROR(f.get_int32("top_k_docs", false, 2, 1, kMaxDim, &m->top_k_docs));
  MSA_RETURN_IF_ERROR(f.get_bool("decouple_router", false, &m->decouple_router));
  static const std::vector<const char*> kAux = {"INFONCE", "INFONCE_FOCAL", "BCE", "INFONCE_DECOUPLE",
                                                "INFONCE_DECOUPLE_FOCAL"};
  size_t i = 0;
  MSA_RETURN_IF_ERROR(f.get_choice("aux_loss_method", "INFONCE", kAux, &i));
  m->aux_loss_method = kAux[i];
  MSA_RETURN_IF_ERROR(f.get_choice("head_reduce_method", "max", {"max", "mean"}, &i));
  m->head_reduce = i == 0 ? HeadReduce::kMax : HeadReduce::kMean;
  MSA_RETURN_IF_ERROR(f.get_choice("query_reduce_method", "max", {"max", "mean", "last"}, &i));
  m->query_reduce = i == 0 ? QueryReduce::kMax : (i == 1 ? QueryReduce::kMean : QueryReduce::kLast);
  MSA_RETURN_IF_ERROR(f.get_choice("chunk_reduce_method", "max", {"max", "mean"}, &i));
  m->chunk_reduce = i == 0 ? ChunkReduce::kMax : ChunkReduce::kMean;
  return Status::Ok();
}

Status parse_model_config_impl(const std::string& text, const std::string& path, ModelConfig* out) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Error(StatusCode::kConfig, path, ": not valid JSON");
  if (!root.is_object())
    return Error(StatusCode::kConfig, path, ": expected a JSON object, got ", root.type_name());
  Fields f(root, path);
  ModelConfig c;

  MSA_RETURN_IF_ERROR(f.get_string("model_type", true, "", &c.model_type));
  if (c.model_type != "qwen3" && c.model_type != "msa") {
    return Error(StatusCode::kUnsupported, path, ": model_type \"", c.model_type,
                 "\" is not supported (expected \"qwen3\" or \"msa\")");
  }
  MSA_RETURN_IF_ERROR(f.get_int("vocab_size", true, 0, 1, limits::kMaxVocab, &c.vocab_size));
  MSA_RETURN_IF_ERROR(f.get_int("hidden_size", true, 0, 1, config_limits::kMaxHiddenSize, &c.hidden_size));
  MSA_RETURN_IF_ERROR(f.get_int("intermediate_size", true, 0, 1, config_limits::kMaxIntermediateSize,
                                &c.intermediate_size));
  MSA_RETURN_IF_ERROR(f.get_int("num_hidden_layers", true, 0, 1, limits::kMaxLayers, &c.num_hidden_layers));
  MSA_RETURN_IF_ERROR(
      f.get_int("num_attention_heads", true, 0, 1, config_limits::kMaxHeads, &c.num_attention_heads));
  MSA_RETURN_IF_ERROR(
      f.get_int("num_key_value_heads", true, 0, 1, config_limits::kMaxHeads, &c.num_key_value_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return Error(StatusCode::kConfig, path, ": num_attention_heads (", c.num_attention_heads,
                 ") is not a multiple of num_key_value_heads (", c.num_key_value_heads, ")");
  }
  if (f.has("head_dim")) {
    MSA_RETURN_IF_ERROR(f.get_int("head_dim", true, 0, 1, config_limits::kMaxHeadDim, &c.head_dim));
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return Error(StatusCode::kConfig, path, ": head_dim is absent and hidden_size (", c.hidden_size,
                   ") is not a multiple of num_attention_heads (", c.num_attention_heads, ")");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
    if (c.head_dim > config_limits::kMaxHeadDim) {
      return Error(StatusCode::kConfig, path, ": head_dim (hidden_size / num_attention_heads) = ", c.head_dim,
                   " is out of range [1, ", config_limits::kMaxHeadDim, "]");
    }
  }
  if (c.num_attention_heads * c.head_dim > config_limits::kMaxAttentionWidth) {
    return Error(StatusCode::kConfig, path, ": num_attention_heads x head_dim (", c.num_attention_heads,
                 " x ", c.head_dim, ") is more than ", config_limits::kMaxAttentionWidth);
  }
  constexpr double kHuge = 1e300;
  MSA_RETURN_IF_ERROR(f.get_double("rms_norm_eps", 1e-6, 0.0, 1.0, &c.rms_norm_eps, /*lo_open=*/true));
  double theta_default = 10000.0;
  if (!f.has("rope_theta") && f.has("rope_parameters") && f.at("rope_parameters").is_object()) {
    Fields rp(f.at("rope_parameters"), path, "rope_parameters.");
    MSA_RETURN_IF_ERROR(rp.get_double("rope_theta", 10000.0, 0.0, kHuge, &theta_default, /*lo_open=*/true));
  }
  MSA_RETURN_IF_ERROR(f.get_double("rope_theta", theta_default, 0.0, kHuge, &c.rope_theta, /*lo_open=*/true));
  MSA_RETURN_IF_ERROR(check_rope(f, "rope_scaling", path));
  MSA_RETURN_IF_ERROR(check_rope(f, "rope_parameters", path));
  MSA_RETURN_IF_ERROR(f.get_int("max_position_embeddings", false, 32768, 1,
                                std::numeric_limits<int64_t>::max(), &c.max_position_embeddings));
  MSA_RETURN_IF_ERROR(f.get_bool("tie_word_embeddings", false, &c.tie_word_embeddings));
  MSA_RETURN_IF_ERROR(f.get_bool("attention_bias", false, &c.attention_bias));
  if (c.attention_bias) {
    return Error(StatusCode::kUnsupported, path,
                 ": attention_bias true is not supported (Qwen3 has no biases)");
  }
  bool sliding = false;
  MSA_RETURN_IF_ERROR(f.get_bool("use_sliding_window", false, &sliding));
  if (sliding) return Error(StatusCode::kUnsupported, path, ": use_sliding_window true is not supported");
  MSA_RETURN_IF_ERROR(f.get_string("hidden_act", false, "silu", &c.hidden_act));
  if (c.hidden_act != "silu") {
    return Error(StatusCode::kUnsupported, path, ": hidden_act \"", c.hidden_act,
                 "\" is not supported (only silu)");
  }
  MSA_RETURN_IF_ERROR(f.get_string("torch_dtype", false,
                                   f.has("dtype") && f.at("dtype").is_string()
                                       ? f.at("dtype").get<std::string>()
                                       : std::string("bfloat16"),
                                   &c.torch_dtype));
  int64_t bos = -1;
  MSA_RETURN_IF_ERROR(f.get_int("bos_token_id", false, -1, 0, limits::kMaxVocab - 1, &bos));
  c.bos_token_id = static_cast<int32_t>(bos);
  MSA_RETURN_IF_ERROR(f.get_token_ids("eos_token_id", &c.eos_token_ids));

  if (c.model_type == "msa") {
    if (!f.has("msa_config"))
      return f.error("msa_config", "is missing (required when model_type is \"msa\")");
    MSA_RETURN_IF_ERROR(parse_msa_block(f.at("msa_config"), path, c.num_hidden_layers, &c.msa));
  }
  c.generation.eos_token_ids = c.eos_token_ids;
  *out = std::move(c);
  return Status::Ok();
}

Status parse_generation_config_impl(const std::string& text, const std::string& path,
                                    GenerationDefaults* out) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Error(StatusCode::kConfig, path, ": not valid JSON");
  if (!root.is_object())
    return Error(StatusCode::kConfig, path, ": expected a JSON object, got ", root.type_name());
  Fields f(root, path);
  GenerationDefaults g;
  g.present = true;
  MSA_RETURN_IF_ERROR(f.get_bool("do_sample", false, &g.do_sample));
  double x = 0;
  MSA_RETURN_IF_ERROR(f.get_double("temperature", 1.0, 0.0, 1e6, &x));
  g.temperature = static_cast<float>(x);
  MSA_RETURN_IF_ERROR(f.get_double("top_p", 1.0, 0.0, 1.0, &x));
  g.top_p = static_cast<float>(x);
  MSA_RETURN_IF_ERROR(f.get_int32("top_k", false, 0, 0, std::numeric_limits<int32_t>::max(), &g.top_k));
  MSA_RETURN_IF_ERROR(f.get_token_ids("eos_token_id", &g.eos_token_ids));
  int64_t pad = -1;
  MSA_RETURN_IF_ERROR(f.get_int("pad_token_id", false, -1, 0, limits::kMaxVocab - 1, &pad));
  g.pad_token_id = static_cast<int32_t>(pad);
  *out = std::move(g);
  return Status::Ok();
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

const char* head_reduce_name(HeadReduce r) { return r == HeadReduce::kMax ? "max" : "mean"; }
const char* query_reduce_name(QueryReduce r) {
  return r == QueryReduce::kMax ? "max" : (r == QueryReduce::kMean ? "mean" : "last");
}
const char* chunk_reduce_name(ChunkReduce r) { return r == ChunkReduce::kMax ? "max" : "mean"; }

bool ModelConfig::is_router_layer(int layer) const {
  return msa.present && std::binary_search(msa.router_layers.begin(), msa.router_layers.end(), layer);
}

Status parse_router_layer_idx(const std::string& spec, int64_t num_layers, std::vector<int>* out) {
  std::vector<int> layers;
  if (trim(spec) == "all") {
    for (int64_t i = 0; i < num_layers; ++i) layers.push_back(static_cast<int>(i));
    *out = std::move(layers);
    return Status::Ok();
  }
  size_t start = 0;
  while (true) {
    const size_t comma = spec.find(',', start);
    const std::string item =
        trim(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.empty()) {
      return Error(StatusCode::kConfig,
                   "empty item in the layer list (expected \"all\" or indices like \"18,19,20\")");
    }
    if (item.find_first_not_of("0123456789") != std::string::npos) {
      return Error(StatusCode::kConfig, "item \"", item,
                   "\" is not a layer index (expected \"all\" or indices like ", "\"18,19,20\")");
    }
    // Digits only; strip leading zeros and bound the length so that stoll cannot overflow.
    const size_t nz = item.find_first_not_of('0');
    const std::string digits = nz == std::string::npos ? std::string("0") : item.substr(nz);
    if (digits.size() > 12 || std::stoll(digits) >= num_layers) {
      return Error(StatusCode::kConfig, "layer index ", item, " is out of range [0, ", num_layers, ")");
    }
    layers.push_back(static_cast<int>(std::stoll(digits)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  *out = std::move(layers);
  return Status::Ok();
}

Status parse_model_config(const std::string& json_text, const std::string& path, ModelConfig* out) {
  try {
    return parse_model_config_impl(json_text, path, out);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, path, ": out of memory while parsing");
  } catch (const std::exception& e) {
    return Error(StatusCode::kConfig, path, ": ", e.what());
  }
}

Status parse_generation_config(const std::string& json_text, const std::string& path,
                               GenerationDefaults* out) {
  try {
    return parse_generation_config_impl(json_text, path, out);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, path, ": out of memory while parsing");
  } catch (const std::exception& e) {
    return Error(StatusCode::kConfig, path, ": ", e.what());
  }
}

Status load_model_config(const std::string& dir, ModelConfig* out) {
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  const std::string cfg_path = base + "/config.json";
  std::string text;
  MSA_RETURN_IF_ERROR(read_file(cfg_path, &text));
  ModelConfig c;
  MSA_RETURN_IF_ERROR(parse_model_config(text, cfg_path, &c));
  const std::string gen_path = base + "/generation_config.json";
  if (file_exists(gen_path)) {
    MSA_RETURN_IF_ERROR(read_file(gen_path, &text));
    MSA_RETURN_IF_ERROR(parse_generation_config(text, gen_path, &c.generation));
    if (c.generation.eos_token_ids.empty()) c.generation.eos_token_ids = c.eos_token_ids;
  }
  for (int32_t id : c.generation.eos_token_ids) {
    if (id >= c.vocab_size) {
      log(LogLevel::kWarn, base, ": eos token id ", id, " is outside the vocabulary (", c.vocab_size,
          " rows) and can never be generated");
    }
  }
  if (c.msa.present) {
    log(LogLevel::kInfo, cfg_path, ": aux_loss_method ", c.msa.aux_loss_method, " => routing scores are ",
        c.msa.normalize_routing() ? "cosine (normalised)" : "dot products",
        c.msa.scale_routing() ? ", queries scaled by 128^-0.5" : "");
  }
  *out = std::move(c);
  return Status::Ok();
}

}  // namespace msa
