// NFC normalisation for the tokenizer, done by utf8proc (Debian libutf8proc), made to agree with the
// oracle (Hugging Face `tokenizers`, whose NFC data is Unicode 9): code points the oracle does not know
// (kHfNfcInert in unicode_compat.inc, measured by tools/gen_tokenizer_unicode_compat.py) are left as they
// are, exactly as the oracle leaves them.
//
// Fast path: text made only of "inert starters" (combining class 0, unchanged by NFC, never the second
// part of a composition; all of ASCII, most of every script) is returned as is without calling utf8proc.
// Otherwise only the windows around the other code points are normalised.
#pragma once

#include <string>
#include <string_view>

namespace msa::tok {

// Returns NFC(text) for valid UTF-8 `text`: either `text` itself (already NFC, the common case) or a view
// of `*scratch`, which it overwrote. Thread-safe.
std::string_view nfc_normalize(std::string_view text, std::string* scratch);

// Empty, or a warning when the runtime utf8proc's Unicode version is not the one unicode_compat.inc was
// generated against.
std::string utf8proc_version_warning();

}  // namespace msa::tok
