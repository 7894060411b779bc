#include "model/init_model.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "model/config.h"

namespace msa {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Shape {
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, max_pos, pool;
  double rope_theta;
  std::string router_layers;
};

Shape preset_shape(const std::string& preset, bool* ok) {
  *ok = true;
  if (preset == "micro") return {151936, 32, 64, 2, 4, 2, 16, 262144, 4, 5000000.0, "1"};
  if (preset == "tiny") return {151936, 128, 384, 4, 4, 2, 32, 262144, 64, 5000000.0, "2,3"};
  if (preset == "msa-4b-shape") {
    std::string layers;
    for (int i = 18; i < 36; ++i) layers += (i > 18 ? "," : "") + std::to_string(i);
    return {151936, 2560, 9728, 36, 32, 8, 128, 262144, 64, 5000000.0, layers};
  }
  *ok = false;
  return {};
}

json make_msa_config(const Shape& s) {
  json msa_config = {
      {"router_layer_idx", s.router_layers}, {"top_k_docs", 16}, {"pooling_kernel_size", s.pool},
      {"decouple_router", true}, {"aux_loss_method", "INFONCE_DECOUPLE"}, {"head_reduce_method", "mean"},
      {"query_reduce_method", "max"}, {"chunk_reduce_method", "max"}, {"aux_loss", false},
      {"lmloss_weigth", 1.0}, {"auxloss_weight", 0.1}, {"recloss_weight", 0.0}, {"ansloss_weight", 1.0},
      {"rewrite_position", true}, {"infonce_loss_temp", 0.1}, {"decouple_pooling_mode", "mean"}};
  return msa_config;
}

json make_config(const Shape& s, const json& msa_config) {
  return json{{"architectures", {"MSAForCausalLM"}},
              {"model_type", "msa"},
              {"attention_bias", false},
              {"attention_dropout", 0.0},
              {"bos_token_id", 151643},
              {"eos_token_id", 151645},
              {"head_dim", s.head_dim},
              {"hidden_act", "silu"},
              {"hidden_size", s.hidden},
              {"initializer_range", 0.02},
              {"intermediate_size", s.intermediate},
              {"max_position_embeddings", s.max_pos},
              {"max_window_layers", s.layers},
              {"num_attention_heads", s.heads},
              {"num_hidden_layers", s.layers},
              {"num_key_value_heads", s.kv_heads},
              {"rms_norm_eps", 1e-6},
              {"rope_scaling", nullptr},
              {"rope_theta", s.rope_theta},
              {"sliding_window", nullptr},
              {"use_sliding_window", false},
              {"tie_word_embeddings", true},
              {"torch_dtype", "bfloat16"},
              {"use_cache", true},
              {"vocab_size", s.vocab},
              {"msa_config", msa_config}};
}

json make_generation_config() {
  return json{{"bos_token_id", 151643}, {"do_sample", true},          {"eos_token_id", {151645, 151643}},
              {"pad_token_id", 151643}, {"temperature", 0.7},         {"top_k", 20},
              {"top_p", 0.8},           {"transformers_version", "4.51.3"}};
}

// How a tensor's values are drawn: normal(mean, std), rounded to bf16.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float mean;
  float std;
};

// The router layers of a validated config -> one flag per layer.
std::vector<int> router_flags(const std::vector<int>& router_layers, int64_t n_layers) {
  std::vector<int> flags(static_cast<size_t>(n_layers), 0);
  for (int l : router_layers) flags[static_cast<size_t>(l)] = 1;
  return flags;
}

// Applies the msa_config overrides to `msa_config`. Each key must be one the preset writes and its value of
// the same JSON type (an integer where the preset has an integer); the training-only loss weights must be
// >= 0 and the InfoNCE temperature > 0. Every value the loader reads is then range-checked by the loader's
// own parser (init_model), so no override can produce a checkpoint that does not load.
Status apply_overrides(const std::string& text, json* msa_config) {
  json over = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!over.is_object())
    return Error(StatusCode::kInvalidArgument, "init-model: msa_config overrides must be a JSON object, got ",
                 over.is_discarded() ? std::string("invalid JSON") : std::string(over.type_name()));
  for (auto it = over.begin(); it != over.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (!msa_config->contains(key))
      return Error(StatusCode::kInvalidArgument, "init-model: unknown msa_config key '", key, "'");
    const json& def = (*msa_config)[key];
    const char* want = nullptr;
    if (def.is_boolean() && !v.is_boolean()) want = "true or false";
    if (def.is_string() && !v.is_string()) want = "a string";
    if (def.is_number_integer() && !v.is_number_integer()) want = "an integer";
    if (def.is_number_float() && !v.is_number()) want = "a number";
    if (want)
      return Error(StatusCode::kInvalidArgument, "init-model: msa_config key '", key, "' must be ", want,
                   ", got ", v.type_name(), " ", v.dump());
    if (def.is_number_float()) {
      const double x = v.get<double>();
      const bool positive = key == "infonce_loss_temp";
      if (!std::isfinite(x) || x < 0.0 || (positive && x == 0.0))
        return Error(StatusCode::kInvalidArgument, "init-model: msa_config key '", key, "' = ", v.dump(),
                     " must be ", positive ? "> 0" : ">= 0");
    }
    (*msa_config)[key] = v;
  }
  return Status::Ok();
}

