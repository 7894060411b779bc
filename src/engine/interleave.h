// Memory Interleave: the text protocol on top of stages 2-3 (spec §6.3, §6.4, Part A), as pure functions so
// each step can be tested on its own. The driver that strings them together is Session::generate.
//
// Protocol, per round r = 1, 2, ... (at most max_rounds prefills):
//   1. Prefill the prompt with routing (round 1: question block + "<|im_end|>\n<|im_start|>"; later rounds:
//      the whole transcript re-encoded, routing tokens per encode_regenerate_prompt).
//   2. Decode. The round ends when its generated text contains "<|object_ref_end|>": the ids `[n]` in that text
//      (parse_document_ids, kept when present in the bank) are injected as format_documents_injection(...),
//      and the next round re-encodes everything from scratch.
//   3. When the generated text of the round contains "<End-of-Retrieve>" (several ordinary tokens), the
//      question (extract_question of everything fed so far) is injected as format_question_injection(...) and
//      decoding continues to the answer (stage 4) with causal attention among the injected tokens.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace msa::interleave {

inline constexpr std::string_view kRoundEnd = "<|object_ref_end|>";  // id 151647 in Qwen3
inline constexpr std::string_view kEndOfRetrieve = "<End-of-Retrieve>";
inline constexpr std::string_view kAnswerMarker = "The answer to the question is:";
inline constexpr std::string_view kQuestionBlockStart = "\nPlease answer the question based";
inline constexpr std::string_view kQuestionAnchor = "Please return all documents related to the question";
inline constexpr std::string_view kEndOfText = "<|endoftext|>";
// Rounds where the generated text exceeds this many code points without ending count as "retrieval ended"
// (the reference's 1000-character rule, generate.py).
inline constexpr int64_t kMaxRoundChars = 1000;

// Every integer n matched by the regex \[(\d+)\] in `text` (ASCII digits; an id that does not fit in 64 bits
// is skipped), sorted ascending, unique. The caller keeps those present in the bank.
std::vector<uint64_t> parse_document_ids(std::string_view text);

// Concatenation over the documents of "[" + id + "]. " + text + "\n", then "<|object_ref_end|>" (just
// "<|object_ref_end|>" when the list is empty).
std::string format_documents_injection(const std::vector<std::pair<uint64_t, std::string_view>>& docs);

// "<|im_start|>The user's question is: " + question + "\n<|object_ref_end|>".
std::string format_question_injection(std::string_view question);

// The question of the transcript: the text after the LAST "historical document information\n\n", cut before
// the FIRST "\nPlease return all documents related to the question" after it (Python split semantics).
std::string extract_question(std::string_view fed_text);

// The prompt of the next round from the transcript (benchmark.py): "\nPlease answer the question based" +
// the text between the first and the second occurrence of that string (or to the end), every
// "<|endoftext|>" removed. A transcript without the string is returned with only the removal applied.
std::string regenerate_prompt_text(std::string_view transcript);

// True when the reference's outer loop would start another round for this response: it ends with
// "<|object_ref_end|>" and does not contain "The answer to the question is:".
bool should_regenerate(std::string_view response);

// Tokens and doc_ids of a re-encoded (`<regenerate>`) prompt, exactly as msa_service.py
// _apply_template_regenerate: ids = tok(text); doc_ids = -1 except 0 for
//   region 1: with m = last "]<|object_ref_end|>[" and s = m + len - 1 (its final "["), e = the first
//             "<|object_ref_end|>" at or after s: tokens [len(tok(text[:s])), + len(tok(text[s:e])));
//   region 2: the first len(tok(text[:end of the first "Please return all documents related to the question"]))
//             tokens.
// Token counts come from tokenizing the substrings separately (BPE boundary misalignment reproduced); indices
// past the end are ignored. Errors: those of Tokenizer::encode.
Status encode_regenerate_prompt(const Tokenizer& tok, std::string_view text, std::vector<int32_t>* ids,
                                std::vector<int32_t>* doc_ids);

// The final answer in a generated text (benchmark.py): the text after the last "The answer to the question is:"
// up to the first "<|im_end|>" after it, stripped of ASCII/Unicode whitespace at both ends; without the marker,
// the whole text up to the first "<|im_end|>", stripped.
std::string extract_answer(std::string_view text);

}  // namespace msa::interleave
