#include "engine/engine_common.h"

#include <algorithm>
#include <cmath>

#include "model/forward.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"

namespace msa::engine_detail {

void l2_normalize_heads(float* x, int64_t n_vectors, int64_t dim) {
  for (int64_t r = 0; r < n_vectors; ++r) {
    float* v = x + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(v[i]) * static_cast<double>(v[i]);
    const float norm = static_cast<float>(std::sqrt(ss));
    const float denom = std::max(norm, 1e-12f);
    for (int64_t i = 0; i < dim; ++i) v[i] = v[i] / denom;
  }
}

Status template_head_ids(const Model& model, std::vector<int32_t>* head) {
  const Tokenizer* tok = model.tokenizer();
  if (tok == nullptr) {
    return Error(StatusCode::kInvalidArgument, "the model was loaded without its tokenizer; the engine needs it");
  }
  ChatTemplateIds ids;
  MSA_RETURN_IF_ERROR(chat_template_ids(*tok, &ids));
  if (ids.head.size() != 3) {
    return Error(StatusCode::kUnsupported, "the chat template head \"<|im_start|>user\\n\" is ", ids.head.size(),
                 " tokens with this tokenizer; MSA needs exactly 3 (spec §3.1)");
  }
  *head = std::move(ids.head);
  return Status::Ok();
}

Status compute_template_kv(const Model& model, const std::vector<int32_t>& head, Backend* backend,
                           std::vector<std::vector<float>>* k, std::vector<std::vector<float>>* v) {
  const ModelConfig& c = model.config();
  const int64_t n = static_cast<int64_t>(head.size());
  std::vector<int32_t> pos(head.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  KVContext kv;
  kv.init(c);
  ForwardWorkspace ws;
  ForwardBatch b;
  b.tokens = head.data();
  b.positions = pos.data();
  b.n_tokens = n;
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.keep_kv = true;
  o.backend = backend;
  MSA_RETURN_IF_ERROR(forward(model.weights(), c, b, &kv, o, &ws, nullptr, 0));
  const int64_t width = c.num_key_value_heads * c.head_dim;
  k->assign(kv.layers.size(), {});
  v->assign(kv.layers.size(), {});
  for (size_t l = 0; l < kv.layers.size(); ++l) {
    const LayerKV& layer = kv.layers[l];
    (*k)[l].assign(layer.k(), layer.k() + n * width);
    (*v)[l].assign(layer.v(), layer.v() + n * width);
  }
  return Status::Ok();
}

Status check_bank_matches(const ModelConfig& m, const MemoryBank& bank) {
  const ModelConfig& b = bank.config();
  const int64_t width = m.num_key_value_heads * m.head_dim;
  if (b.num_hidden_layers != m.num_hidden_layers || bank.width() != width ||
      b.msa.router_layers != m.msa.router_layers || b.msa.pooling_kernel_size != m.msa.pooling_kernel_size ||
      b.num_attention_heads != m.num_attention_heads || b.head_dim != m.head_dim ||
      bank.n_router_layers() != static_cast<int>(m.msa.router_layers.size())) {
    return Error(StatusCode::kInvalidArgument, "the memory bank was built for another model shape (bank: ",
                 b.num_hidden_layers, " layers, width ", bank.width(), ", ", b.msa.router_layers.size(),
                 " router layers, pooling ", b.msa.pooling_kernel_size, "; model: ", m.num_hidden_layers,
                 " layers, width ", width, ", ", m.msa.router_layers.size(), " router layers, pooling ",
                 m.msa.pooling_kernel_size, ")");
  }
  for (int l = 0; l < static_cast<int>(m.num_hidden_layers); ++l) {
    if (static_cast<int64_t>(bank.template_k(l).size()) != bank.template_len() * width ||
        static_cast<int64_t>(bank.template_v(l).size()) != bank.template_len() * width) {
      return Error(StatusCode::kInvalidArgument, "the memory bank's template prefix of layer ", l,
                   " has the wrong size");
    }
  }
  return Status::Ok();
}

int64_t utf8_length(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace msa::engine_detail
