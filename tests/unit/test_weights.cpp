// bind_weights / count_parameters against tiny checkpoints written with write_safetensors (spec §1.3).
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/weights.h"

using namespace msa;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = fs::current_path() /
           ("msa_tmp_w_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

bool contains(const std::string& s, const std::string& n) { return s.find(n) != std::string::npos; }

// 3 layers, router layers 1 and 2, decoupled router, GQA 4/2, head_dim 4 (!= hidden/heads), tied embeddings.
ModelConfig tiny_config(bool decouple = true, bool tied = true) {
  ModelConfig c;
  c.model_type = "msa";
  c.vocab_size = 32;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.tie_word_embeddings = tied;
  c.msa.present = true;
  c.msa.router_layer_idx = "1,2";
  c.msa.router_layers = {1, 2};
  c.msa.decouple_router = decouple;
  return c;
}

// Expected names and shapes for a config (spec §1.3), lm_head included only when `with_lm_head`.
std::map<std::string, std::vector<int64_t>> expected_tensors(const ModelConfig& c, bool with_lm_head) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim;
  const int64_t in = c.intermediate_size;
  std::map<std::string, std::vector<int64_t>> m;
  m["model.embed_tokens.weight"] = {c.vocab_size, h};
  m["model.norm.weight"] = {h};
  if (with_lm_head) m["lm_head.weight"] = {c.vocab_size, h};
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    m[p + "input_layernorm.weight"] = {h};
    m[p + "self_attn.q_proj.weight"] = {q, h};
    m[p + "self_attn.k_proj.weight"] = {kv, h};
    m[p + "self_attn.v_proj.weight"] = {kv, h};
    m[p + "self_attn.o_proj.weight"] = {h, q};
    m[p + "self_attn.q_norm.weight"] = {c.head_dim};
    m[p + "self_attn.k_norm.weight"] = {c.head_dim};
    if (c.msa.present && c.msa.decouple_router && c.is_router_layer(i)) {
      m[p + "self_attn.router_q_proj.0.weight"] = {q, h};
      m[p + "self_attn.router_k_proj.0.weight"] = {kv, h};
    }
    m[p + "post_attention_layernorm.weight"] = {h};
    m[p + "mlp.gate_proj.weight"] = {in, h};
    m[p + "mlp.up_proj.weight"] = {in, h};
    m[p + "mlp.down_proj.weight"] = {h, in};
  }
  return m;
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Random bf16 data for every tensor of `shapes`, kept alive for the writer.
struct Fixture {
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, DType> dtypes;  // default BF16
  std::map<std::string, std::vector<uint8_t>> data;

  explicit Fixture(std::map<std::string, std::vector<int64_t>> s) : shapes(std::move(s)) {}

  std::vector<TensorToWrite> tensors() {
    std::mt19937 rng(7);
    std::vector<TensorToWrite> out;
    for (const auto& [name, shape] : shapes) {
      DType dt = dtypes.count(name) ? dtypes[name] : DType::kBF16;
      std::vector<uint8_t>& bytes = data[name];
      bytes.resize(static_cast<size_t>(numel(shape)) * dtype_size(dt));
      for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng() & 0xff);
      out.push_back({name, dt, shape, bytes.data()});
    }
    return out;
  }

  std::string write(const TempDir& dir, const std::string& name = "model.safetensors") {
    const std::string path = dir.file(name);
    Status st = write_safetensors(path, tensors(), {{"format", "pt"}});
    REQUIRE(st.ok());
    return path;
  }
};

Status open_and_bind(const std::string& path, const ModelConfig& c, SafetensorsSet* set, ModelWeights* w) {
  Status st = SafetensorsSet::open_file(path, set);
  if (!st.ok()) return st;
  return bind_weights(*set, c, w);
}

}  // namespace

