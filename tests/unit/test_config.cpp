// config.json / generation_config.json parsing and validation (spec §1.1, §1.4, §1.5).
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "model/config.h"
#include "model/init_model.h"

using namespace msa;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kPath = "/ckpt/config.json";

// The MSA-4B config as resave_model.sh would write it (spec §1.1, script column).
json msa4b() {
  return json::parse(R"({
    "architectures": ["MSAForCausalLM"], "model_type": "msa",
    "vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
    "rms_norm_eps": 1e-06, "rope_theta": 5000000, "rope_scaling": null, "max_position_embeddings": 262144,
    "attention_bias": false, "attention_dropout": 0.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "bos_token_id": 151643, "eos_token_id": 151645, "use_sliding_window": false, "sliding_window": null,
    "max_window_layers": 36, "use_cache": true, "transformers_version": "4.51.3",
    "msa_config": {
      "router_layer_idx": "18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35",
      "aux_loss": false, "lmloss_weigth": 1.0, "auxloss_weight": 0.1, "recloss_weight": 0.0,
      "ansloss_weight": 1.0, "aux_loss_method": "INFONCE_DECOUPLE", "decouple_router": true,
      "rewrite_position": true, "top_k_docs": 16,
      "pooling_kernel_size": 64, "infonce_loss_temp": 0.1, "head_reduce_method": "mean",
      "query_reduce_method": "max", "chunk_reduce_method": "max", "decouple_pooling_mode": "mean"
    }
  })");
}

json qwen3() {
  json j = msa4b();
  j.erase("msa_config");
  j["model_type"] = "qwen3";
  return j;
}

Status parse(const json& j, ModelConfig* c) { return parse_model_config(j.dump(), kPath, c); }

Status parse(const json& j) {
  ModelConfig c;
  return parse(j, &c);
}

bool contains(const std::string& s, const std::string& n) { return s.find(n) != std::string::npos; }

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = fs::current_path() /
           ("msa_tmp_cfg_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream f(path / name, std::ios::binary | std::ios::trunc);
    f << text;
  }
};

}  // namespace

TEST_CASE("config: the MSA-4B config parses with every field", "[config]") {
  ModelConfig c;
  Status st = parse(msa4b(), &c);
  INFO(st.to_string());
  REQUIRE(st.ok());
  CHECK(c.model_type == "msa");
  CHECK(c.vocab_size == 151936);
  CHECK(c.hidden_size == 2560);
  CHECK(c.intermediate_size == 9728);
  CHECK(c.num_hidden_layers == 36);
  CHECK(c.num_attention_heads == 32);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.head_dim == 128);  // explicit, not hidden/heads = 80
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 5000000.0);
  CHECK(c.max_position_embeddings == 262144);
  CHECK(c.tie_word_embeddings);
  CHECK_FALSE(c.attention_bias);
  CHECK(c.torch_dtype == "bfloat16");
  CHECK(c.bos_token_id == 151643);
  CHECK(c.eos_token_ids == std::vector<int32_t>{151645});
  CHECK(c.generation.eos_token_ids == std::vector<int32_t>{151645});
  CHECK_FALSE(c.generation.present);

  REQUIRE(c.msa.present);
  CHECK(c.msa.router_layer_idx == "18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35");
  REQUIRE(c.msa.router_layers.size() == 18);
  CHECK(c.msa.router_layers.front() == 18);
  CHECK(c.msa.router_layers.back() == 35);
  CHECK(c.msa.pooling_kernel_size == 64);
  CHECK(c.msa.top_k_docs == 16);
  CHECK(c.msa.decouple_router);
  CHECK(c.msa.aux_loss_method == "INFONCE_DECOUPLE");
  CHECK(c.msa.head_reduce == HeadReduce::kMean);
  CHECK(c.msa.query_reduce == QueryReduce::kMax);
  CHECK(c.msa.chunk_reduce == ChunkReduce::kMax);
  CHECK_FALSE(c.msa.normalize_routing());
  CHECK(c.msa.scale_routing());
  for (int l = 0; l < 36; ++l) CHECK(c.is_router_layer(l) == (l >= 18));
  CHECK_FALSE(c.is_router_layer(36));
  CHECK_FALSE(c.is_router_layer(-1));
}

