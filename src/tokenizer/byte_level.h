// GPT-2 byte-level alphabet: every byte has a printable stand-in character (bytes_to_unicode in
// tokenizers/src/pre_tokenizers/byte_level.rs). Vocabulary strings of tokenizer.json are written in it.
#pragma once

#include <cstdint>

namespace msa::tok {

// The code point standing for byte b: printable Latin-1 bytes stand for themselves, the other 68 bytes
// map in order onto U+0100.. .
inline uint32_t byte_to_char(uint8_t b) {
  auto printable = [](unsigned x) { return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE); };
  if (printable(b)) return b;
  unsigned n = 0;
  for (unsigned x = 0; x < b; ++x)
    if (!printable(x)) ++n;
  return 0x100 + n;
}

// Inverse of byte_to_char, -1 for code points outside the alphabet.
inline int char_to_byte(uint32_t c) {
  static const struct Table {
    int16_t v[0x144];
    Table() {
      for (auto& x : v) x = -1;
      for (unsigned b = 0; b < 256; ++b) v[byte_to_char(static_cast<uint8_t>(b))] = static_cast<int16_t>(b);
    }
  } table;
  return c < 0x144 ? table.v[c] : -1;
}

}  // namespace msa::tok