TEST_CASE("weights: a complete tiny MSA checkpoint binds with exact shapes", "[weights]") {
  TempDir dir("ok");
  const ModelConfig c = tiny_config();
  Fixture fx(expected_tensors(c, false));
  const std::string path = fx.write(dir);
  SafetensorsSet set;
  ModelWeights w;
  Status st = open_and_bind(path, c, &set, &w);
  INFO(st.to_string());
  REQUIRE(st.ok());
  REQUIRE(w.layers.size() == 3);
  CHECK(w.embed_tokens.shape == std::vector<int64_t>{32, 8});
  CHECK(w.embed_tokens.dtype == DType::kBF16);
  CHECK(w.embed_tokens.data == set.find("model.embed_tokens.weight")->view.data);
  CHECK(w.lm_head.data == w.embed_tokens.data);  // tied and absent
  CHECK(w.final_norm.shape == std::vector<int64_t>{8});
  for (int i = 0; i < 3; ++i) {
    const LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    CHECK(l.q_proj.shape == std::vector<int64_t>{16, 8});
    CHECK(l.k_proj.shape == std::vector<int64_t>{8, 8});
    CHECK(l.o_proj.shape == std::vector<int64_t>{8, 16});
    CHECK(l.q_norm.shape == std::vector<int64_t>{4});
    CHECK(l.down_proj.shape == std::vector<int64_t>{8, 12});
    CHECK(l.gate_proj.data == set.find(p + "mlp.gate_proj.weight")->view.data);
    CHECK(l.router_q.empty() == (i == 0));
    CHECK(l.router_k.empty() == (i == 0));
    if (i > 0) {
      CHECK(l.router_q.shape == std::vector<int64_t>{16, 8});
      CHECK(l.router_k.shape == std::vector<int64_t>{8, 8});
      CHECK(l.router_k.data == set.find(p + "self_attn.router_k_proj.0.weight")->view.data);
    }
  }
  int64_t expected = 0;
  for (const auto& [name, shape] : fx.shapes) expected += numel(shape);
  CHECK(count_parameters(w, c) == expected);
}

TEST_CASE("weights: lm_head handling for tied and untied embeddings", "[weights]") {
  TempDir dir("lmhead");
  SECTION("tied and present: the file's lm_head is used, embeddings counted once") {
    const ModelConfig c = tiny_config();
    Fixture fx(expected_tensors(c, true));
    SafetensorsSet set;
    ModelWeights w;
    REQUIRE(open_and_bind(fx.write(dir), c, &set, &w).ok());
    CHECK(w.lm_head.data == set.find("lm_head.weight")->view.data);
    CHECK(w.lm_head.data != w.embed_tokens.data);
    CHECK(count_parameters(w, c) == [&] {
      int64_t n = 0;
      for (const auto& [name, shape] : fx.shapes) n += name == "lm_head.weight" ? 0 : numel(shape);
      return n;
    }());
  }
  SECTION("untied and present: counted separately") {
    const ModelConfig c = tiny_config(true, false);
    Fixture fx(expected_tensors(c, true));
    SafetensorsSet set;
    ModelWeights w;
    REQUIRE(open_and_bind(fx.write(dir), c, &set, &w).ok());
    int64_t n = 0;
    for (const auto& [name, shape] : fx.shapes) n += numel(shape);
    CHECK(count_parameters(w, c) == n);
  }
  SECTION("untied and absent: kMissingTensor") {
    const ModelConfig c = tiny_config(true, false);
    Fixture fx(expected_tensors(c, false));
    SafetensorsSet set;
    ModelWeights w;
    Status st = open_and_bind(fx.write(dir), c, &set, &w);
    REQUIRE(st.code() == StatusCode::kMissingTensor);
    CHECK(contains(st.message(), "lm_head.weight"));
  }
}

