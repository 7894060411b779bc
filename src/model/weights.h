// ModelWeights: views of every tensor the forward needs, bound by name from safetensors files and checked
// against the config (spec §1.3). The views point into memory-mapped files owned by a WeightStore.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/config.h"

namespace msa {

struct LayerWeights {
  TensorView input_norm;   // [hidden]
  TensorView q_proj;       // [heads*head_dim, hidden]
  TensorView k_proj;       // [kv_heads*head_dim, hidden]
  TensorView v_proj;       // [kv_heads*head_dim, hidden]
  TensorView o_proj;       // [hidden, heads*head_dim]
  TensorView q_norm;       // [head_dim]
  TensorView k_norm;       // [head_dim]
  TensorView router_q;     // [heads*head_dim, hidden]   router layers with decouple_router only (else empty)
  TensorView router_k;     // [kv_heads*head_dim, hidden] idem
  TensorView post_norm;    // [hidden]
  TensorView gate_proj;    // [intermediate, hidden]
  TensorView up_proj;      // [intermediate, hidden]
  TensorView down_proj;    // [hidden, intermediate]
};

struct ModelWeights {
  TensorView embed_tokens;  // [vocab, hidden]
  TensorView final_norm;    // [hidden]
  TensorView lm_head;       // [vocab, hidden]; equals embed_tokens when tied / absent
  std::vector<LayerWeights> layers;
};

class SafetensorsSet;  // model/safetensors.h

// Binds the tensors of `set` to `out` following the names of spec §1.3. Every expected tensor must exist
// with the expected shape and a float dtype (BF16/F16/F32). The layer count is checked against the file
// before anything is sized by it. Errors: kInvalidArgument (a config above MSA_MAX_LAYERS / MSA_MAX_VOCAB
// or with non-positive sizes), kMissingTensor (the file holds fewer layers than the config: says so; else
// lists all missing names), kUnexpectedTensor (lists unknown names; the optional scalars `temperature` and `b` are known),
// kShape, kDtype. Messages name the file that holds the offending tensor.
Status bind_weights(const SafetensorsSet& set, const ModelConfig& config, ModelWeights* out);

// Total number of parameters bound (embeddings counted once when tied).
int64_t count_parameters(const ModelWeights& w, const ModelConfig& config);

}  // namespace msa
