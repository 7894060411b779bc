// Engine-internal checks shared by Session::route (session.cpp, where they are defined) and Session::generate's
// GenerateRun (generate_run.cpp). Not part of the public headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/status.h"
#include "model/model.h"

namespace msa {

// The arguments every query needs: a model with its tokenizer (kTokenizer), a non-empty (kInvalidArgument),
// valid UTF-8 (kInvalidUtf8) question, doc_top_k > 0 (kInvalidArgument).
Status check_common(const Model& model, std::string_view question, int64_t doc_top_k);

// The prompt's token count against MSA_MAX_PROMPT_TOKENS (checked before any position or KV is sized from it);
// kContextOverflow names `fn`.
Status check_prompt_tokens(const char* fn, size_t n);

}  // namespace msa