TEST_CASE("weights: missing tensors are kMissingTensor listing them and naming the checkpoint", "[weights]") {
  TempDir dir("missing");
  const ModelConfig c = tiny_config();
  auto shapes = expected_tensors(c, false);
  shapes.erase("model.layers.1.self_attn.router_q_proj.0.weight");
  shapes.erase("model.norm.weight");
  Fixture fx(shapes);
  const std::string path = fx.write(dir);
  SafetensorsSet set;
  ModelWeights w;
  Status st = open_and_bind(path, c, &set, &w);
  REQUIRE(st.code() == StatusCode::kMissingTensor);
  CHECK(contains(st.message(), path));
  CHECK(contains(st.message(), "model.layers.1.self_attn.router_q_proj.0.weight"));
  CHECK(contains(st.message(), "model.norm.weight"));
  CHECK(contains(st.message(), "2 tensors"));
  CHECK(w.layers.empty());  // *out untouched

  // A plain Qwen3 checkpoint loaded with a decoupled-router config: every router projection is missing,
  // the list is cut after 10 names with a count of the rest.
  ModelConfig big = tiny_config();
  big.num_hidden_layers = 12;
  big.msa.router_layers = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  ModelConfig plain = big;
  plain.msa.decouple_router = false;
  Fixture fx2(expected_tensors(plain, false));
  st = open_and_bind(fx2.write(dir, "plain.safetensors"), big, &set, &w);
  REQUIRE(st.code() == StatusCode::kMissingTensor);
  CHECK(contains(st.message(), "24 tensors"));
  CHECK(contains(st.message(), "and 14 more"));
}

TEST_CASE("weights: unknown tensors are kUnexpectedTensor", "[weights]") {
  TempDir dir("unexpected");
  const ModelConfig c = tiny_config();
  auto shapes = expected_tensors(c, false);
  shapes["model.layers.0.self_attn.rotary_emb.inv_freq"] = {2};
  shapes["temperature"] = {};  // known optional extras
  shapes["b"] = {};
  Fixture fx(shapes);
  const std::string path = fx.write(dir);
  SafetensorsSet set;
  ModelWeights w;
  Status st = open_and_bind(path, c, &set, &w);
  REQUIRE(st.code() == StatusCode::kUnexpectedTensor);
  CHECK(contains(st.message(), path));
  CHECK(contains(st.message(), "model.layers.0.self_attn.rotary_emb.inv_freq"));
  CHECK_FALSE(contains(st.message(), "temperature"));

  // Router projections with decouple_router false are unexpected too, with a hint.
  const ModelConfig plain = tiny_config(false);
  Fixture fx2(expected_tensors(c, false));
  st = open_and_bind(fx2.write(dir, "r.safetensors"), plain, &set, &w);
  REQUIRE(st.code() == StatusCode::kUnexpectedTensor);
  CHECK(contains(st.message(), "router_q_proj"));
  CHECK(contains(st.message(), "decouple_router"));

  // temperature and b alone are accepted.
  shapes.erase("model.layers.0.self_attn.rotary_emb.inv_freq");
  Fixture fx3(shapes);
  REQUIRE(open_and_bind(fx3.write(dir, "t.safetensors"), c, &set, &w).ok());
}

TEST_CASE("weights: a wrong shape is kShape with expected and actual shapes and the file", "[weights]") {
  TempDir dir("shape");
  const ModelConfig c = tiny_config();
  auto shapes = expected_tensors(c, false);
  shapes["model.layers.2.self_attn.k_proj.weight"] = {8, 9};
  Fixture fx(shapes);
  const std::string path = fx.write(dir);
  SafetensorsSet set;
  ModelWeights w;
  Status st = open_and_bind(path, c, &set, &w);
  REQUIRE(st.code() == StatusCode::kShape);
  CHECK(contains(st.message(), path));
  CHECK(contains(st.message(), "model.layers.2.self_attn.k_proj.weight"));
  CHECK(contains(st.message(), shape_to_string({8, 9})));
  CHECK(contains(st.message(), shape_to_string({8, 8})));

  // A transposed matrix is a shape error too, as is a 2-D norm.
  shapes = expected_tensors(c, false);
  shapes["model.layers.0.mlp.down_proj.weight"] = {12, 8};
  Fixture fx2(shapes);
  CHECK(open_and_bind(fx2.write(dir, "t.safetensors"), c, &set, &w).code() == StatusCode::kShape);
  shapes = expected_tensors(c, false);
  shapes["model.norm.weight"] = {1, 8};
  Fixture fx3(shapes);
  CHECK(open_and_bind(fx3.write(dir, "n.safetensors"), c, &set, &w).code() == StatusCode::kShape);
}

