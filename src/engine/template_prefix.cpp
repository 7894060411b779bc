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

Status compute_template_kv(const DeviceWeights& weights, const std::vector<int32_t>& head,
                           std::vector<std::vector<float>>* k, std::vector<std::vector<float>>* v) {
  const ModelConfig& c = weights.config();
  const int64_t n = static_cast<int64_t>(head.size());
  std::vector<int32_t> pos(head.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  KVContext kv;
  kv.init(c, weights.backend());
  ForwardWorkspace ws;
  ForwardBatch b;
  b.tokens = head.data();
  b.positions = pos.data();
  b.n_tokens = n;
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.keep_kv = true;
  MSA_RETURN_IF_ERROR(forward(weights, b, &kv, o, &ws, nullptr, 0));
  k->assign(kv.layers.size(), {});
  v->assign(kv.layers.size(), {});
  for (size_t l = 0; l < kv.layers.size(); ++l) MSA_RETURN_IF_ERROR(kv.layers[l].download(&(*k)[l], &(*v)[l]));
  return Status::Ok();
}

}  // namespace msa
