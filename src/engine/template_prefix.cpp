#include "engine/template_prefix.h"

#include <utility>

#include "model/forward.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"

namespace msa {

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

}  // namespace msa