TEST_CASE("config: plain qwen3, head_dim default and optional fields", "[config]") {
  json j = qwen3();
  j.erase("head_dim");
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j.erase("rms_norm_eps");
  j.erase("hidden_act");
  j.erase("bos_token_id");
  j.erase("eos_token_id");
  j["msa_config"] = {{"router_layer_idx", "all"}};  // ignored for model_type qwen3
  ModelConfig c;
  REQUIRE(parse(j, &c).ok());
  CHECK(c.head_dim == 80);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.hidden_act == "silu");
  CHECK(c.bos_token_id == -1);
  CHECK(c.eos_token_ids.empty());
  CHECK_FALSE(c.msa.present);
  CHECK_FALSE(c.is_router_layer(0));

  // head_dim absent and hidden not divisible by heads.
  j["hidden_size"] = 2561;
  Status st = parse(j);
  CHECK(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), "head_dim"));
}

TEST_CASE("config: malformed config.json is kConfig naming the file and the field", "[config]") {
  ModelConfig c;
  Status st = parse_model_config("{\"model_type\": \"msa\", ", kPath, &c);
  REQUIRE(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), kPath));
  REQUIRE(parse_model_config("[1,2]", kPath, &c).code() == StatusCode::kConfig);
  REQUIRE(parse_model_config("", kPath, &c).code() == StatusCode::kConfig);

  struct Case {
    const char* field;
    json value;  // null = erase
  };
  const std::vector<Case> cases = {
      {"vocab_size", nullptr},
      {"hidden_size", "2560"},
      {"intermediate_size", 0},
      {"num_hidden_layers", -1},
      {"num_attention_heads", 32.5},
      {"num_key_value_heads", 7},
      {"head_dim", 0},
      {"rms_norm_eps", "1e-6"},
      {"rms_norm_eps", -1.0},
      {"rope_theta", 0},
      {"tie_word_embeddings", "yes"},
      {"model_type", nullptr},
      {"eos_token_id", "151645"},
      {"eos_token_id", json::array({1, -2})},
      {"bos_token_id", 1.5},
      {"max_position_embeddings", 0},
      {"hidden_size", 1ll << 40},
      {"rope_scaling", "linear"},
      {"msa_config", nullptr},
      {"msa_config", json::array()},
  };
  for (const Case& k : cases) {
    json j = msa4b();
    if (k.value.is_null()) {
      j.erase(k.field);
    } else {
      j[k.field] = k.value;
    }
    st = parse(j, &c);
    INFO(k.field << " = " << k.value.dump() << " -> " << st.to_string());
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), kPath));
    if (std::string(k.field) != "num_key_value_heads") CHECK(contains(st.message(), k.field));
  }
  // heads % kv_heads names both fields.
  json j = msa4b();
  j["num_key_value_heads"] = 6;
  st = parse(j);
  CHECK(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), "num_key_value_heads"));
  CHECK(contains(st.message(), "num_attention_heads"));
}

TEST_CASE("config: unsupported rope_scaling kinds are kUnsupported naming the kind", "[config]") {
  for (const char* kind : {"linear", "dynamic", "yarn", "llama3", "longrope"}) {
    json j = msa4b();
    j["rope_scaling"] = {{"rope_type", kind}, {"factor", 4.0}};
    Status st = parse(j);
    INFO(st.to_string());
    CHECK(st.code() == StatusCode::kUnsupported);
    CHECK(contains(st.message(), kind));
    CHECK(contains(st.message(), kPath));
  }
  json j = msa4b();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};  // legacy key
  CHECK(parse(j).code() == StatusCode::kUnsupported);
  j["rope_scaling"] = {{"rope_type", "default"}};
  CHECK(parse(j).ok());
  j["rope_scaling"] = {{"type", "default"}};
  CHECK(parse(j).ok());
  j["rope_scaling"] = nullptr;
  CHECK(parse(j).ok());
  j.erase("rope_scaling");
  CHECK(parse(j).ok());
  // transformers v5 style: rope_parameters carries the type and theta.
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  ModelConfig c;
  REQUIRE(parse(j, &c).ok());
  CHECK(c.rope_theta == 1000000.0);
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1000000.0}};
  CHECK(parse(j).code() == StatusCode::kUnsupported);
}