TEST_CASE("weights: a non-float weight is kDtype; float dtypes may be mixed", "[weights]") {
  TempDir dir("dtype");
  const ModelConfig c = tiny_config();
  Fixture fx(expected_tensors(c, false));
  fx.dtypes["model.layers.1.mlp.up_proj.weight"] = DType::kI32;
  const std::string path = fx.write(dir);
  SafetensorsSet set;
  ModelWeights w;
  Status st = open_and_bind(path, c, &set, &w);
  REQUIRE(st.code() == StatusCode::kDtype);
  CHECK(contains(st.message(), path));
  CHECK(contains(st.message(), "model.layers.1.mlp.up_proj.weight"));
  CHECK(contains(st.message(), "I32"));

  Fixture mixed(expected_tensors(c, false));
  mixed.dtypes["model.embed_tokens.weight"] = DType::kF32;
  mixed.dtypes["model.layers.0.self_attn.q_proj.weight"] = DType::kF16;
  REQUIRE(open_and_bind(mixed.write(dir, "mixed.safetensors"), c, &set, &w).ok());
  CHECK(w.embed_tokens.dtype == DType::kF32);
  CHECK(w.layers[0].q_proj.dtype == DType::kF16);
  CHECK(w.layers[0].k_proj.dtype == DType::kBF16);
}

TEST_CASE("weights: a sharded checkpoint binds and errors name the shard", "[weights]") {
  TempDir dir("sharded");
  const ModelConfig c = tiny_config();
  auto all = expected_tensors(c, false);
  all["model.layers.2.mlp.up_proj.weight"] = {12, 7};  // wrong, lands in shard 2
  std::map<std::string, std::vector<int64_t>> s1, s2;
  for (const auto& [name, shape] : all) (name < "model.layers.2" ? s1 : s2)[name] = shape;
  Fixture f1(s1), f2(s2);
  f1.write(dir, "model-00001-of-00002.safetensors");
  const std::string shard2 = f2.write(dir, "model-00002-of-00002.safetensors");
  std::string index = "{\"metadata\": {}, \"weight_map\": {";
  bool first = true;
  for (const auto& [name, shape] : all) {
    index += std::string(first ? "" : ",") + "\"" + name + "\": \"" +
             (s1.count(name) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") +
             "\"";
    first = false;
  }
  index += "}}";
  REQUIRE(write_file_atomic(dir.file("model.safetensors.index.json"), index).ok());
  SafetensorsSet set;
  REQUIRE(SafetensorsSet::open_dir(dir.path.string(), &set).ok());
  REQUIRE(set.files().size() == 2);
  ModelWeights w;
  Status st = bind_weights(set, c, &w);
  REQUIRE(st.code() == StatusCode::kShape);
  CHECK(contains(st.message(), shard2));

  all["model.layers.2.mlp.up_proj.weight"] = {12, 8};
  s2["model.layers.2.mlp.up_proj.weight"] = {12, 8};
  Fixture f2ok(s2);
  f2ok.write(dir, "model-00002-of-00002.safetensors");
  REQUIRE(SafetensorsSet::open_dir(dir.path.string(), &set).ok());
  REQUIRE(bind_weights(set, c, &w).ok());
  CHECK(w.layers[2].up_proj.data == set.find("model.layers.2.mlp.up_proj.weight")->view.data);
  CHECK(w.layers[0].q_proj.data == set.find("model.layers.0.self_attn.q_proj.weight")->view.data);
}

TEST_CASE("weights: every checkpoint in tests/data/models loads, validates and binds", "[weights]") {
  const fs::path root = fs::path(MSA_TEST_DATA_DIR) / "models";
  REQUIRE(fs::is_directory(root));
  int n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(root)) {
    if (!fs::exists(e.path() / "config.json")) continue;
    INFO(e.path().string());
    ModelConfig c;
    Status st = load_model_config(e.path().string(), &c);
    INFO(st.to_string());
    REQUIRE(st.ok());
    SafetensorsSet set;
    st = SafetensorsSet::open_dir(e.path().string(), &set);
    INFO(st.to_string());
    REQUIRE(st.ok());
    ModelWeights w;
    st = bind_weights(set, c, &w);
    INFO(st.to_string());
    REQUIRE(st.ok());
    REQUIRE(w.layers.size() == static_cast<size_t>(c.num_hidden_layers));
    // Every parameter in the file is bound (lm_head counted once when tied and present).
    int64_t in_file = 0;
    for (const TensorInfo& t : set) {
      if (t.name == "temperature" || t.name == "b" || (c.tie_word_embeddings && t.name == "lm_head.weight"))
        continue;
      in_file += t.view.numel();
    }
    CHECK(count_parameters(w, c) == in_file);
    CHECK(c.generation.present);
    CHECK_FALSE(c.generation.eos_token_ids.empty());
    ++n;
  }
  CHECK(n > 0);
}

