#include "tokenizer/pretokenize.h"

#include <pcre2.h>

#include <cstdint>
#include <cstdio>

namespace msa::tok {

namespace {

#include "tokenizer/unicode_compat.inc"

template <size_t N>
std::string class_items(const uint32_t (&ranges)[N][2]) {
  std::string s;
  char buf[48];
  for (const auto& r : ranges) {
    if (r[0] == r[1])
      std::snprintf(buf, sizeof buf, "\\x{%X}", r[0]);
    else
      std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", r[0], r[1]);
    s += buf;
  }
  return s;
}

const std::string& ws_items() {
  static const std::string s = class_items(kHfWhiteSpace);
  return s;
}
const std::string& letter_items() {
  static const std::string s = "\\p{L}" + class_items(kHfLetterExtra);
  return s;
}
const std::string& number_items() {
  static const std::string s = "\\p{N}" + class_items(kHfNumberExtra);
  return s;
}

Status unsupported(const std::string& what, size_t pos) {
  return Error(StatusCode::kUnsupported, "pre-tokenizer regex: ", what, " at offset ", pos,
               " is not supported (its meaning differs between Oniguruma and PCRE2)");
}

// Reads "\p{X}" / "\P{X}" / "\pL" starting at p[i] == '\\' (p[i+1] is 'p' or 'P'): the property name
// and the length consumed.
bool read_property(const std::string& p, size_t i, std::string* name, size_t* len) {
  if (i + 2 >= p.size()) return false;
  if (p[i + 2] == '{') {
    size_t close = p.find('}', i + 3);
    if (close == std::string::npos) return false;
    *name = p.substr(i + 3, close - (i + 3));
    *len = close + 1 - i;
    return true;
  }
  *name = p.substr(i + 2, 1);
  *len = 3;
  return true;
}

}  // namespace

Status translate_onig_pattern(const std::string& p, std::string* out) {
  std::string r;
  r.reserve(p.size() * 4);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) return Error(StatusCode::kTokenizer, "pre-tokenizer regex ends with a backslash");
      char e = p[i + 1];
      switch (e) {
        case 's':
          r += in_class ? ws_items() : "[" + ws_items() + "]";
          ++i;
          continue;
        case 'S':
          if (in_class) return unsupported("\\S inside a character class", i);
          r += "[^" + ws_items() + "]";
          ++i;
          continue;
        case 'p':
        case 'P': {
          std::string name;
          size_t len = 0;
          if (!read_property(p, i, &name, &len)) return unsupported("malformed \\p", i);
          bool neg = e == 'P';
          if (!name.empty() && name[0] == '^') {
            neg = !neg;
            name = name.substr(1);
          }
          const std::string* items = nullptr;
          if (name == "L" || name == "Letter") items = &letter_items();
          if (name == "N" || name == "Number") items = &number_items();
          if (items == nullptr) {
            // Other properties pass through (their Unicode version is PCRE2's).
            r.append(p, i, len);
          } else if (in_class) {
            if (neg) return unsupported("a negated property inside a character class", i);
            r += *items;
          } else {
            r += neg ? "[^" + *items + "]" : "[" + *items + "]";
          }
          i += len - 1;
          continue;
        }
        case 'd': case 'D': case 'w': case 'W': case 'b': case 'B': case 'h': case 'H':
        case 'R': case 'X': case 'K': case 'G': case 'A': case 'z': case 'Z': case 'k': case 'g':
        case 'N': case 'O': case 'Q': case 'E': case 'v': case 'V':
          return unsupported(std::string("\\") + e, i);
        default:
          r += c;
          r += e;
          ++i;
          continue;
      }
    }
    if (in_class) {
      if (c == '[') {
        if (i + 1 < p.size() && p[i + 1] == ':') return unsupported("a POSIX bracket expression", i);
        return unsupported("a nested character class", i);
      }
      if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') return unsupported("class intersection &&", i);
      if (c == ']') in_class = false;
      r += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      r += c;
      // A ']' right after '[' or '[^' is a literal.
      size_t j = i + 1;
      if (j < p.size() && p[j] == '^') {
        r += '^';
        ++j;
      }
      if (j < p.size() && p[j] == ']') {
        r += "\\]";
        ++j;
      }
      i = j - 1;
      continue;
    }
    r += c;
  }
  if (in_class) return Error(StatusCode::kTokenizer, "pre-tokenizer regex: unterminated character class");
  *out = std::move(r);
  return Status::Ok();
}

std::string pcre2_version_warning() {
  char buf[64] = {0};
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, buf);
  if (std::string(buf) == MSA_TOK_COMPAT_PCRE2_UNICODE) return std::string();
  return std::string("tokenizer: PCRE2 has Unicode ") + buf + ", unicode_compat.inc was measured with " +
         MSA_TOK_COMPAT_PCRE2_UNICODE + "; re-run tools/gen_tokenizer_unicode_compat.py (tokenization of rare "
         "letters/digits may differ from Hugging Face tokenizers)";
}

std::string pcre_quote(std::string_view s) {
  std::string r;
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        static_cast<unsigned char>(c) >= 0x80 || c == '_') {
      r += c;
    } else if (c == '\0') {
      r += "\\x{0}";
    } else {
      r += '\\';
      r += c;
    }
  }
  return r;
}

namespace {

// Per-thread PCRE2 match data and JIT stack (sized for the largest pattern seen on this thread).
struct ThreadMatch {
  pcre2_match_data* md = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  ThreadMatch() {
    md = pcre2_match_data_create(8, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    if (ctx && stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~ThreadMatch() {
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(md);
  }
};

ThreadMatch& thread_match() {
  thread_local ThreadMatch tm;
  return tm;
}

}  // namespace

RegexSplitter::~RegexSplitter() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

Status RegexSplitter::create(const std::string& pattern, std::unique_ptr<RegexSplitter>* out) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    return Error(StatusCode::kTokenizer, "pre-tokenizer regex does not compile (PCRE2: ",
                 reinterpret_cast<const char*>(buf), " at offset ", off, ")");
  }
  std::unique_ptr<RegexSplitter> s(new RegexSplitter());
  s->code_ = code;
  s->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  *out = std::move(s);
  return Status::Ok();
}

Status RegexSplitter::split(std::string_view text, std::vector<Span>* out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadMatch& tm = thread_match();
  if (!tm.md || !tm.ctx) return Error(StatusCode::kOutOfMemory, "pre-tokenizer: out of memory");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t pos = 0;
  size_t gap = 0;  // start of the text not yet covered by a piece
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tm.md);
  while (pos <= n) {
    int rc = jit_ ? pcre2_jit_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, tm.md, tm.ctx)
                  : pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, tm.md, tm.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof buf);
      return Error(StatusCode::kInternal, "pre-tokenizer regex match failed (PCRE2: ",
                   reinterpret_cast<const char*>(buf), ")");
    }
    size_t b = ov[0], e = ov[1];
    if (e == b) {
      // Empty match: it produces no piece; move on by one code point.
      if (b >= n) break;
      pos = b + 1;
      while (pos < n && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (b > gap) out->push_back({static_cast<uint32_t>(gap), static_cast<uint32_t>(b)});
    out->push_back({static_cast<uint32_t>(b), static_cast<uint32_t>(e)});
    gap = pos = e;
  }
  if (gap < n) out->push_back({static_cast<uint32_t>(gap), static_cast<uint32_t>(n)});
  return Status::Ok();
}

}  // namespace msa::tok