std::vector<TensorSpec> tensor_specs(const Shape& s, const std::vector<int>& router, bool decouple_router,
                                     bool infonce) {
  std::vector<TensorSpec> t;
  const float h = static_cast<float>(s.hidden);
  const float qd = static_cast<float>(s.heads * s.head_dim);
  const float inter = static_cast<float>(s.intermediate);
  // Scales chosen so that a random model does not just echo its input (tools/make_tiny_checkpoint.py uses the
  // same): embeddings N(0, 0.5^2); the two projections writing into the residual stream (o_proj, down_proj)
  // 4/sqrt(fan_in), so layer outputs dominate the token's own embedding; other linears 1/sqrt(fan_in).
  constexpr float kEmbedStd = 0.5f, kResidualGain = 4.0f;
  t.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, 0.0f, kEmbedStd});
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "input_layernorm.weight", {s.hidden}, 1.0f, 0.1f});
    t.push_back({p + "self_attn.q_proj.weight", {s.heads * s.head_dim, s.hidden}, 0.0f, 1.0f / std::sqrt(h)});
    t.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * s.head_dim, s.hidden}, 0.0f, 1.0f / std::sqrt(h)});
    t.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * s.head_dim, s.hidden}, 0.0f, 1.0f / std::sqrt(h)});
    t.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.heads * s.head_dim}, 0.0f,
                 kResidualGain / std::sqrt(qd)});
    t.push_back({p + "self_attn.q_norm.weight", {s.head_dim}, 1.0f, 0.1f});
    t.push_back({p + "self_attn.k_norm.weight", {s.head_dim}, 1.0f, 0.1f});
    if (decouple_router && router[static_cast<size_t>(i)]) {
      t.push_back({p + "self_attn.router_q_proj.0.weight", {s.heads * s.head_dim, s.hidden}, 0.0f,
                   1.0f / std::sqrt(h)});
      t.push_back({p + "self_attn.router_k_proj.0.weight", {s.kv_heads * s.head_dim, s.hidden}, 0.0f,
                   1.0f / std::sqrt(h)});
    }
    t.push_back({p + "post_attention_layernorm.weight", {s.hidden}, 1.0f, 0.1f});
    t.push_back({p + "mlp.gate_proj.weight", {s.intermediate, s.hidden}, 0.0f, 1.0f / std::sqrt(h)});
    t.push_back({p + "mlp.up_proj.weight", {s.intermediate, s.hidden}, 0.0f, 1.0f / std::sqrt(h)});
    t.push_back({p + "mlp.down_proj.weight", {s.hidden, s.intermediate}, 0.0f,
                 kResidualGain / std::sqrt(inter)});
  }
  t.push_back({"model.norm.weight", {s.hidden}, 1.0f, 0.1f});
  if (infonce) t.push_back({"temperature", {}, 0.1f, 0.0f});  // InfoNCE temperature (unused at inference)
  return t;
}