TEST_CASE("config: other unsupported architecture features are kUnsupported", "[config]") {
  struct Case {
    const char* field;
    json value;
    const char* needle;
  };
  for (const Case& k : std::vector<Case>{{"hidden_act", "gelu", "gelu"},
                                         {"attention_bias", true, "attention_bias"},
                                         {"use_sliding_window", true, "use_sliding_window"},
                                         {"model_type", "llama", "llama"}}) {
    json j = msa4b();
    j[k.field] = k.value;
    Status st = parse(j);
    INFO(st.to_string());
    CHECK(st.code() == StatusCode::kUnsupported);
    CHECK(contains(st.message(), k.needle));
  }
}

TEST_CASE("config: router_layer_idx parsing", "[config]") {
  std::vector<int> v;
  REQUIRE(parse_router_layer_idx("all", 4, &v).ok());
  CHECK(v == std::vector<int>{0, 1, 2, 3});
  REQUIRE(parse_router_layer_idx("18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35", 36, &v).ok());
  REQUIRE(v.size() == 18);
  for (int i = 0; i < 18; ++i) CHECK(v[static_cast<size_t>(i)] == 18 + i);
  REQUIRE(parse_router_layer_idx(" 3, 1,1 ,0", 4, &v).ok());  // whitespace, unsorted, duplicate
  CHECK(v == std::vector<int>{0, 1, 3});
  REQUIRE(parse_router_layer_idx("007", 8, &v).ok());
  CHECK(v == std::vector<int>{7});
  for (const char* bad :
       {"36", "18,36", "-1", "x", "", "1,,2", "1,", "all,1", "1.5", "99999999999999999999999", "ALL"}) {
    INFO(bad);
    CHECK(parse_router_layer_idx(bad, 36, &v).code() == StatusCode::kConfig);
  }
  Status st = parse_router_layer_idx("18,36", 36, &v);
  CHECK(contains(st.message(), "36"));
  CHECK(contains(st.message(), "[0, 36)"));

  // Through config.json: the message names the key, "all" covers every layer.
  json j = msa4b();
  j["msa_config"]["router_layer_idx"] = "0,36";
  st = parse(j);
  CHECK(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), "msa_config.router_layer_idx"));
  CHECK(contains(st.message(), kPath));
  j["msa_config"]["router_layer_idx"] = 18;  // must be a string
  CHECK(parse(j).code() == StatusCode::kConfig);
  j["msa_config"]["router_layer_idx"] = "all";
  ModelConfig c;
  REQUIRE(parse(j, &c).ok());
  CHECK(c.msa.router_layers.size() == 36);
  CHECK(c.is_router_layer(0));
  CHECK(c.is_router_layer(35));
}

TEST_CASE("config: missing msa_config keys take the resave defaults", "[config]") {
  json j = msa4b();
  j["msa_config"] = json::object();
  ModelConfig c;
  REQUIRE(parse(j, &c).ok());
  REQUIRE(c.msa.present);
  CHECK(c.msa.router_layer_idx == "all");
  CHECK(c.msa.router_layers.size() == 36);
  CHECK(c.msa.top_k_docs == 2);
  CHECK(c.msa.pooling_kernel_size == 2);
  CHECK_FALSE(c.msa.decouple_router);
  CHECK(c.msa.aux_loss_method == "INFONCE");
  CHECK(c.msa.head_reduce == HeadReduce::kMax);
  CHECK(c.msa.query_reduce == QueryReduce::kMax);
  CHECK(c.msa.chunk_reduce == ChunkReduce::kMax);
  CHECK(c.msa.normalize_routing());
  CHECK(c.msa.scale_routing());

  for (const char* key : {"pooling_kernel_size", "top_k_docs"}) {
    for (json bad : {json(0), json(-4), json("64"), json(2.5)}) {
      json k = msa4b();
      k["msa_config"][key] = bad;
      Status st = parse(k);
      INFO(key << " = " << bad.dump());
      CHECK(st.code() == StatusCode::kConfig);
      CHECK(contains(st.message(), key));
    }
  }
  json k = msa4b();
  k["msa_config"]["decouple_router"] = "true";
  CHECK(parse(k).code() == StatusCode::kConfig);
}

