// Model: a loaded checkpoint — validated config, memory-mapped weights bound by name, and (optionally) the
// tokenizer. Immutable after load; shared read-only by every thread, session and memory bank using it.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace msa {

class Tokenizer;

struct ModelLoadOptions {
  bool load_tokenizer = true;  // require and load <dir>/tokenizer.json (+ tokenizer_config.json)
};

class Model {
 public:
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Loads <dir>/config.json (+ generation_config.json), the safetensors weights (single or sharded) and,
  // when requested, the tokenizer. Errors: see parse_model_config, SafetensorsSet::open_dir, bind_weights,
  // Tokenizer loading.
  static Status load(const std::string& dir, const ModelLoadOptions& options, std::unique_ptr<Model>* out);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }  // null when not loaded
  int64_t n_parameters() const { return n_parameters_; }
  DType weight_dtype() const;  // dtype of the projection weights (layer 0 q_proj)

 private:
  Model();
  std::string dir_;
  ModelConfig config_;
  SafetensorsSet files_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  int64_t n_parameters_ = 0;
};

}  // namespace msa
