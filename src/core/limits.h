// Limits on every count a file or a caller can set (include/msa/msa.h, "limits"). A value above a limit is
// refused before anything is sized from it, so a small file cannot make the library allocate gigabytes.
// capi/abi_layout.cpp asserts that these equal the public MSA_MAX_* macros.
#pragma once

#include <cstdint>

namespace msa::limits {

inline constexpr int64_t kMaxThreads = 1024;                  // msa_model_params.n_threads
inline constexpr int64_t kMaxLayers = 1024;                   // config.json num_hidden_layers
inline constexpr int64_t kMaxVocab = int64_t{1} << 24;        // config.json vocab_size, tokenizer ids
inline constexpr int64_t kMaxDocumentsPerCall = int64_t{1} << 24;  // documents / ids in one call
inline constexpr int64_t kMaxBankDocuments = int64_t{1} << 30;     // documents in one bank (live + removed)
inline constexpr int64_t kMaxDocumentTokens = int64_t{1} << 24;    // tokens of one document
inline constexpr int64_t kMaxPromptTokens = int64_t{1} << 22;      // tokens of one prompt
inline constexpr int64_t kMaxRounds = 1024;                   // Memory Interleave rounds

}  // namespace msa::limits