TEST_CASE("config: every reduce method value, and invalid ones", "[config]") {
  auto with = [](const char* key, const char* value, ModelConfig* c) {
    json j = msa4b();
    j["msa_config"][key] = value;
    return parse(j, c);
  };
  ModelConfig c;
  REQUIRE(with("head_reduce_method", "max", &c).ok());
  CHECK(c.msa.head_reduce == HeadReduce::kMax);
  REQUIRE(with("head_reduce_method", "mean", &c).ok());
  CHECK(c.msa.head_reduce == HeadReduce::kMean);
  REQUIRE(with("query_reduce_method", "max", &c).ok());
  CHECK(c.msa.query_reduce == QueryReduce::kMax);
  REQUIRE(with("query_reduce_method", "mean", &c).ok());
  CHECK(c.msa.query_reduce == QueryReduce::kMean);
  REQUIRE(with("query_reduce_method", "last", &c).ok());
  CHECK(c.msa.query_reduce == QueryReduce::kLast);
  REQUIRE(with("chunk_reduce_method", "max", &c).ok());
  CHECK(c.msa.chunk_reduce == ChunkReduce::kMax);
  REQUIRE(with("chunk_reduce_method", "mean", &c).ok());
  CHECK(c.msa.chunk_reduce == ChunkReduce::kMean);
  CHECK(std::string(head_reduce_name(HeadReduce::kMean)) == "mean");
  CHECK(std::string(query_reduce_name(QueryReduce::kLast)) == "last");
  CHECK(std::string(chunk_reduce_name(ChunkReduce::kMax)) == "max");

  struct Bad {
    const char* key;
    const char* value;
    const char* allowed;
  };
  for (const Bad& b : std::vector<Bad>{{"head_reduce_method", "last", "\"max\", \"mean\""},
                                       {"head_reduce_method", "MAX", "\"max\", \"mean\""},
                                       {"query_reduce_method", "min", "\"max\", \"mean\", \"last\""},
                                       {"chunk_reduce_method", "sum", "\"max\", \"mean\""},
                                       {"chunk_reduce_method", "", "\"max\", \"mean\""}}) {
    Status st = with(b.key, b.value, &c);
    INFO(st.to_string());
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), b.key));
    CHECK(contains(st.message(), b.allowed));
  }
  json j = msa4b();
  j["msa_config"]["head_reduce_method"] = 1;
  CHECK(parse(j).code() == StatusCode::kConfig);
}

TEST_CASE("config: aux_loss_method values decide normalisation and scaling", "[config]") {
  struct Case {
    const char* method;
    bool decouple;
    bool normalize;
    bool scale;
  };
  for (const Case& k : std::vector<Case>{{"INFONCE", false, true, true},
                                         {"INFONCE", true, true, false},
                                         {"INFONCE_FOCAL", true, false, true},
                                         {"BCE", false, false, true},
                                         {"INFONCE_DECOUPLE", true, false, true},
                                         {"INFONCE_DECOUPLE_FOCAL", true, false, true}}) {
    json j = msa4b();
    j["msa_config"]["aux_loss_method"] = k.method;
    j["msa_config"]["decouple_router"] = k.decouple;
    ModelConfig c;
    REQUIRE(parse(j, &c).ok());
    INFO(k.method);
    CHECK(c.msa.aux_loss_method == k.method);
    CHECK(c.msa.normalize_routing() == k.normalize);
    CHECK(c.msa.scale_routing() == k.scale);
  }
  for (const char* bad : {"infonce", "MSE", "INFONCE "}) {
    json j = msa4b();
    j["msa_config"]["aux_loss_method"] = bad;
    Status st = parse(j);
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), "aux_loss_method"));
    CHECK(contains(st.message(), "INFONCE_DECOUPLE_FOCAL"));
  }
}

