// Shared by the engine tests (test_engine_*.cpp): random MSA checkpoints written with msa::init_model into
// temporary directories (removed at exit), loaded once per process and cached by their recipe.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/status.h"
#include "model/device_model.h"
#include "model/init_model.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"

// REQUIRE that a msa::Status is OK, printing it otherwise.
#define ENGINE_REQUIRE_OK(expr)                 \
  do {                                          \
    const ::msa::Status engine_status_ = (expr); \
    INFO(engine_status_.to_string());           \
    REQUIRE(engine_status_.ok());               \
  } while (0)

namespace engine_test {

namespace fs = std::filesystem;

// Deletes the directories it was given when the process exits.
struct TempDirs {
  std::vector<fs::path> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (const fs::path& d : dirs) fs::remove_all(d, ec);
  }
};

inline fs::path new_temp_dir(const std::string& tag) {
  static TempDirs registry;
  static int counter = 0;
  fs::path d = fs::temp_directory_path() /
               ("msa_engine_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + tag);
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d);
  registry.dirs.push_back(d);
  return d;
}

inline std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

// Edits config.json / generation_config.json of a checkpoint directory.
using ConfigPatch = std::function<void(nlohmann::json& config, nlohmann::json& generation)>;

inline void patch_configs(const fs::path& dir, const ConfigPatch& patch) {
  nlohmann::json cfg = nlohmann::json::parse(read_text(dir / "config.json"));
  nlohmann::json gen = nlohmann::json::parse(read_text(dir / "generation_config.json"));
  patch(cfg, gen);
  write_text(dir / "config.json", cfg.dump(2));
  write_text(dir / "generation_config.json", gen.dump(2));
}

// Writes a checkpoint (init_model preset + msa_config overrides + optional config patch) and returns its dir.
inline fs::path write_checkpoint(const std::string& preset, const std::string& msa_json, uint64_t seed = 0,
                                 const ConfigPatch& patch = nullptr) {
  fs::path dir = new_temp_dir(preset);
  msa::InitModelOptions o;
  o.preset = preset;
  o.seed = seed;
  o.msa_config_json = msa_json;
  o.tokenizer_dir = MSA_SHARED_DIR "/data/qwen3-tokenizer";
  o.out_dir = dir.string();
  msa::Status s = msa::init_model(o);
  if (!s.ok()) throw std::runtime_error("init_model: " + s.to_string());
  if (patch) patch_configs(dir, patch);
  return dir;
}

inline std::unique_ptr<msa::Model> load_model(const fs::path& dir) {
  std::unique_ptr<msa::Model> m;
  msa::Status s = msa::Model::load(dir.string(), msa::ModelLoadOptions(), &m);
  if (!s.ok()) throw std::runtime_error("Model::load: " + s.to_string());
  return m;
}

// A loaded model for (preset, msa_config overrides, seed, patch key), cached for the process.
inline const msa::Model& cached_model(const std::string& preset, const std::string& msa_json, uint64_t seed = 0,
                                      const std::string& patch_key = "", const ConfigPatch& patch = nullptr) {
  static std::map<std::string, std::unique_ptr<msa::Model>> cache;
  const std::string key = preset + "|" + msa_json + "|" + std::to_string(seed) + "|" + patch_key;
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  auto m = load_model(write_checkpoint(preset, msa_json, seed, patch));
  const msa::Model& ref = *m;
  cache.emplace(key, std::move(m));
  return ref;
}

// Text of ids the way the session decodes them: ids without a token (the embedding's padding rows, which a
// random model can sample) give no text.
inline std::string decode_valid(const msa::Tokenizer& tok, const int32_t* ids, size_t n) {
  std::vector<int32_t> valid;
  for (size_t i = 0; i < n; ++i) {
    if (tok.is_valid_id(ids[i])) valid.push_back(ids[i]);
  }
  std::string out;
  msa::Status s = tok.decode(valid.data(), valid.size(), false, &out);
  if (!s.ok()) throw std::runtime_error(s.to_string());
  return out;
}

// `model` bound to a backend of its own from the registry's default (MSA_BACKEND: the suite also runs on the
// guarded backend), cached for the process.
inline const msa::DeviceModel& device(const msa::Model& model) {
  static std::map<const msa::Model*, std::unique_ptr<msa::DeviceModel>> cache;
  auto it = cache.find(&model);
  if (it != cache.end()) return *it->second;
  std::unique_ptr<msa::DeviceModel> dm;
  msa::Status s = msa::DeviceModel::create(model, nullptr, &dm);
  if (!s.ok()) throw std::runtime_error("DeviceModel::create: " + s.to_string());
  const msa::DeviceModel& ref = *dm;
  cache.emplace(&model, std::move(dm));
  return ref;
}

// Host floats into a fresh backend buffer.
inline msa::DeviceBuffer to_backend(msa::Backend* be, const std::vector<float>& host) {
  msa::DeviceBuffer b;
  msa::Status s = msa::upload_vector(be, host.data(), host.size(), &b);
  if (!s.ok()) throw std::runtime_error("upload: " + s.to_string());
  return b;
}

// Backend floats into a host vector.
inline std::vector<float> to_host(msa::Backend* be, const float* p, size_t n) {
  std::vector<float> out;
  msa::Status s = msa::download_vector(be, p, n, &out);
  if (!s.ok()) throw std::runtime_error("download: " + s.to_string());
  return out;
}

// The default micro model: 2 layers (router layer 1), hidden 32, P = 4, decoupled router, INFONCE_DECOUPLE.
inline const msa::Model& micro() { return cached_model("micro", ""); }

}  // namespace engine_test
