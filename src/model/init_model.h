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
  std::string preset = "tiny";  // "tiny" | "msa-4b-shape"
  uint64_t seed = 0;
  std::string tokenizer_dir;    // holds tokenizer.json and tokenizer_config.json; empty: none copied
  std::string out_dir;
};

// Errors: kInvalidArgument (unknown preset, empty out_dir), kIo (cannot create/write), kTokenizer (tokenizer
// files missing in tokenizer_dir).
Status init_model(const InitModelOptions& options);

}  // namespace msa
