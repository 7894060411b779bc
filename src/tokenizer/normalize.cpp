#include "tokenizer/normalize.h"

#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "tokenizer/utf8.h"

namespace msa::tok {

namespace {

#include "tokenizer/unicode_compat.inc"

constexpr uint32_t kMaxCp = 0x110000;

// One bit per code point: 1 = "needs NFC work": combining class != 0, changed by NFC on its own, or a
// possible second part of a composition (any code point after the first in a canonical decomposition,
// and the Hangul jamo). A text without such code points is NFC. Built once from utf8proc's data.
struct NfcTable {
  std::vector<uint64_t> bits;
  NfcTable() : bits(kMaxCp / 64, 0) {
    auto mark = [this](uint32_t c) { bits[c >> 6] |= uint64_t{1} << (c & 63); };
    for (uint32_t c = 0x80; c < kMaxCp; ++c) {
      if (c >= 0xD800 && c < 0xE000) continue;
      const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
      if (p->combining_class != 0) mark(c);
      if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0) {
        utf8proc_int32_t d[32];
        utf8proc_ssize_t n =
            utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), d, 32, UTF8PROC_DECOMPOSE, nullptr);
        if (n <= 0 || n > 32) {
          mark(c);
          continue;
        }
        for (utf8proc_ssize_t i = 1; i < n; ++i) mark(static_cast<uint32_t>(d[i]));
        utf8proc_int32_t b[32];
        for (utf8proc_ssize_t i = 0; i < n; ++i) b[i] = d[i];
        utf8proc_ssize_t m = utf8proc_normalize_utf32(b, n, static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE |
                                                                                           UTF8PROC_STABLE));
        if (m != 1 || static_cast<uint32_t>(b[0]) != c) mark(c);
      }
    }
    // Hangul: L+V and LV+T compose algorithmically (utf8proc has no table entries for them).
    for (uint32_t c = 0x1100; c <= 0x11FF; ++c) mark(c);
    for (uint32_t c = 0xA960; c <= 0xA97F; ++c) mark(c);
    for (uint32_t c = 0xD7B0; c <= 0xD7FF; ++c) mark(c);
    // What the oracle does not know stays as it is: it is a plain starter there.
    for (const auto& r : kHfNfcInert)
      for (uint32_t c = r[0]; c <= r[1]; ++c) bits[c >> 6] &= ~(uint64_t{1} << (c & 63));
  }
  bool busy(uint32_t c) const { return (bits[c >> 6] >> (c & 63)) & 1; }
};

const NfcTable& table() {
  static const NfcTable t;
  return t;
}

bool hf_inert(uint32_t c) {
  // Small table; linear scan is fine (only reached for "busy" code points).
  for (const auto& r : kHfNfcInert)
    if (c >= r[0] && c <= r[1]) return true;
  return false;
}

// utf8proc NFC of a valid UTF-8 window, appended to out. Code points the oracle does not know split the
// window: NFC(a x b) = NFC(a) x NFC(b) when x is a starter that composes with nothing.
void nfc_window(const char* s, size_t n, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  const auto* e = p + n;
  const auto* start = p;
  auto flush = [&](const unsigned char* a, const unsigned char* b) {
    if (a == b) return;
    utf8proc_uint8_t* res = nullptr;
    utf8proc_ssize_t m = utf8proc_map(a, b - a, &res,
                                      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (m < 0 || res == nullptr) {  // cannot happen for valid UTF-8; keep the text rather than lose it
      out->append(reinterpret_cast<const char*>(a), b - a);
    } else {
      out->append(reinterpret_cast<const char*>(res), static_cast<size_t>(m));
    }
    std::free(res);
  };
  while (p < e) {
    const unsigned char* q = p;
    uint32_t c = utf8_next(p);
    if (c >= 0x80 && hf_inert(c)) {
      flush(start, q);
      out->append(reinterpret_cast<const char*>(q), p - q);
      start = p;
    }
  }
  flush(start, e);
}

}  // namespace

std::string utf8proc_version_warning() {
  std::string v = utf8proc_unicode_version();
  if (v == MSA_TOK_COMPAT_UTF8PROC_UNICODE) return std::string();
  return "tokenizer: utf8proc has Unicode " + v + ", unicode_compat.inc was measured with " +
         MSA_TOK_COMPAT_UTF8PROC_UNICODE + "; re-run tools/gen_tokenizer_unicode_compat.py (NFC of rare "
         "characters may differ from Hugging Face tokenizers)";
}

std::string_view nfc_normalize(std::string_view text, std::string* scratch) {
  const NfcTable& t = table();
  const auto* b = reinterpret_cast<const unsigned char*>(text.data());
  const auto* e = b + text.size();
  const auto* p = b;
  // Find the first busy code point; remember the last starter before it.
  const unsigned char* last_starter = b;
  bool any = false;
  while (p < e) {
    if (*p < 0x80) {
      last_starter = p++;
      continue;
    }
    const unsigned char* q = p;
    uint32_t c = utf8_next(p);
    if (t.busy(c)) {
      any = true;
      p = q;
      break;
    }
    last_starter = q;
  }
  if (!any) return text;

  scratch->clear();
  scratch->reserve(text.size() + 16);
  // Windows: [last inert starter before a busy run, first inert starter after it).
  const unsigned char* copied = b;  // text before `copied` is already in scratch
  while (p < e) {
    // p is at a busy code point; the window starts at last_starter (it may compose with it).
    const unsigned char* w0 = last_starter < p ? last_starter : p;
    if (w0 < copied) w0 = copied;
    scratch->append(reinterpret_cast<const char*>(copied), w0 - copied);
    // Extend to the next inert code point.
    const unsigned char* w1 = p;
    while (w1 < e) {
      const unsigned char* q = w1;
      uint32_t c = *w1 < 0x80 ? *w1++ : utf8_next(w1);
      if (c < 0x80 || !t.busy(c)) {
        w1 = q;
        break;
      }
    }
    nfc_window(reinterpret_cast<const char*>(w0), w1 - w0, scratch);
    copied = w1;
    // Find the next busy code point.
    p = w1;
    last_starter = w1;
    bool found = false;
    while (p < e) {
      if (*p < 0x80) {
        last_starter = p++;
        continue;
      }
      const unsigned char* q = p;
      uint32_t c = utf8_next(p);
      if (t.busy(c)) {
        p = q;
        found = true;
        break;
      }
      last_starter = q;
    }
    if (!found) break;
  }
  scratch->append(reinterpret_cast<const char*>(copied), e - copied);
  return std::string_view(*scratch);
}

}  // namespace msa::tok