TEST_CASE("config: eos_token_id as an int or a list", "[config]") {
  json j = msa4b();
  j["eos_token_id"] = json::array({151645, 151643});
  ModelConfig c;
  REQUIRE(parse(j, &c).ok());
  CHECK(c.eos_token_ids == std::vector<int32_t>{151645, 151643});
  CHECK(c.generation.eos_token_ids == c.eos_token_ids);
  j["eos_token_id"] = 7;
  REQUIRE(parse(j, &c).ok());
  CHECK(c.eos_token_ids == std::vector<int32_t>{7});
  j["eos_token_id"] = nullptr;
  REQUIRE(parse(j, &c).ok());
  CHECK(c.eos_token_ids.empty());
}

TEST_CASE("config: generation_config.json parsing", "[config]") {
  GenerationDefaults g;
  const std::string gpath = "/ckpt/generation_config.json";
  const std::string text = R"({"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
      "pad_token_id": 151643, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
      "transformers_version": "4.51.3"})";
  REQUIRE(parse_generation_config(text, gpath, &g).ok());
  CHECK(g.present);
  CHECK(g.do_sample);
  CHECK(g.temperature == Approx(0.7f));
  CHECK(g.top_p == Approx(0.8f));
  CHECK(g.top_k == 20);
  CHECK(g.eos_token_ids == std::vector<int32_t>{151645, 151643});
  CHECK(g.pad_token_id == 151643);

  REQUIRE(parse_generation_config(R"({"eos_token_id": 2})", gpath, &g).ok());
  CHECK(g.eos_token_ids == std::vector<int32_t>{2});
  CHECK_FALSE(g.do_sample);
  CHECK(g.temperature == 1.0f);
  CHECK(g.top_k == 0);
  CHECK(g.pad_token_id == -1);

  for (const char* bad :
       {R"({"do_sample": "yes"})", R"({"top_p": 1.5})", R"({"top_k": -1})", R"({"temperature": "hot"})",
        R"({"eos_token_id": [1, "x"]})", R"({"pad_token_id": -3})", "{", "3"}) {
    Status st = parse_generation_config(bad, gpath, &g);
    INFO(bad << " -> " << st.to_string());
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), gpath));
  }
}

TEST_CASE("config: load_model_config reads config.json and generation_config.json", "[config]") {
  TempDir dir("load");
  ModelConfig c;
  Status st = load_model_config(dir.path.string(), &c);
  CHECK(st.code() == StatusCode::kIo);
  CHECK(contains(st.message(), "config.json"));

  dir.write("config.json", msa4b().dump(2));
  REQUIRE(load_model_config(dir.path.string(), &c).ok());
  CHECK_FALSE(c.generation.present);
  CHECK(c.generation.eos_token_ids == std::vector<int32_t>{151645});

  dir.write("generation_config.json", R"({"do_sample": true, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
      "eos_token_id": [151645, 151643], "pad_token_id": 151643})");
  REQUIRE(load_model_config(dir.path.string() + "/", &c).ok());
  CHECK(c.generation.present);
  CHECK(c.generation.top_k == 20);
  CHECK(c.generation.eos_token_ids == std::vector<int32_t>{151645, 151643});
  CHECK(c.eos_token_ids == std::vector<int32_t>{151645});

  // No eos in generation_config.json: the config's ids are used.
  dir.write("generation_config.json", R"({"do_sample": false})");
  REQUIRE(load_model_config(dir.path.string(), &c).ok());
  CHECK(c.generation.present);
  CHECK(c.generation.eos_token_ids == std::vector<int32_t>{151645});

  dir.write("generation_config.json", R"({"top_k": "many"})");
  st = load_model_config(dir.path.string(), &c);
  CHECK(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), (dir.path / "generation_config.json").string()));
  CHECK(contains(st.message(), "top_k"));

  dir.write("config.json", "{\"model_type\": \"msa\"}");
  st = load_model_config(dir.path.string(), &c);
  CHECK(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), (dir.path / "config.json").string()));
}

