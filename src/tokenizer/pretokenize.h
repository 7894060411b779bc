// Pre-tokenizer regex: the `Split` pattern of tokenizer.json, written for Oniguruma (what Hugging Face
// `tokenizers` uses), translated to PCRE2 (UTF + UCP, JIT-compiled when the platform has a JIT) with the
// Unicode classes made to match the oracle's Unicode version (unicode_compat.inc):
//   \s -> the oracle's White_Space set, \S -> its complement,
//   \p{L} / \p{N} -> PCRE2's class plus the letters/numbers added by newer Unicode versions.
// Constructs whose meaning differs between the two engines and that the translation does not handle
// (\d \w \b \h, POSIX brackets, \S or \P{..} inside a class, ...) are rejected with kUnsupported.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace msa::tok {

// Oniguruma pattern -> PCRE2 pattern (see above). Errors: kUnsupported naming the construct.
Status translate_onig_pattern(const std::string& onig, std::string* pcre);

// Empty, or a warning when the runtime PCRE2's Unicode version is not the one unicode_compat.inc was
// generated against.
std::string pcre2_version_warning();

// Escapes a literal string for use in a PCRE2 pattern.
std::string pcre_quote(std::string_view literal);

struct Span {
  uint32_t begin;
  uint32_t end;
};

// A compiled splitting regex. Immutable after creation; `split` is thread-safe (per-thread match data).
class RegexSplitter {
 public:
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // `pcre_pattern` is already in PCRE2 syntax. Errors: kTokenizer (compile error, with offset).
  static Status create(const std::string& pcre_pattern, std::unique_ptr<RegexSplitter>* out);

  // "Isolated" split of valid UTF-8 `text` (at most 4 GiB): every match and every gap between matches is
  // one piece, in order; offsets are relative to `text`. Pieces are appended to `out`.
  // Errors: kInternal when PCRE2 reports a matching error (resource limits).
  Status split(std::string_view text, std::vector<Span>* out) const;

  bool jit() const { return jit_; }

 private:
  RegexSplitter() = default;
  void* code_ = nullptr;  // pcre2_code*
  bool jit_ = false;
};

}  // namespace msa::tok
