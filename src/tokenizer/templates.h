// The prompt formats of the MSA engine (docs: shared MSA_SPEC.md §3.1-3.3), as plain functions; no
// template engine. Text goes through Tokenizer::encode with added tokens parsed, as the reference does
// (a special-token string inside a question or document becomes its special id).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace msa {

// Qwen3 instruct prompt template "<|im_start|>user\n{prompt}<|im_end|>\n", split at {prompt}.
inline constexpr std::string_view kChatHeadText = "<|im_start|>user\n";
inline constexpr std::string_view kChatTailText = "<|im_end|>\n";
inline constexpr std::string_view kResponseHeadText = "<|im_start|>";  // no "assistant\n" (reference)

// The query block of the first round (§3.3).
inline constexpr std::string_view kQueryPrefix =
    "\nPlease answer the question based on the above historical document information\n\n";
inline constexpr std::string_view kQuerySuffix = "\nPlease return all documents related to the question\n";

// doc_ids values (§3.4).
inline constexpr int32_t kDocIdRouting = 0;    // routing query tokens
inline constexpr int32_t kDocIdAnswer = -1;    // non-routing query / answer tokens
inline constexpr int32_t kDocIdTemplate = -2;  // template tokens

// "<|im_start|>user\n" + prompt + "<|im_end|>\n".
std::string format_user_turn(std::string_view prompt);

// "<|im_start|>[id]. " + doc + "[id]<|im_end|>" (§3.2; `id` is the 0-based corpus index).
std::string format_document(int64_t id, std::string_view doc);

// kQueryPrefix + question + kQuerySuffix (§3.3).
std::string format_query_block(std::string_view question);

struct ChatTemplateIds {
  std::vector<int32_t> head;           // [151644, 872, 198] for Qwen3
  std::vector<int32_t> tail;           // [151645, 198]
  std::vector<int32_t> response_head;  // [151644]
};

// Tokenizes the three template parts. Errors: those of Tokenizer::encode.
Status chat_template_ids(const Tokenizer& tok, ChatTemplateIds* out);

// Document tokens for memory encoding: encode(format_document(id, doc)) (add_special_tokens=False),
// i.e. [<|im_start|>] + bpe("[id]. doc[id]") + [<|im_end|>]. Appends to `ids`.
Status encode_document(const Tokenizer& tok, int64_t id, std::string_view doc, std::vector<int32_t>* ids);

// First-round query input (§3.3): bpe(query block) + template tail + response head, with the matching
// doc_ids (0 for the query block, -2 for the tail, -1 for the response head). Both vectors are replaced.
// `n_routing` (may be NULL) receives the number of query-block tokens.
Status encode_query(const Tokenizer& tok, std::string_view question, std::vector<int32_t>* ids,
                    std::vector<int32_t>* doc_ids, size_t* n_routing = nullptr);

}  // namespace msa