TEST_CASE("config: random mutations never throw", "[config]") {
  const std::string good = msa4b().dump();
  std::mt19937 rng(99);
  for (int i = 0; i < 3000; ++i) {
    std::string s = good;
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) s[rng() % s.size()] = static_cast<char>(rng() & 0x7f);
    ModelConfig c;
    Status st = Status::Ok();
    REQUIRE_NOTHROW(st = parse_model_config(s, kPath, &c));
    if (!st.ok()) CHECK(contains(st.message(), kPath));
  }
}

TEST_CASE("config: every size is bounded (MSA_MAX_LAYERS, MSA_MAX_VOCAB, config_limits)", "[config][limits]") {
  auto refused = [](const char* key, const json& value, const char* must_contain) {
    json j = msa4b();
    j[key] = value;
    ModelConfig c;
    Status st = parse(j, &c);
    INFO(key << " = " << value.dump() << ": " << st.to_string());
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), key));
    CHECK(contains(st.message(), must_contain));
  };
  auto accepted = [](const char* key, const json& value) {
    json j = msa4b();
    j[key] = value;
    Status st = parse(j);
    INFO(key << " = " << value.dump() << ": " << st.to_string());
    CHECK(st.ok());
  };
  // Before: num_hidden_layers = 10^6 was accepted (and the loader then spent seconds and gigabytes).
  refused("num_hidden_layers", 1000000, "out of range [1, 1024]");
  refused("num_hidden_layers", 1025, "out of range");
  accepted("num_hidden_layers", 1024);
  refused("vocab_size", (1 << 24) + 1, "out of range [1, 16777216]");
  refused("vocab_size", int64_t{1} << 31, "out of range");
  accepted("vocab_size", 1 << 24);
  refused("hidden_size", config_limits::kMaxHiddenSize + 1, "out of range");
  refused("intermediate_size", config_limits::kMaxIntermediateSize + 1, "out of range");
  refused("num_attention_heads", config_limits::kMaxHeads + 8, "out of range");
  refused("num_key_value_heads", config_limits::kMaxHeads + 8, "out of range");
  refused("head_dim", config_limits::kMaxHeadDim + 1, "out of range");
  refused("bos_token_id", 1 << 24, "out of range");
  refused("eos_token_id", 1 << 24, "out-of-range token id");
  refused("eos_token_id", json::array({1, 1 << 24}), "out-of-range token id");
  refused("eos_token_id", std::vector<int>(static_cast<size_t>(config_limits::kMaxEosTokens) + 1, 7), "lists");
  accepted("eos_token_id", std::vector<int>(static_cast<size_t>(config_limits::kMaxEosTokens), 7));
  {
    // heads x head_dim above its bound although each is within its own.
    json j = msa4b();
    j["num_attention_heads"] = 4096;
    j["num_key_value_heads"] = 4096;
    j["head_dim"] = 4096;
    Status st = parse(j);
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), "num_attention_heads x head_dim"));
  }
  {
    // head_dim derived from hidden_size / heads is bounded too.
    json j = msa4b();
    j.erase("head_dim");
    j["hidden_size"] = config_limits::kMaxHiddenSize;
    j["num_attention_heads"] = 2;
    j["num_key_value_heads"] = 2;
    Status st = parse(j);
    CHECK(st.code() == StatusCode::kConfig);
    CHECK(contains(st.message(), "head_dim"));
  }
  // generation_config.json ids and lists.
  GenerationDefaults g;
  CHECK(parse_generation_config("{\"eos_token_id\": 16777216}", "/g.json", &g).code() == StatusCode::kConfig);
  CHECK(parse_generation_config("{\"pad_token_id\": 16777216}", "/g.json", &g).code() == StatusCode::kConfig);
  CHECK(parse_generation_config(json{{"eos_token_id", std::vector<int>(2000, 1)}}.dump(), "/g.json", &g).code() ==
        StatusCode::kConfig);
  CHECK(parse_generation_config("{\"eos_token_id\": [16777215, 0]}", "/g.json", &g).ok());
}