// splitmix64: seeds an independent stream per (seed, tensor, block), so the output does not depend on the
// number of threads.
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void fill_normal_bf16(uint16_t* out, int64_t n, float mean, float std, uint64_t stream_seed) {
  uint64_t state = stream_seed;
  for (int64_t i = 0; i < n; i += 2) {
    // Box-Muller on two uniforms in (0, 1].
    double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = static_cast<double>(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
    double r = std::sqrt(-2.0 * std::log(u1));
    double z0 = r * std::cos(2.0 * M_PI * u2), z1 = r * std::sin(2.0 * M_PI * u2);
    out[i] = f32_to_bf16(mean + std * static_cast<float>(z0));
    if (i + 1 < n) out[i + 1] = f32_to_bf16(mean + std * static_cast<float>(z1));
  }
}

// Streams the safetensors file tensor by tensor (the msa-4b-shape preset is 8.5 GB: never all in memory).
Status write_random_safetensors(const std::string& path, const std::vector<TensorSpec>& specs, uint64_t seed) {
  json header = json::object();
  uint64_t offset = 0;
  for (const TensorSpec& t : specs) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    uint64_t bytes = static_cast<uint64_t>(n) * 2;
    header[t.name] = json{{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  header["__metadata__"] = json{{"format", "pt"}, {"generator", "msa init-model"}};
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');
  // core/atomic_file.h: a temporary next to `path`, fsync, rename, fsync(dir); removed on any failure.
  AtomicFile file;
  MSA_RETURN_IF_ERROR(file.open(path));
  uint8_t len[8];
  uint64_t hl = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(hl >> (8 * i));
  MSA_RETURN_IF_ERROR(file.write(len, 8));
  MSA_RETURN_IF_ERROR(file.write(h.data(), h.size()));
  std::vector<uint16_t> buf;
  constexpr int64_t kBlock = 1 << 16;
  for (size_t ti = 0; ti < specs.size(); ++ti) {
    const TensorSpec& t = specs[ti];
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    buf.assign(static_cast<size_t>(n), 0);
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    ThreadPool::global().parallel_for(blocks, 4, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        uint64_t s = seed * 0x100000001b3ull ^ (static_cast<uint64_t>(ti) << 40) ^ static_cast<uint64_t>(b);
        uint64_t stream = splitmix64(s);
        int64_t begin = b * kBlock, len_b = std::min(kBlock, n - begin);
        fill_normal_bf16(buf.data() + begin, len_b, t.mean, t.std, stream);
      }
    });
    MSA_RETURN_IF_ERROR(file.write(buf.data(), buf.size() * 2));
  }
  return file.commit();
}

// Through the one atomic writer (core/atomic_file.h), like the weights: no partial file on a failed write.
Status write_text(const std::string& path, const std::string& text) {
  return atomic_write_file(path, {ByteSpan{text.data(), text.size()}});
}

}  // namespace

Status init_model(const InitModelOptions& o) {
  bool ok = false;
  Shape s = preset_shape(o.preset, &ok);
  if (!ok) return Error(StatusCode::kInvalidArgument, "init-model: unknown preset '", o.preset,
                        "' (expected micro, tiny or msa-4b-shape)");
  json msa_config = make_msa_config(s);
  if (!o.msa_config_json.empty()) MSA_RETURN_IF_ERROR(apply_overrides(o.msa_config_json, &msa_config));
  s.router_layers = msa_config["router_layer_idx"].get<std::string>();
  // What we are about to write must load: run it through the loader's parsers (every range check of
  // config.json and generation_config.json applies; their messages name the offending key).
  ModelConfig parsed;
  const json config = make_config(s, msa_config);
  Status pst = parse_model_config(config.dump(), "config.json", &parsed);
  if (pst.ok()) pst = parse_generation_config(make_generation_config().dump(), "generation_config.json",
                                              &parsed.generation);
  if (!pst.ok())
    return Error(StatusCode::kInvalidArgument, "init-model: the msa_config overrides make an invalid checkpoint: ",
                 pst.message());
  const std::vector<int> router = router_flags(parsed.msa.router_layers, s.layers);
  const bool decouple = parsed.msa.decouple_router;
  const bool infonce = parsed.msa.aux_loss_method.find("INFONCE") != std::string::npos;
  if (o.out_dir.empty()) return Error(StatusCode::kInvalidArgument, "init-model: empty output directory");
  std::error_code ec;
  if (!o.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      if (!fs::is_regular_file(fs::path(o.tokenizer_dir) / f, ec))
        return Error(StatusCode::kTokenizer, (fs::path(o.tokenizer_dir) / f).string(), ": not found");
    }
  }
  fs::create_directories(o.out_dir, ec);
  if (ec) return Error(StatusCode::kIo, o.out_dir, ": cannot create directory: ", ec.message());
  MSA_RETURN_IF_ERROR(write_text((fs::path(o.out_dir) / "config.json").string(), config.dump(2) + "\n"));
  MSA_RETURN_IF_ERROR(write_text((fs::path(o.out_dir) / "generation_config.json").string(),
                                 make_generation_config().dump(2) + "\n"));
  if (!o.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(fs::path(o.tokenizer_dir) / f, fs::path(o.out_dir) / f, fs::copy_options::overwrite_existing,
                    ec);
      if (ec) return Error(StatusCode::kIo, (fs::path(o.out_dir) / f).string(), ": cannot copy: ", ec.message());
      // The source may be read-only (a shared data directory); the copy belongs to the user.
      fs::permissions(fs::path(o.out_dir) / f, fs::perms::owner_read | fs::perms::owner_write |
                      fs::perms::group_read | fs::perms::others_read, ec);
    }
  }
  return write_random_safetensors((fs::path(o.out_dir) / "model.safetensors").string(), tensor_specs(s, router, decouple, infonce), o.seed);
}

}  // namespace msa
