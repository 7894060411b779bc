// Writes a checkpoint with random weights in the exact MSA-4B layout (config.json with model_type "msa"
// and the full msa_config block, generation_config.json, model.safetensors in bf16, plus the tokenizer
// files copied from a directory). Used by `msa init-model` for the demo and for integration tests without an
// 8 GB download, and with the msa-4b-shape preset for benchmarks. No torch involved.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace msa {

struct InitModelOptions {
  std::string preset = "tiny";  // "micro" | "tiny" | "msa-4b-shape"
  uint64_t seed = 0;
  // Overrides of msa_config keys, as JSON text of an object (e.g. {"head_reduce_method": "max",
  // "decouple_router": false, "router_layer_idx": "all"}); empty: the preset's values. Router projection
  // tensors are written exactly when the resulting decouple_router is true.
  std::string msa_config_json;
  std::string tokenizer_dir;    // holds tokenizer.json and tokenizer_config.json; empty: none copied
  std::string out_dir;
};

// Presets: micro (2 layers, hidden 32: test fixtures), tiny (4 layers, hidden 128: the demo), msa-4b-shape
// (the real MSA-4B shapes: benchmarks); all with the full 151,936-token Qwen3 vocabulary.
// Errors: kInvalidArgument (unknown preset, empty out_dir, override JSON that is not an object, an unknown key,
// a value of the wrong JSON type or out of range — the message names the key; every override is checked by
// the loader's own config parser before anything is written, so no override yields a checkpoint that cannot
// load), kIo (cannot create/write), kTokenizer (tokenizer
// files missing in tokenizer_dir).
Status init_model(const InitModelOptions& options);

}  // namespace msa
