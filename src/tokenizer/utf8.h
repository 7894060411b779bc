// UTF-8 helpers of the tokenizer: validation, lossy repair and an incremental (streaming) decoder.
//
// Invalid input is repaired, never rejected: every maximal subpart of an ill-formed sequence becomes one
// U+FFFD (the Unicode "substitution of maximal subparts" practice, chapter 3.9, identical to the WHATWG
// Encoding Standard decoder). This is exactly what Python's `bytes.decode("utf-8", "replace")` and Rust's
// `String::from_utf8_lossy` produce, i.e. what Hugging Face `tokenizers` sees when a caller hands it bytes
// (Python) and what its ByteLevel decoder returns for ids whose bytes are not valid UTF-8 (Rust).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace msa::tok {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool utf8_is_valid(std::string_view s);

// Number of Unicode code points of a well-formed UTF-8 string (Python's len()).
int64_t utf8_length(std::string_view s);

// Incremental decoder: bytes in, well-formed UTF-8 out. Bytes of a sequence that may still complete are
// held back (at most 3); `finish` turns such a tail into one U+FFFD. Feeding a byte string in any split
// and then finishing gives exactly the same output as feeding it whole.
class Utf8Repairer {
 public:
  // Appends the well-formed output for `bytes` to `out`.
  void feed(const char* bytes, size_t n, std::string* out);
  // Ends the stream: a pending incomplete sequence becomes U+FFFD. The repairer is reset.
  void finish(std::string* out);
  // Bytes held back, waiting for the rest of a sequence (0..3).
  size_t pending() const { return n_pending_; }
  void reset();

 private:
  uint8_t pending_[4] = {0, 0, 0, 0};
  size_t n_pending_ = 0;
  int needed_ = 0;          // continuation bytes still needed
  uint8_t lower_ = 0x80;    // allowed range of the next continuation byte
  uint8_t upper_ = 0xBF;
};

// Appends the repaired form of `s` to `out` (copy of `s` when it is valid).
void utf8_repair(std::string_view s, std::string* out);

// Decodes one code point of a *valid* UTF-8 string at `p`, advancing `p`.
inline uint32_t utf8_next(const unsigned char*& p) {
  uint32_t c = *p++;
  if (c < 0x80) return c;
  if (c < 0xE0) return ((c & 0x1F) << 6) | (*p++ & 0x3F);
  if (c < 0xF0) {
    uint32_t r = ((c & 0x0F) << 12) | ((p[0] & 0x3Fu) << 6) | (p[1] & 0x3Fu);
    p += 2;
    return r;
  }
  uint32_t r = ((c & 0x07) << 18) | ((p[0] & 0x3Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
  p += 3;
  return r;
}

// Appends the UTF-8 encoding of code point `c` (assumed a valid scalar value).
void utf8_append(uint32_t c, std::string* out);

}  // namespace msa::tok
