#include "model/device_model.h"

#include <string>
#include <utility>

#include "backend/registry.h"
#include "model/model.h"

namespace msa {

namespace {

Status check_matrix(const TensorView& t, int64_t rows, int64_t cols, const std::string& name) {
  if (t.data == nullptr || t.ndim() != 2 || t.dim(0) != rows || t.dim(1) != cols) {
    return Error(StatusCode::kShape, "weight ", name, " is ", shape_to_string(t.shape), t.data ? "" : " (unbound)",
                 ", expected [", rows, ", ", cols, "]");
  }
  return Status::Ok();
}

Status check_vector(const TensorView& t, int64_t n, const std::string& name) {
  if (t.data == nullptr || t.ndim() != 1 || t.dim(0) != n) {
    return Error(StatusCode::kShape, "weight ", name, " is ", shape_to_string(t.shape), t.data ? "" : " (unbound)",
                 ", expected [", n, "]");
  }
  return Status::Ok();
}

// Every view the forward reads must match the config: backends trust weight shapes for the sizes of the
// activations they read.
Status check_weights(const ModelWeights& w, const ModelConfig& c) {
  const int64_t hidden = c.hidden_size, qw = c.num_attention_heads * c.head_dim;
  const int64_t kvw = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  if (static_cast<int64_t>(w.layers.size()) != c.num_hidden_layers) {
    return Error(StatusCode::kShape, w.layers.size(), " bound layers, config has ", c.num_hidden_layers);
  }
  MSA_RETURN_IF_ERROR(check_matrix(w.embed_tokens, c.vocab_size, hidden, "model.embed_tokens.weight"));
  MSA_RETURN_IF_ERROR(check_vector(w.final_norm, hidden, "model.norm.weight"));
  if (!w.lm_head.empty()) MSA_RETURN_IF_ERROR(check_matrix(w.lm_head, c.vocab_size, hidden, "lm_head.weight"));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    MSA_RETURN_IF_ERROR(check_vector(l.input_norm, hidden, p + "input_layernorm.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.q_proj, qw, hidden, p + "self_attn.q_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.k_proj, kvw, hidden, p + "self_attn.k_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.v_proj, kvw, hidden, p + "self_attn.v_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.o_proj, hidden, qw, p + "self_attn.o_proj.weight"));
    MSA_RETURN_IF_ERROR(check_vector(l.q_norm, c.head_dim, p + "self_attn.q_norm.weight"));
    MSA_RETURN_IF_ERROR(check_vector(l.k_norm, c.head_dim, p + "self_attn.k_norm.weight"));
    MSA_RETURN_IF_ERROR(check_vector(l.post_norm, hidden, p + "post_attention_layernorm.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.gate_proj, inter, hidden, p + "mlp.gate_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.up_proj, inter, hidden, p + "mlp.up_proj.weight"));
    MSA_RETURN_IF_ERROR(check_matrix(l.down_proj, hidden, inter, p + "mlp.down_proj.weight"));
    if (!l.router_q.empty()) MSA_RETURN_IF_ERROR(check_matrix(l.router_q, qw, hidden, p + "self_attn.router_q_proj.weight"));
    if (!l.router_k.empty()) MSA_RETURN_IF_ERROR(check_matrix(l.router_k, kvw, hidden, p + "self_attn.router_k_proj.weight"));
  }
  if (c.msa.present && c.msa.decouple_router) {
    for (int l : c.msa.router_layers) {
      if (l < 0 || l >= c.num_hidden_layers) continue;  // the config parser rejects these
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      if (lw.router_q.empty() || lw.router_k.empty()) {
        return Error(StatusCode::kMissingTensor, "router layer ", l, " has no router_q_proj / router_k_proj weight");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Status check_forward_config(const ModelConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0) {
    return Error(StatusCode::kConfig, "inconsistent model config (heads ", c.num_attention_heads, ", kv heads ",
                 c.num_key_value_heads, ", head_dim ", c.head_dim, ")");
  }
  return Status::Ok();
}

Status DeviceWeights::prepare(const ModelWeights& host, const ModelConfig& config, Backend* backend,
                              std::unique_ptr<DeviceWeights>* out) {
  if (out == nullptr || backend == nullptr) {
    return Error(StatusCode::kInvalidArgument, "DeviceWeights::prepare: backend and out are required");
  }
  out->reset();
  MSA_RETURN_IF_ERROR(check_forward_config(config));
  MSA_RETURN_IF_ERROR(check_weights(host, config));
  std::unique_ptr<DeviceWeights> dw(new DeviceWeights());
  dw->config_ = config;
  dw->be_ = backend;
  dw->w_.layers.resize(host.layers.size());
  auto prep = [&](const TensorView& h, TensorView* d) -> Status {
    DeviceBuffer storage;
    MSA_RETURN_IF_ERROR(backend->prepare_weight(h, d, &storage));
    if (!storage.empty()) {
      dw->device_bytes_ += static_cast<int64_t>(storage.bytes());
      dw->storage_.push_back(std::move(storage));
    }
    return Status::Ok();
  };
  MSA_RETURN_IF_ERROR(prep(host.embed_tokens, &dw->w_.embed_tokens));
  MSA_RETURN_IF_ERROR(prep(host.final_norm, &dw->w_.final_norm));
  if (!host.lm_head.empty()) {
    if (host.lm_head.data == host.embed_tokens.data) {
      dw->w_.lm_head = dw->w_.embed_tokens;  // tied: one copy on the device
    } else {
      MSA_RETURN_IF_ERROR(prep(host.lm_head, &dw->w_.lm_head));
    }
  }
  for (size_t i = 0; i < host.layers.size(); ++i) {
    const LayerWeights& h = host.layers[i];
    LayerWeights& d = dw->w_.layers[i];
    for (auto [src, dst] : {std::pair{&h.input_norm, &d.input_norm}, {&h.q_proj, &d.q_proj}, {&h.k_proj, &d.k_proj},
                            {&h.v_proj, &d.v_proj}, {&h.o_proj, &d.o_proj}, {&h.q_norm, &d.q_norm},
                            {&h.k_norm, &d.k_norm}, {&h.router_q, &d.router_q}, {&h.router_k, &d.router_k},
                            {&h.post_norm, &d.post_norm}, {&h.gate_proj, &d.gate_proj}, {&h.up_proj, &d.up_proj},
                            {&h.down_proj, &d.down_proj}}) {
      if (src->empty()) continue;
      MSA_RETURN_IF_ERROR(prep(*src, dst));
    }
  }
  MSA_RETURN_IF_ERROR(backend->synchronize());
  *out = std::move(dw);
  return Status::Ok();
}

const ModelConfig& DeviceModel::config() const { return model_.config(); }

Status DeviceModel::create(const Model& model, Backend* backend, std::unique_ptr<DeviceModel>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceModel::create: out is null");
  out->reset();
  std::unique_ptr<DeviceModel> dm(new DeviceModel(model));
  if (backend == nullptr) {
    MSA_RETURN_IF_ERROR(create_backend(BackendParams(), &dm->owned_));
    backend = dm->owned_.get();
  }
  MSA_RETURN_IF_ERROR(DeviceWeights::prepare(model.weights(), model.config(), backend, &dm->weights_));
  *out = std::move(dm);
  return Status::Ok();
}

}  // namespace msa
