// libFuzzer target: arbitrary bytes through the tokenizer (tokenize + detokenize + streaming detokenize).
// Invariants checked (abort on violation):
//  - encoding never fails, whatever the bytes (invalid UTF-8 is repaired);
//  - with added-token parsing off, decode(encode(x)) == NFC(repair(x)) exactly (BPE and the regex split
//    lose nothing);
//  - decoded text is valid UTF-8, and streaming decode == one-shot decode;
//  - the bytes read as int32 ids (modulo the vocabulary) decode the same one-shot and streamed.
// The tokenizer: $MSA_TOKENIZER_JSON, else MSA_FUZZ_TOKENIZER_JSON (set by tests/fuzz/CMakeLists.txt).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/normalize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

#ifndef MSA_FUZZ_TOKENIZER_JSON
#define MSA_FUZZ_TOKENIZER_JSON "../shared/data/qwen3-tokenizer/tokenizer.json"
#endif

namespace {
std::unique_ptr<msa::Tokenizer> g_tok;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: invariant violated: %s\n", what);
    std::abort();
  }
}

std::string stream_decode(const std::vector<int32_t>& ids) {
  msa::StreamingDecoder d(*g_tok);
  std::string out;
  for (int32_t id : ids) {
    std::string piece;
    check(d.push(id, &piece).ok(), "streaming push failed");
    check(msa::tok::utf8_is_valid(piece), "streaming output is not valid UTF-8");
    out += piece;
  }
  d.flush(&out);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("MSA_TOKENIZER_JSON");
  std::string path = env && *env ? env : MSA_FUZZ_TOKENIZER_JSON;
  msa::Status s = msa::Tokenizer::load(path, &g_tok);
  if (!s.ok()) {
    std::fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (set MSA_TOKENIZER_JSON)\n", path.c_str(),
                 s.to_string().c_str());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  std::vector<int32_t> ids;
  check(g_tok->encode(text, &ids).ok(), "encode failed");
  std::string one;
  check(g_tok->decode(ids.data(), ids.size(), false, &one).ok(), "decode failed");
  check(msa::tok::utf8_is_valid(one), "decode output is not valid UTF-8");
  check(stream_decode(ids) == one, "streaming decode != one-shot decode");

  msa::EncodeOptions plain;
  plain.parse_special = false;
  std::vector<int32_t> ids2;
  check(g_tok->encode(text, plain, &ids2).ok(), "encode (plain) failed");
  std::string repaired, scratch, back;
  msa::tok::utf8_repair(text, &repaired);
  std::string_view expected = msa::tok::nfc_normalize(repaired, &scratch);
  check(g_tok->decode(ids2.data(), ids2.size(), false, &back).ok(), "decode (plain) failed");
  check(back == expected, "decode(encode(x)) != NFC(repair(x))");

  // The same bytes as a stream of ids.
  std::vector<int32_t> raw(size / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
  for (int32_t& id : raw) id = static_cast<int32_t>(static_cast<uint32_t>(id) % static_cast<uint32_t>(g_tok->vocab_size()));
  std::string d1;
  check(g_tok->decode(raw.data(), raw.size(), false, &d1).ok(), "decode of raw ids failed");
  check(stream_decode(raw) == d1, "streaming != one-shot on raw ids");
  return 0;
}