TEST_CASE("init_model: every msa_config override is checked; no override writes an unloadable checkpoint",
          "[config][limits]") {
  TempDir dir("init_overrides");
  const fs::path out = dir.path / "ckpt";
  auto refused = [&](const std::string& overrides, const std::string& key) {
    InitModelOptions o;
    o.preset = "micro";
    o.out_dir = out.string();
    o.msa_config_json = overrides;
    Status st = init_model(o);
    INFO(overrides << ": " << st.to_string());
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK(contains(st.message(), key));
    CHECK_FALSE(fs::exists(out / "config.json"));  // nothing written
  };
  // Before: these three were written as checkpoints that msa_model_load then refused.
  refused(R"({"pooling_kernel_size": "x"})", "pooling_kernel_size");
  refused(R"({"pooling_kernel_size": -4})", "pooling_kernel_size");
  refused(R"({"pooling_kernel_size": 0})", "pooling_kernel_size");
  refused(R"({"pooling_kernel_size": 4.5})", "pooling_kernel_size");
  refused(R"({"pooling_kernel_size": null})", "pooling_kernel_size");
  refused(R"({"pooling_kernel_size": 4294967296})", "pooling_kernel_size");
  refused(R"({"top_k_docs": 0})", "top_k_docs");
  refused(R"({"router_layer_idx": "5"})", "router_layer_idx");
  refused(R"({"router_layer_idx": "1,,0"})", "router_layer_idx");
  refused(R"({"router_layer_idx": 1})", "router_layer_idx");
  refused(R"({"decouple_router": "yes"})", "decouple_router");
  refused(R"({"aux_loss_method": "FOCAL"})", "aux_loss_method");
  refused(R"({"head_reduce_method": "min"})", "head_reduce_method");
  refused(R"({"query_reduce_method": 1})", "query_reduce_method");
  refused(R"({"chunk_reduce_method": "last"})", "chunk_reduce_method");
  refused(R"({"aux_loss": 1})", "aux_loss");
  refused(R"({"rewrite_position": "true"})", "rewrite_position");
  refused(R"({"lmloss_weigth": -1})", "lmloss_weigth");
  refused(R"({"auxloss_weight": "0.1"})", "auxloss_weight");
  refused(R"({"infonce_loss_temp": 0})", "infonce_loss_temp");
  refused(R"({"decouple_pooling_mode": 3})", "decouple_pooling_mode");
  refused(R"({"no_such_key": 1})", "no_such_key");
  refused(R"([1, 2])", "JSON object");
  refused(R"({"pooling_kernel_size": )", "JSON object");

  // Accepted overrides load with the loader's parser and mean what they say (integers for the float keys too).
  InitModelOptions o;
  o.preset = "micro";
  o.out_dir = out.string();
  o.msa_config_json = R"({"pooling_kernel_size": 8, "router_layer_idx": " 0, 1", "decouple_router": false,
                          "lmloss_weigth": 2, "aux_loss_method": "BCE", "head_reduce_method": "max"})";
  Status st = init_model(o);
  INFO(st.to_string());
  REQUIRE(st.ok());
  ModelConfig c;
  st = load_model_config(out.string(), &c);
  INFO(st.to_string());
  REQUIRE(st.ok());
  CHECK(c.msa.pooling_kernel_size == 8);
  CHECK(c.msa.router_layers == std::vector<int>{0, 1});
  CHECK_FALSE(c.msa.decouple_router);
  CHECK(c.msa.aux_loss_method == "BCE");
}
