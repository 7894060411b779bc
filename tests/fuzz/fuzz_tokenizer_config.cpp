// libFuzzer target: arbitrary bytes as tokenizer_config.json (the special tokens and chat template read by
// Tokenizer::load_from_memory, src/tokenizer/tokenizer.cpp), next to a fixed tiny byte-level BPE tokenizer.json
// built here (256 byte tokens, a few merges, three added tokens; loading the 11 MB Qwen3 file per input would
// be far too slow). Every outcome must be a Status (no exception, no crash). When the config loads, the special
// ids are -1 or tokens whose text is what token_to_id finds, and the tokenizer encodes and decodes exactly like
// the one loaded without a config (tokenizer_config.json never changes the vocabulary).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

std::string g_tokenizer_json;
std::unique_ptr<msa::Tokenizer> g_plain;  // loaded without a tokenizer_config.json
const char* kProbe = "hello <|im_start|>user\nhe said \xE2\x82\xAC 12<|im_end|><|endoftext|>";

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer_config: invariant violated: %s\n", what);
    std::abort();
  }
}

std::string tiny_tokenizer_json() {
  using nlohmann::json;
  json j = json::object();
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  json added = json::array();
  int id = 0;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {  // the GPT-2 byte-level alphabet
    auto printable = [](int x) { return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE; };
    int n = 0;
    for (int x = 0; x < b; ++x) n += !printable(x);
    std::string s;
    msa::tok::utf8_append(printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(0x100 + n), &s);
    vocab[s] = id++;
  }
  for (const char* t : {"he", "ll", "hell", "hello"}) vocab[t] = id++;
  for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    added.push_back(json{{"id", id++}, {"content", t}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  j["added_tokens"] = added;
  j["normalizer"] = json{{"type", "NFC"}};
  j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})");
  j["post_processor"] = json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                             {"use_regex", false}};
  j["decoder"] = j["post_processor"];
  j["model"] = json{{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                    {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
                    {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab},
                    {"merges", json::array({json::array({"h", "e"}), json::array({"l", "l"}),
                                            json::array({"he", "ll"}), json::array({"hell", "o"})})}};
  return j.dump();
}

void check_special(const msa::Tokenizer& t, int32_t id, const char* what) {
  if (id == -1) return;
  check(t.is_valid_id(id), what);
  std::string_view bytes;
  if (t.token_bytes(id, &bytes).ok()) {
    check(t.token_to_id(bytes) >= 0, what);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tokenizer_json = tiny_tokenizer_json();
  const msa::Status s = msa::Tokenizer::load_from_memory(g_tokenizer_json, "", "fuzz/tokenizer.json", &g_plain);
  if (!s.ok()) {
    std::fprintf(stderr, "fuzz_tokenizer_config: the built-in tokenizer.json does not load: %s\n",
                 s.to_string().c_str());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view config(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<msa::Tokenizer> t;
  const msa::Status st = msa::Tokenizer::load_from_memory(g_tokenizer_json, config, "fuzz/tokenizer.json", &t);
  if (!st.ok()) {
    check(st.code() == msa::StatusCode::kTokenizer || st.code() == msa::StatusCode::kUnsupported ||
              st.code() == msa::StatusCode::kOutOfMemory,
          "unexpected error code");
    check(st.message().find("tokenizer_config.json") != std::string::npos, "error does not name the file");
    check(t == nullptr, "a tokenizer was returned with an error");
    return 0;
  }
  check(t != nullptr, "ok without a tokenizer");
  if (size == 0) {  // an empty config is "no tokenizer_config.json"
    check(t->bos_id() == -1 && t->eos_id() == -1 && t->pad_id() == -1 && t->chat_template().empty(),
          "empty config set something");
  }
  check_special(*t, t->bos_id(), "bos id is not a token");
  check_special(*t, t->eos_id(), "eos id is not a token");
  check_special(*t, t->pad_id(), "pad id is not a token");
  check(t->vocab_size() == g_plain->vocab_size(), "the config changed the vocabulary size");
  std::vector<int32_t> a, b;
  check(t->encode(kProbe, &a).ok() && g_plain->encode(kProbe, &b).ok(), "encode failed");
  check(a == b, "the config changed the encoding");
  std::string da, db;
  check(t->decode(a.data(), a.size(), true, &da).ok() && g_plain->decode(b.data(), b.size(), true, &db).ok(),
        "decode failed");
  check(da == db, "the config changed the decoding");
  return 0;
}
