#include "tokenizer/utf8.h"

#include <cstring>

namespace msa::tok {

namespace {
constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the leading all-ASCII run of [p, p+n).
size_t ascii_prefix(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w & 0x8080808080808080ull) break;
    i += 8;
  }
  while (i < n && p[i] < 0x80) ++i;
  return i;
}
}  // namespace

bool utf8_is_valid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    i += ascii_prefix(p + i, n - i);
    if (i >= n) break;
    unsigned char c = p[i];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + len > n) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    i += len;
  }
  return true;
}

void Utf8Repairer::reset() {
  n_pending_ = 0;
  needed_ = 0;
  lower_ = 0x80;
  upper_ = 0xBF;
}

void Utf8Repairer::feed(const char* bytes, size_t n, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes);
  size_t i = 0;
  while (i < n) {
    if (needed_ == 0) {
      size_t a = ascii_prefix(p + i, n - i);
      if (a) {
        out->append(bytes + i, a);
        i += a;
        continue;
      }
      unsigned char c = p[i];
      if (c >= 0xC2 && c <= 0xDF) {
        needed_ = 1;
      } else if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) lower_ = 0xA0;
        if (c == 0xED) upper_ = 0x9F;
        needed_ = 2;
      } else if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) lower_ = 0x90;
        if (c == 0xF4) upper_ = 0x8F;
        needed_ = 3;
      } else {
        out->append(kReplacement, 3);
        ++i;
        continue;
      }
      pending_[0] = c;
      n_pending_ = 1;
      ++i;
      continue;
    }
    unsigned char c = p[i];
    if (c < lower_ || c > upper_) {
      // The held-back bytes are a maximal subpart: one U+FFFD; `c` is examined again as a lead byte.
      reset();
      out->append(kReplacement, 3);
      continue;
    }
    lower_ = 0x80;
    upper_ = 0xBF;
    pending_[n_pending_++] = c;
    ++i;
    if (--needed_ == 0) {
      out->append(reinterpret_cast<const char*>(pending_), n_pending_);
      n_pending_ = 0;
    }
  }
}

void Utf8Repairer::finish(std::string* out) {
  if (needed_ != 0) out->append(kReplacement, 3);
  reset();
}

void utf8_repair(std::string_view s, std::string* out) {
  if (utf8_is_valid(s)) {
    out->append(s.data(), s.size());
    return;
  }
  Utf8Repairer r;
  r.feed(s.data(), s.size(), out);
  r.finish(out);
}

void utf8_append(uint32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

int64_t utf8_length(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace msa::tok