namespace {

int64_t max_rss_bytes() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

// A copy of a committed tiny checkpoint whose config.json is edited by `edit`.
void copy_with_config(const TempDir& dir, const std::string& model,
                      const std::function<void(nlohmann::json&)>& edit) {
  const fs::path src = fs::path(MSA_TEST_DATA_DIR) / "models" / model;
  for (const fs::directory_entry& e : fs::directory_iterator(src))
    fs::copy_file(e.path(), dir.path / e.path().filename(), fs::copy_options::overwrite_existing);
  std::ifstream in(src / "config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j);
  std::ofstream(dir.path / "config.json", std::ios::trunc) << j.dump(2);
}

}  // namespace

TEST_CASE("weights: a config.json claiming 10^6 layers is refused before anything is sized by it",
          "[weights][limits]") {
  TempDir dir("layers_bomb");
  copy_with_config(dir, "tiny_tied_f32", [](nlohmann::json& j) {
    j["num_hidden_layers"] = 1000000;
    j["msa_config"]["router_layer_idx"] = "all";
  });
  const int64_t rss0 = max_rss_bytes();
  std::unique_ptr<Model> m;
  ModelLoadOptions o;
  o.load_tokenizer = false;
  Status st = Model::load(dir.path.string(), o, &m);
  // Before: kMissingTensor after building 10^6 layers of names and views (12 s, 3 GB).
  INFO(st.to_string());
  CHECK(st.code() == StatusCode::kConfig);
  CHECK(contains(st.message(), "num_hidden_layers"));
  CHECK(contains(st.message(), "config.json"));
  CHECK(m == nullptr);
  CHECK(max_rss_bytes() - rss0 < (int64_t{256} << 20));
}

TEST_CASE("weights: a config with more layers than the file is kMissingTensor saying so, before binding",
          "[weights][limits]") {
  TempDir dir("layers_more");
  copy_with_config(dir, "tiny_tied_f32", [](nlohmann::json& j) { j["num_hidden_layers"] = 1024; });
  std::unique_ptr<Model> m;
  ModelLoadOptions o;
  o.load_tokenizer = false;
  Status st = Model::load(dir.path.string(), o, &m);
  INFO(st.to_string());
  CHECK(st.code() == StatusCode::kMissingTensor);
  CHECK(contains(st.message(), "num_hidden_layers = 1024"));
  CHECK(contains(st.message(), "layers 0..1 only"));
  CHECK(contains(st.message(), dir.path.string()));

  // bind_weights itself refuses a hand-built config above the limits.
  ModelConfig c = tiny_config();
  SafetensorsSet set;
  ModelWeights w;
  Fixture fx(expected_tensors(c, false));
  REQUIRE(SafetensorsSet::open_file(fx.write(dir, "ok.safetensors"), &set).ok());
  c.num_hidden_layers = 1000000;
  CHECK(bind_weights(set, c, &w).code() == StatusCode::kInvalidArgument);
  c.num_hidden_layers = 4;
  st = bind_weights(set, c, &w);
  CHECK(st.code() == StatusCode::kMissingTensor);
  CHECK(contains(st.message(), "layers 0..2 only"));
  CHECK(w.layers.empty());
}
