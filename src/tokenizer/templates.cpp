#include "tokenizer/templates.h"

namespace msa {

std::string format_user_turn(std::string_view prompt) {
  std::string s;
  s.reserve(kChatHeadText.size() + prompt.size() + kChatTailText.size());
  s.append(kChatHeadText).append(prompt).append(kChatTailText);
  return s;
}

std::string format_document(int64_t id, std::string_view doc) {
  std::string n = std::to_string(id);
  std::string s;
  s.reserve(doc.size() + 2 * n.size() + 32);
  s.append("<|im_start|>[").append(n).append("]. ").append(doc).append("[").append(n).append("]<|im_end|>");
  return s;
}

std::string format_query_block(std::string_view question) {
  std::string s;
  s.reserve(kQueryPrefix.size() + question.size() + kQuerySuffix.size());
  s.append(kQueryPrefix).append(question).append(kQuerySuffix);
  return s;
}

Status chat_template_ids(const Tokenizer& tok, ChatTemplateIds* out) {
  out->head.clear();
  out->tail.clear();
  out->response_head.clear();
  MSA_RETURN_IF_ERROR(tok.encode(kChatHeadText, &out->head));
  MSA_RETURN_IF_ERROR(tok.encode(kChatTailText, &out->tail));
  return tok.encode(kResponseHeadText, &out->response_head);
}

Status encode_document(const Tokenizer& tok, int64_t id, std::string_view doc, std::vector<int32_t>* ids) {
  return tok.encode(format_document(id, doc), ids);
}

Status encode_query(const Tokenizer& tok, std::string_view question, std::vector<int32_t>* ids,
                    std::vector<int32_t>* doc_ids, size_t* n_routing) {
  ids->clear();
  doc_ids->clear();
  MSA_RETURN_IF_ERROR(tok.encode(format_query_block(question), ids));
  size_t n_block = ids->size();
  doc_ids->assign(n_block, kDocIdRouting);
  std::vector<int32_t> tail, head;
  MSA_RETURN_IF_ERROR(tok.encode(kChatTailText, &tail));
  MSA_RETURN_IF_ERROR(tok.encode(kResponseHeadText, &head));
  ids->insert(ids->end(), tail.begin(), tail.end());
  doc_ids->insert(doc_ids->end(), tail.size(), kDocIdTemplate);
  ids->insert(ids->end(), head.begin(), head.end());
  doc_ids->insert(doc_ids->end(), head.size(), kDocIdAnswer);
  if (n_routing) *n_routing = n_block;
  return Status::Ok();
}

}  // namespace msa
