#include "model/weights.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "core/limits.h"
#include "model/safetensors.h"

namespace msa {

namespace {

constexpr size_t kListLimit = 10;  // names listed in a message before "... and N more"

bool is_weight_dtype(DType t) { return t == DType::kBF16 || t == DType::kF16 || t == DType::kF32; }

std::string list_names(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size() && i < kListLimit; ++i) os << (i ? ", " : "") << names[i];
  if (names.size() > kListLimit) os << ", ... and " << names.size() - kListLimit << " more";
  return os.str();
}

// 1 + the largest i of the tensors named "model.layers.<i>.*" (0 when there is none).
int64_t layers_in_file(const SafetensorsSet& set) {
  static const std::string kPrefix = "model.layers.";
  int64_t n = 0;
  for (const TensorInfo& t : set.tensors()) {
    if (t.name.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    int64_t i = 0;
    size_t k = kPrefix.size(), digits = 0;
    while (k < t.name.size() && t.name[k] >= '0' && t.name[k] <= '9' && digits < 12) {
      i = i * 10 + (t.name[k] - '0');
      ++k;
      ++digits;
    }
    if (digits > 0 && k < t.name.size() && t.name[k] == '.') n = std::max(n, i + 1);
  }
  return n;
}

class Binder {
 public:
  explicit Binder(const SafetensorsSet& set) : set_(set) {}

  // Looks `name` up, records it as known, checks dtype and shape; a missing required tensor is recorded.
  // Returns the tensor (nullptr when absent).
  const TensorInfo* bind(const std::string& name, const std::vector<int64_t>& shape, TensorView* dst,
                         bool required = true) {
    known_.insert(name);
    const TensorInfo* t = set_.find(name);
    if (!t) {
      if (required) missing_.push_back(name);
      return nullptr;
    }
    if (first_error_.ok()) {
      if (!is_weight_dtype(t->dtype)) {
        first_error_ = Error(StatusCode::kDtype, t->file, ": tensor '", name, "': dtype ", t->dtype_name,
                             ", expected BF16, F16 or F32");
      } else if (t->shape != shape) {
        first_error_ = Error(StatusCode::kShape, t->file, ": tensor '", name, "': shape ",
                             shape_to_string(t->shape), ", expected ", shape_to_string(shape));
      }
    }
    *dst = t->view;
    return t;
  }

  void allow(const std::string& name) { known_.insert(name); }

  Status finish(const ModelConfig& config) const {
    if (!missing_.empty()) {
      return Error(StatusCode::kMissingTensor, set_.source(), ": ", missing_.size(), " tensor",
                   missing_.size() == 1 ? " is" : "s are",
                   " missing from the checkpoint: ", list_names(missing_));
    }
    std::vector<std::string> unexpected;
    std::set<std::string> files;
    bool router = false;
    for (const TensorInfo& t : set_.tensors()) {
      if (known_.count(t.name)) continue;
      unexpected.push_back(t.name);
      files.insert(t.file);
      if (t.name.find(".router_") != std::string::npos) router = true;
    }
    if (!unexpected.empty()) {
      std::ostringstream where;
      size_t i = 0;
      for (const std::string& f : files) where << (i++ ? ", " : "") << f;
      return Error(
          StatusCode::kUnexpectedTensor, where.str(), ": ", unexpected.size(), " tensor",
          unexpected.size() == 1 ? "" : "s", " not used by a model_type \"", config.model_type,
          "\" model with this config: ", list_names(unexpected),
          router ? " (router projections exist only in router layers when msa_config.decouple_router is true)"
                 : "");
    }
    return first_error_;
  }

 private:
  const SafetensorsSet& set_;
  std::set<std::string> known_;
  std::vector<std::string> missing_;
  Status first_error_;
};

}  // namespace

Status bind_weights(const SafetensorsSet& set, const ModelConfig& config, ModelWeights* out) {
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = config.num_attention_heads * config.head_dim;
  const int64_t kv_dim = config.num_key_value_heads * config.head_dim;
  const int64_t inter = config.intermediate_size;
  const int64_t vocab = config.vocab_size;
  if (hidden <= 0 || q_dim <= 0 || kv_dim <= 0 || inter <= 0 || vocab <= 0 || config.num_hidden_layers <= 0) {
    return Error(StatusCode::kInvalidArgument, "bind_weights: the config has non-positive dimensions");
  }
  if (config.num_hidden_layers > limits::kMaxLayers || vocab > limits::kMaxVocab) {
    return Error(StatusCode::kInvalidArgument, "bind_weights: the config has ", config.num_hidden_layers,
                 " layers and a vocabulary of ", vocab, " (limits: ", limits::kMaxLayers, " and ",
                 limits::kMaxVocab, ")");
  }
  // Before anything is sized by the layer count: the file must hold tensors for every layer (a small
  // config.json must not make us build names and views for layers that are not there).
  const int64_t file_layers = layers_in_file(set);
  if (config.num_hidden_layers > file_layers) {
    return Error(StatusCode::kMissingTensor, set.source(), ": the config has num_hidden_layers = ",
                 config.num_hidden_layers, " but the checkpoint holds ",
                 file_layers == 0 ? std::string("no model.layers.* tensors")
                                  : "tensors for layers 0.." + std::to_string(file_layers - 1) + " only");
  }
  const bool decouple = config.msa.present && config.msa.decouple_router;

  Binder b(set);
  ModelWeights w;
  b.bind("model.embed_tokens.weight", {vocab, hidden}, &w.embed_tokens);
  b.bind("model.norm.weight", {hidden}, &w.final_norm);
  const TensorInfo* head = b.bind("lm_head.weight", {vocab, hidden}, &w.lm_head, !config.tie_word_embeddings);
  if (!head) w.lm_head = w.embed_tokens;
  // Training-only scalars of the routing loss (spec §1.3): known, unused.
  b.allow("temperature");
  b.allow("b");

  w.layers.resize(static_cast<size_t>(config.num_hidden_layers));
  for (int i = 0; i < static_cast<int>(config.num_hidden_layers); ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    b.bind(p + "input_layernorm.weight", {hidden}, &l.input_norm);
    b.bind(p + "self_attn.q_proj.weight", {q_dim, hidden}, &l.q_proj);
    b.bind(p + "self_attn.k_proj.weight", {kv_dim, hidden}, &l.k_proj);
    b.bind(p + "self_attn.v_proj.weight", {kv_dim, hidden}, &l.v_proj);
    b.bind(p + "self_attn.o_proj.weight", {hidden, q_dim}, &l.o_proj);
    b.bind(p + "self_attn.q_norm.weight", {config.head_dim}, &l.q_norm);
    b.bind(p + "self_attn.k_norm.weight", {config.head_dim}, &l.k_norm);
    if (decouple && config.is_router_layer(i)) {
      b.bind(p + "self_attn.router_q_proj.0.weight", {q_dim, hidden}, &l.router_q);
      b.bind(p + "self_attn.router_k_proj.0.weight", {kv_dim, hidden}, &l.router_k);
    }
    b.bind(p + "post_attention_layernorm.weight", {hidden}, &l.post_norm);
    b.bind(p + "mlp.gate_proj.weight", {inter, hidden}, &l.gate_proj);
    b.bind(p + "mlp.up_proj.weight", {inter, hidden}, &l.up_proj);
    b.bind(p + "mlp.down_proj.weight", {hidden, inter}, &l.down_proj);
  }
  MSA_RETURN_IF_ERROR(b.finish(config));
  *out = std::move(w);
  return Status::Ok();
}

int64_t count_parameters(const ModelWeights& w, const ModelConfig& config) {
  auto n = [](const TensorView& v) -> int64_t { return v.empty() ? 0 : v.numel(); };
  int64_t total = n(w.embed_tokens) + n(w.final_norm);
  if (!config.tie_word_embeddings && w.lm_head.data != w.embed_tokens.data) total += n(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* v :
         {&l.input_norm, &l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.q_norm, &l.k_norm, &l.router_q,
          &l.router_k, &l.post_norm, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      total += n(*v);
    }
  }
  return total;
}

}  // namespace msa
