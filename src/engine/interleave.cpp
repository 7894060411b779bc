#include "engine/interleave.h"

#include <algorithm>

namespace msa::interleave {

std::vector<uint64_t> parse_document_ids(std::string_view text) {
  std::vector<uint64_t> out;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    if (text[i] != '[') continue;
    size_t j = i + 1;
    uint64_t v = 0;
    bool overflow = false;
    while (j < n && text[j] >= '0' && text[j] <= '9') {
      const uint64_t d = static_cast<uint64_t>(text[j] - '0');
      if (v > (UINT64_MAX - d) / 10) overflow = true;
      v = v * 10 + d;
      ++j;
    }
    if (j == i + 1 || j >= n || text[j] != ']') continue;  // no digits or no closing bracket: no match here
    if (!overflow) out.push_back(v);
    i = j;  // matches do not overlap; "]" cannot start one
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string format_documents_injection(const std::vector<std::pair<uint64_t, std::string_view>>& docs) {
  std::string s;
  for (const auto& d : docs) {
    s.append("[").append(std::to_string(d.first)).append("]. ").append(d.second).append("\n");
  }
  s.append(kRoundEnd);
  return s;
}

std::string format_question_injection(std::string_view question) {
  std::string s = "<|im_start|>The user's question is: ";
  s.append(question).append("\n").append(kRoundEnd);
  return s;
}

std::string extract_question(std::string_view fed_text) {
  static constexpr std::string_view kHead = "historical document information\n\n";
  static constexpr std::string_view kTail = "\nPlease return all documents related to the question";
  std::string_view q = fed_text;
  const size_t h = q.rfind(kHead);
  if (h != std::string_view::npos) q = q.substr(h + kHead.size());
  const size_t t = q.find(kTail);
  if (t != std::string_view::npos) q = q.substr(0, t);
  return std::string(q);
}

namespace {
void remove_all(std::string* s, std::string_view what) {
  size_t at = 0;
  while ((at = s->find(what, at)) != std::string::npos) s->erase(at, what.size());
}
}  // namespace

std::string regenerate_prompt_text(std::string_view transcript) {
  std::string r;
  const size_t a = transcript.find(kQuestionBlockStart);
  if (a == std::string_view::npos) {
    r = std::string(transcript);
  } else {
    const size_t from = a + kQuestionBlockStart.size();
    const size_t b = transcript.find(kQuestionBlockStart, from);
    r = std::string(kQuestionBlockStart);
    r.append(transcript.substr(from, b == std::string_view::npos ? std::string_view::npos : b - from));
  }
  remove_all(&r, kEndOfText);
  return r;
}

bool should_regenerate(std::string_view response) {
  return response.size() >= kRoundEnd.size() && response.substr(response.size() - kRoundEnd.size()) == kRoundEnd &&
         response.find(kAnswerMarker) == std::string_view::npos;
}

Status encode_regenerate_prompt(const Tokenizer& tok, std::string_view text, std::vector<int32_t>* ids,
                                std::vector<int32_t>* doc_ids) {
  ids->clear();
  MSA_RETURN_IF_ERROR(tok.encode(text, ids));
  doc_ids->assign(ids->size(), -1);
  auto count = [&tok](std::string_view s, size_t* n) -> Status {
    std::vector<int32_t> t;
    MSA_RETURN_IF_ERROR(tok.encode(s, &t));
    *n = t.size();
    return Status::Ok();
  };
  // Region 1: the latest round's injected documents.
  static constexpr std::string_view kMarker = "]<|object_ref_end|>[";
  const size_t m = text.rfind(kMarker);
  if (m != std::string_view::npos) {
    const size_t s = m + kMarker.size() - 1;
    const size_t e = text.find(kRoundEnd, s);
    if (e != std::string_view::npos) {
      size_t n_prefix = 0, n_region = 0;
      MSA_RETURN_IF_ERROR(count(text.substr(0, s), &n_prefix));
      MSA_RETURN_IF_ERROR(count(text.substr(s, e - s), &n_region));
      for (size_t i = n_prefix; i < n_prefix + n_region && i < doc_ids->size(); ++i) (*doc_ids)[i] = 0;
    }
  }
  // Region 2: the question block up to the end of its anchor sentence.
  const size_t a = text.find(kQuestionAnchor);
  if (a != std::string_view::npos) {
    size_t n_prefix = 0;
    MSA_RETURN_IF_ERROR(count(text.substr(0, a + kQuestionAnchor.size()), &n_prefix));
    for (size_t i = 0; i < n_prefix && i < doc_ids->size(); ++i) (*doc_ids)[i] = 0;
  }
  return Status::Ok();
}

namespace {
// Python str.strip(): whitespace code points at both ends (ASCII ones plus the common Unicode spaces).
bool is_space_at(std::string_view s, size_t i, size_t* len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) {
    *len = 1;
    return true;
  }
  static constexpr std::string_view kSpaces[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80",
                                                 "\xE2\x80\x81", "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84",
                                                 "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88",
                                                 "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9",
                                                 "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};
  for (std::string_view sp : kSpaces) {
    if (s.substr(i, sp.size()) == sp) {
      *len = sp.size();
      return true;
    }
  }
  return false;
}

std::string_view strip(std::string_view s) {
  size_t len = 0;
  while (!s.empty() && is_space_at(s, 0, &len)) s.remove_prefix(len);
  bool changed = true;
  while (!s.empty() && changed) {
    changed = false;
    // Trailing: try every possible width of the last code point.
    for (size_t w = 1; w <= 3 && w <= s.size(); ++w) {
      const size_t i = s.size() - w;
      if (is_space_at(s, i, &len) && len == w) {
        s.remove_suffix(w);
        changed = true;
        break;
      }
    }
  }
  return s;
}
}  // namespace

std::string extract_answer(std::string_view text) {
  std::string_view a = text;
  const size_t m = a.rfind(kAnswerMarker);
  if (m != std::string_view::npos) a = a.substr(m + kAnswerMarker.size());
  const size_t e = a.find("<|im_end|>");
  if (e != std::string_view::npos) a = a.substr(0, e);
  return std::string(strip(a));
}

}  // namespace msa::interleave
