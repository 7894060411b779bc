// Tokenizer tests: goldens from Hugging Face `tokenizers` (tools/tokenizer_goldens.py) must match 100%,
// plus round trip, streaming == one-shot decode, invalid UTF-8, NULs, added tokens, MSA prompt formats,
// thread safety, the C API and the rejection of unsupported tokenizer.json kinds.
#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "msa/msa.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace msa;
using nlohmann::json;

namespace {

const std::string kTokDir = std::string(MSA_SHARED_DIR) + "/data/qwen3-tokenizer";
const std::string kTokJson = kTokDir + "/tokenizer.json";
const std::string kGoldens = std::string(MSA_TEST_DATA_DIR) + "/tokenizer/goldens.jsonl.zst";

double g_load_seconds = 0;

const Tokenizer& qwen() {
  static std::unique_ptr<Tokenizer> t = [] {
    std::unique_ptr<Tokenizer> p;
    auto t0 = std::chrono::steady_clock::now();
    Status s = Tokenizer::load(kTokJson, &p);
    g_load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!s.ok()) FAIL("loading " << kTokJson << ": " << s.to_string());
    return p;
  }();
  return *t;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string zstd_decompress(const std::string& in) {
  std::string out;
  ZSTD_DStream* ds = ZSTD_createDStream();
  ZSTD_initDStream(ds);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::vector<char> buf(ZSTD_DStreamOutSize());
  while (ib.pos < ib.size) {
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    size_t r = ZSTD_decompressStream(ds, &ob, &ib);
    if (ZSTD_isError(r)) {
      ZSTD_freeDStream(ds);
      throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(r));
    }
    out.append(buf.data(), ob.pos);
  }
  ZSTD_freeDStream(ds);
  return out;
}

const std::vector<json>& goldens() {
  static std::vector<json> g = [] {
    std::vector<json> v;
    std::string raw = read_all(kGoldens);
    if (raw.empty()) FAIL("missing " << kGoldens);
    std::istringstream in(zstd_decompress(raw));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) v.push_back(json::parse(line));
    return v;
  }();
  return g;
}

std::string from_hex(const std::string& h) {
  std::string s;
  for (size_t i = 0; i + 1 < h.size(); i += 2) s.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return s;
}

std::vector<int32_t> enc(const Tokenizer& t, std::string_view s, EncodeOptions o = {}) {
  std::vector<int32_t> ids;
  Status st = t.encode(s, o, &ids);
  REQUIRE(st.ok());
  return ids;
}

std::string dec(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip = false) {
  std::string s;
  Status st = t.decode(ids.data(), ids.size(), skip, &s);
  REQUIRE(st.ok());
  return s;
}

std::string stream_dec(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip = false) {
  StreamingDecoder d(t, skip);
  std::string out;
  for (int32_t id : ids) {
    std::string piece;
    REQUIRE(d.push(id, &piece).ok());
    // Never a partial UTF-8 sequence.
    REQUIRE(tok::utf8_is_valid(piece));
    out += piece;
  }
  std::string tail;
  d.flush(&tail);
  REQUIRE(tok::utf8_is_valid(tail));
  return out + tail;
}

std::string short_repr(const std::string& s) {
  std::string r = json(s).dump(-1, ' ', true, json::error_handler_t::replace);
  return r.size() > 160 ? r.substr(0, 160) + "..." : r;
}

}  // namespace

TEST_CASE("tokenizer loads fast and reports its special tokens", "[tokenizer]") {
  const Tokenizer& t = qwen();
  std::printf("[tokenizer] load time of tokenizer.json + tokenizer_config.json: %.3f s (regex JIT: %s)\n",
              g_load_seconds, t.regex_jit() ? "yes" : "no");
  CHECK(g_load_seconds < 5.0);  // ~0.2 s in release builds; generous for sanitizer builds
  CHECK(t.vocab_size() == 151669);
  CHECK(t.added_tokens().size() == 26);
  CHECK(t.eos_id() == 151645);
  CHECK(t.pad_id() == 151643);
  CHECK(t.bos_id() == -1);
  CHECK(t.token_to_id("<|im_start|>") == 151644);
  CHECK(t.token_to_id("<|object_ref_end|>") == 151647);
  CHECK(t.token_to_id("\n") == 198);
  CHECK(t.token_to_id("user") == 872);
  CHECK(t.is_special(151643));
  CHECK_FALSE(t.is_special(151667));  // <think> is added but not special
  CHECK(t.is_added(151667));
  CHECK_FALSE(t.chat_template().empty());
  CHECK(t.max_token_bytes() >= 16);
}

TEST_CASE("goldens: 100% of the oracle's ids, round trip, streaming == one-shot", "[tokenizer][goldens]") {
  const Tokenizer& t = qwen();
  const auto& g = goldens();
  REQUIRE(g.size() > 2000);
  size_t n_text = 0, n_text_ok = 0, n_bytes = 0, n_bytes_ok = 0, n_decode = 0, n_decode_ok = 0;
  size_t n_round = 0, n_round_identity = 0, n_stream_ok = 0, n_stream = 0;
  std::vector<std::string> failures;
  for (const json& r : g) {
    std::vector<int32_t> want = r["ids"].get<std::vector<int32_t>>();
    std::string cat = r["cat"].get<std::string>();
    if (r.contains("text") || r.contains("hex")) {
      bool is_text = r.contains("text");
      std::string input = is_text ? r["text"].get<std::string>() : from_hex(r["hex"].get<std::string>());
      std::vector<int32_t> got = enc(t, input);
      bool ok = got == want;
      (is_text ? n_text : n_bytes)++;
      (is_text ? n_text_ok : n_bytes_ok) += ok;
      if (!ok && failures.size() < 10) failures.push_back(cat + ": " + short_repr(input));
      // add_special has no effect for Qwen (ByteLevel post-processor).
      EncodeOptions with_special;
      with_special.add_special = true;
      if (input.size() < 1000) CHECK(enc(t, input, with_special) == got);
      // Round trip: decode(encode(s)) == s, or the oracle's decode where NFC / U+FFFD changed the text.
      std::string expect_text = r.contains("decoded") ? r["decoded"].get<std::string>() : input;
      std::string back = dec(t, want);
      ++n_round;
      if (back == expect_text) {
        ++n_round_identity;
      } else if (failures.size() < 10) {
        failures.push_back("round trip " + cat + ": " + short_repr(input));
      }
      if (is_text && !r.contains("decoded")) CHECK(back == input);
      ++n_stream;
      n_stream_ok += stream_dec(t, want) == back;
    } else {
      std::string expect_text = r["decoded"].get<std::string>();
      std::string got = dec(t, want);
      ++n_decode;
      bool ok = got == expect_text;
      n_decode_ok += ok;
      if (!ok && failures.size() < 10) failures.push_back("decode " + json(want).dump());
      ++n_stream;
      n_stream_ok += stream_dec(t, want) == got;
    }
  }
  std::printf("[tokenizer] goldens: text %zu/%zu, invalid-UTF-8 bytes %zu/%zu, decode %zu/%zu, round trip %zu/%zu, "
              "streaming == one-shot %zu/%zu\n",
              n_text_ok, n_text, n_bytes_ok, n_bytes, n_decode_ok, n_decode, n_round_identity, n_round,
              n_stream_ok, n_stream);
  for (const auto& f : failures) UNSCOPED_INFO(f);
  CHECK(failures.empty());
  CHECK(n_text >= 2000);
  CHECK(n_text_ok == n_text);
  CHECK(n_bytes_ok == n_bytes);
  CHECK(n_decode_ok == n_decode);
  CHECK(n_round_identity == n_round);
  CHECK(n_stream_ok == n_stream);
}

TEST_CASE("invalid UTF-8 is repaired like Python's decode('utf-8', 'replace')", "[tokenizer]") {
  const Tokenizer& t = qwen();
  auto repaired = [](const std::string& s) {
    std::string out;
    tok::utf8_repair(s, &out);
    return out;
  };
  // One U+FFFD per maximal subpart.
  CHECK(repaired("\xff") == "\xEF\xBF\xBD");
  CHECK(repaired("\xe2\x82") == "\xEF\xBF\xBD");                        // truncated: one
  CHECK(repaired("\xe2\x82x") == "\xEF\xBF\xBDx");
  CHECK(repaired("\xed\xa0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: three
  CHECK(repaired("\xc0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD");            // overlong
  CHECK(repaired("\xf4\x90\x80\x80") == std::string(4 * 3, '\0').replace(0, 12, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
  CHECK(repaired("a\xf0\x9f\x98") == "a\xEF\xBF\xBD");
  CHECK(repaired("ok \xe4\xb8\xad") == "ok \xe4\xb8\xad");
  // Tokenizing invalid bytes == tokenizing the repaired text; never an error.
  std::string bad = "caf\xe9 <|im_end|>\xff\xfe";
  CHECK(enc(t, bad) == enc(t, repaired(bad)));
  // Streaming repair over any split equals the one-shot repair.
  std::string s = "x\xe2\x82\xac\xf0\x9f\x98\x80\xed\xa0\x80\xe2\x82y\xf0";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    tok::Utf8Repairer r;
    std::string out;
    r.feed(s.data(), cut, &out);
    r.feed(s.data() + cut, s.size() - cut, &out);
    r.finish(&out);
    CHECK(out == repaired(s));
  }
}

TEST_CASE("embedded NUL bytes are ordinary input", "[tokenizer]") {
  const Tokenizer& t = qwen();
  std::string s("a\0b\0\0c", 6);
  auto ids = enc(t, s);
  CHECK(ids.size() >= 4);
  CHECK(dec(t, ids) == s);
  CHECK(enc(t, std::string(1, '\0')).size() == 1);
}

TEST_CASE("added tokens: matched before normalisation, never split; parse_special=false", "[tokenizer]") {
  const Tokenizer& t = qwen();
  CHECK(enc(t, "<|im_start|>user\n") == std::vector<int32_t>{151644, 872, 198});
  CHECK(enc(t, "<|im_end|><|im_start|>") == std::vector<int32_t>{151645, 151644});
  EncodeOptions plain;
  plain.parse_special = false;
  auto ids = enc(t, "<|im_end|>", plain);
  CHECK(ids.size() > 1);
  for (int32_t id : ids) CHECK(id < 151643);
  CHECK(dec(t, ids) == "<|im_end|>");
  // Decoding with skip_special drops special tokens only.
  std::vector<int32_t> mix = {151644, 872, 198, 151667, 151645};
  CHECK(dec(t, mix, true) == "user\n<think>");
  CHECK(dec(t, mix, false) == "<|im_start|>user\n<think><|im_end|>");
  CHECK(stream_dec(t, mix, true) == "user\n<think>");
}

TEST_CASE("decode rejects ids outside the vocabulary", "[tokenizer]") {
  const Tokenizer& t = qwen();
  std::vector<int32_t> ids = {100, 151669};
  std::string s;
  Status st = t.decode(ids.data(), ids.size(), false, &s);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(s.empty());
  StreamingDecoder d(t);
  CHECK(d.push(-1, &s).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("streaming decoder never emits partial UTF-8 and flushes a dangling sequence", "[tokenizer]") {
  const Tokenizer& t = qwen();
  std::string text = "中文 😀👨‍👩‍👧 é";
  auto ids = enc(t, text);
  CHECK(stream_dec(t, ids) == text);
  // A lone lead byte at the end: held back, then U+FFFD on flush (as the one-shot decode).
  int32_t lead = t.token_to_id("\xe4");
  REQUIRE(lead >= 0);
  StreamingDecoder d(t);
  std::string out;
  REQUIRE(d.push(lead, &out).ok());
  CHECK(out.empty());
  CHECK(d.pending() == 1);
  d.flush(&out);
  CHECK(out == "\xEF\xBF\xBD");
  CHECK(dec(t, {lead}) == "\xEF\xBF\xBD");
}

TEST_CASE("MSA prompt formats (spec 3.1-3.3)", "[tokenizer]") {
  const Tokenizer& t = qwen();
  ChatTemplateIds c;
  REQUIRE(chat_template_ids(t, &c).ok());
  CHECK(c.head == std::vector<int32_t>{151644, 872, 198});
  CHECK(c.tail == std::vector<int32_t>{151645, 198});
  CHECK(c.response_head == std::vector<int32_t>{151644});
  CHECK(format_user_turn("hi") == "<|im_start|>user\nhi<|im_end|>\n");

  CHECK(format_document(7, "Paris is in France.") == "<|im_start|>[7]. Paris is in France.[7]<|im_end|>");
  std::vector<int32_t> d;
  REQUIRE(encode_document(t, 7, "Paris is in France.", &d).ok());
  REQUIRE(d.size() > 4);
  CHECK(d.front() == 151644);
  CHECK(d.back() == 151645);
  std::vector<int32_t> inner(d.begin() + 1, d.end() - 1);
  CHECK(inner == enc(t, "[7]. Paris is in France.[7]"));

  std::string block = format_query_block("Where is Paris?");
  CHECK(block ==
        "\nPlease answer the question based on the above historical document information\n\nWhere is Paris?\n"
        "Please return all documents related to the question\n");
  std::vector<int32_t> q, doc_ids;
  size_t n_routing = 0;
  REQUIRE(encode_query(t, "Where is Paris?", &q, &doc_ids, &n_routing).ok());
  auto bpe = enc(t, block);
  REQUIRE(q.size() == bpe.size() + 3);
  CHECK(n_routing == bpe.size());
  CHECK(std::vector<int32_t>(q.begin(), q.begin() + static_cast<long>(bpe.size())) == bpe);
  CHECK(std::vector<int32_t>(q.end() - 3, q.end()) == std::vector<int32_t>{151645, 198, 151644});
  REQUIRE(doc_ids.size() == q.size());
  CHECK(doc_ids[0] == 0);
  CHECK(std::vector<int32_t>(doc_ids.end() - 3, doc_ids.end()) == std::vector<int32_t>{-2, -2, -1});
}

TEST_CASE("tokenize from several threads at once on one tokenizer", "[tokenizer]") {
  const Tokenizer& t = qwen();
  std::vector<std::string> texts;
  for (const json& r : goldens()) {
    if (r.contains("text") && r["text"].get<std::string>().size() < 2000) texts.push_back(r["text"]);
    if (texts.size() >= 600) break;
  }
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : texts) want.push_back(enc(t, s));
  std::atomic<int> bad{0};
  std::vector<std::thread> th;
  for (int k = 0; k < 4; ++k)
    th.emplace_back([&, k] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < texts.size(); ++i) {
          size_t j = (i * 7 + static_cast<size_t>(k) * 13) % texts.size();
          std::vector<int32_t> ids;
          if (!t.encode(texts[j], &ids).ok() || ids != want[j]) ++bad;
        }
    });
  for (auto& x : th) x.join();
  CHECK(bad.load() == 0);
}

TEST_CASE("Oniguruma -> PCRE2 pattern translation", "[tokenizer]") {
  std::string p;
  REQUIRE(tok::translate_onig_pattern("\\s+(?!\\S)", &p).ok());
  CHECK(p.find("\\x{85}") != std::string::npos);
  CHECK(p.find("[^") != std::string::npos);
  REQUIRE(tok::translate_onig_pattern("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+", &p).ok());
  CHECK(p.find("\\x{31350}-\\x{323AF}") != std::string::npos);
  CHECK(tok::translate_onig_pattern("\\d+", &p).code() == StatusCode::kUnsupported);
  CHECK(tok::translate_onig_pattern("[\\S]", &p).code() == StatusCode::kUnsupported);
  CHECK(tok::translate_onig_pattern("[[:alpha:]]", &p).code() == StatusCode::kUnsupported);
  CHECK(tok::translate_onig_pattern("[]a]", &p).ok());
  CHECK(p == "[\\]a]");
}

namespace {
// A tiny tokenizer.json of the Qwen kind: the 256 byte-level tokens, a few merges, Qwen's pre-tokenizer.
json tiny_tokenizer() {
  static const json base = [] {
    json j = json::object();
    // Qwen3's pre-tokenizer, as in its tokenizer.json.
    const json real_pre = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})");
    j["version"] = "1.0";
    j["truncation"] = nullptr;
    j["padding"] = nullptr;
    j["added_tokens"] = json::array({json{{"id", 300}, {"content", "<|im_end|>"}, {"single_word", false},
                                          {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                          {"special", true}}});
    j["normalizer"] = json{{"type", "NFC"}};
    j["pre_tokenizer"] = real_pre;
    j["post_processor"] = json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                               {"use_regex", false}};
    j["decoder"] = j["post_processor"];
    json vocab = json::object();
    int id = 0;
    for (int b = 0; b < 256; ++b) {
      std::string s;
      // GPT-2 byte-level alphabet
      auto printable = [](int x) { return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE; };
      int n = 0;
      for (int x = 0; x < b; ++x) n += !printable(x);
      tok::utf8_append(printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(0x100 + n), &s);
      vocab[s] = id++;
    }
    vocab["he"] = id++;
    vocab["ll"] = id++;
    vocab["hell"] = id++;
    vocab["hello"] = id++;
    j["model"] = json{{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                      {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
                      {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab},
                      {"merges", json::array({json::array({"h", "e"}), json::array({"l", "l"}),
                                              json::array({"he", "ll"}), json::array({"hell", "o"})})}};
    return j;
  }();
  return base;
}
std::string patched(const std::string& pointer, const json& value) {
  json j = tiny_tokenizer();
  j[json::json_pointer(pointer)] = value;
  return j.dump();
}
StatusCode load_code(const std::string& text) {
  std::unique_ptr<Tokenizer> t;
  return Tokenizer::load_from_memory(text, "", "test.json", &t).code();
}
}  // namespace

TEST_CASE("a minimal tokenizer.json of the same kind loads and works", "[tokenizer]") {
  std::unique_ptr<Tokenizer> t;
  REQUIRE(Tokenizer::load_from_memory(tiny_tokenizer().dump(), "", "tiny.json", &t).ok());
  CHECK(enc(*t, "hello") == std::vector<int32_t>{259});
  CHECK(enc(*t, "hello<|im_end|>hell") == std::vector<int32_t>{259, 300, 258});
  CHECK(dec(*t, {259, 300, 258}) == "hello<|im_end|>hell");
  // "a b" merge strings are the same as ["a", "b"] pairs.
  json j = tiny_tokenizer();
  j["model"]["merges"] = json::array({"h e", "l l", "he ll", "hell o"});
  REQUIRE(Tokenizer::load_from_memory(j.dump(), "", "tiny.json", &t).ok());
  CHECK(enc(*t, "hello") == std::vector<int32_t>{259});
}

TEST_CASE("unsupported or malformed tokenizer.json files are rejected clearly", "[tokenizer]") {
  CHECK(load_code(patched("/normalizer", json{{"type", "NFKC"}})) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/model/type", "WordPiece")) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/decoder", nullptr)) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/post_processor", json{{"type", "TemplateProcessing"}})) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/added_tokens/0/lstrip", true)) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/model/byte_fallback", true)) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/model/dropout", 0.1)) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/truncation", json{{"max_length", 5}})) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/pre_tokenizer/pretokenizers/0/behavior", "Removed")) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/pre_tokenizer/pretokenizers/0/pattern/Regex", "\\d+")) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/pre_tokenizer", json{{"type", "Whitespace"}})) == StatusCode::kUnsupported);
  CHECK(load_code(patched("/model/merges/1", "l")) == StatusCode::kTokenizer);
  CHECK(load_code(patched("/model/merges/1", json::array({"zz", "q"}))) == StatusCode::kTokenizer);
  CHECK(load_code(patched("/model/vocab/hello", -1)) == StatusCode::kTokenizer);
  CHECK(load_code(patched("/model/vocab/hello", "x")) == StatusCode::kTokenizer);
  CHECK(load_code("{\"model\": ") == StatusCode::kTokenizer);
  CHECK(load_code("[]") == StatusCode::kTokenizer);
  std::unique_ptr<Tokenizer> t;
  Status s = Tokenizer::load_from_memory("{\"model\": ", "", "broken.json", &t);
  CHECK(s.message().find("broken.json") != std::string::npos);
  s = Tokenizer::load("/nonexistent/tokenizer.json", &t);
  CHECK(s.code() == StatusCode::kIo);
  // A malformed tokenizer_config.json is an error too (named).
  s = Tokenizer::load_from_memory(tiny_tokenizer().dump(), "{\"eos_token\": \"<nope>\"}", "tiny.json", &t);
  CHECK(s.code() == StatusCode::kTokenizer);
}

namespace {
int64_t max_rss_bytes() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}
Status load_status(const std::string& text) {
  std::unique_ptr<Tokenizer> t;
  return Tokenizer::load_from_memory(text, "", "bomb.json", &t);
}
}  // namespace

TEST_CASE("token ids are bounded: MSA_MAX_VOCAB and the number of tokens the file defines", "[tokenizer][limits]") {
  const int64_t rss0 = max_rss_bytes();
  // Before: one vocab id of 2^31-1 made the loader size its id tables by it (64 GiB).
  Status st = load_status(patched("/model/vocab/hello", 2147483647));
  INFO(st.to_string());
  CHECK(st.code() == StatusCode::kTokenizer);
  CHECK(st.message().find("bomb.json") != std::string::npos);
  CHECK(st.message().find("2147483647") != std::string::npos);
  CHECK(st.message().find("MSA_MAX_VOCAB") != std::string::npos);
  // Below MSA_MAX_VOCAB but implausible for a file that defines 261 tokens (would still be ~1 GB of tables).
  st = load_status(patched("/model/vocab/hello", (1 << 24) - 1));
  INFO(st.to_string());
  CHECK(st.code() == StatusCode::kTokenizer);
  CHECK(st.message().find("implausibly large") != std::string::npos);
  CHECK(st.message().find("\"hello\"") != std::string::npos);
  // The same for added tokens (before: ids up to 2^31-2 were accepted and sized the tables).
  st = load_status(patched("/added_tokens/0/id", 2147483646));
  CHECK(st.code() == StatusCode::kTokenizer);
  CHECK(st.message().find("MSA_MAX_VOCAB") != std::string::npos);
  st = load_status(patched("/added_tokens/0/id", 1 << 20));
  CHECK(st.code() == StatusCode::kTokenizer);
  CHECK(st.message().find("<|im_end|>") != std::string::npos);
  CHECK(max_rss_bytes() - rss0 < (int64_t{256} << 20));

  // Holes within the bound are fine, as in HF: ids 261..999 unused, "hello" at 1000.
  std::unique_ptr<Tokenizer> t;
  REQUIRE(Tokenizer::load_from_memory(patched("/model/vocab/hello", 1000), "", "holes.json", &t).ok());
  CHECK(t->vocab_size() == 1001);
  CHECK(enc(*t, "hello<|im_end|>") == std::vector<int32_t>{1000, 300});
  CHECK(dec(*t, {1000, 300}) == "hello<|im_end|>");
  CHECK_FALSE(t->is_valid_id(999));
  // The largest id allowed for 261 tokens: 2 x 261 + 1024 - 1.
  const int64_t top = Tokenizer::kIdSpaceFactor * 261 + Tokenizer::kIdSpaceSlack - 1;
  REQUIRE(Tokenizer::load_from_memory(patched("/model/vocab/hello", top), "", "holes.json", &t).ok());
  CHECK(t->vocab_size() == top + 1);
  CHECK(load_code(patched("/model/vocab/hello", top + 1)) == StatusCode::kTokenizer);
  CHECK(load_code(patched("/added_tokens/0/id", -1)) == StatusCode::kTokenizer);
}

TEST_CASE("C API: msa_tokenizer_*, msa_detokenizer_*", "[tokenizer][capi]") {
  msa_tokenizer* tk = nullptr;
  REQUIRE(msa_tokenizer_load(kTokDir.c_str(), &tk) == MSA_OK);  // a directory works too
  REQUIRE(tk != nullptr);
  msa_tokenizer_desc desc;
  desc.struct_size = sizeof desc;
  REQUIRE(msa_tokenizer_info(tk, &desc) == MSA_OK);
  CHECK(desc.vocab_size == 151669);
  CHECK(desc.eos_id == 151645);
  CHECK(desc.pad_id == 151643);
  CHECK(desc.bos_id == -1);

  const char text[] = "<|im_start|>user\nHello, world!";
  size_t n = 0;
  // Size query: cap 0, out NULL.
  CHECK(msa_tokenizer_tokenize(tk, text, sizeof text - 1, 0, nullptr, 0, &n) == MSA_ERR_BUFFER_TOO_SMALL);
  REQUIRE(n > 3);
  std::vector<int32_t> ids(n);
  size_t n2 = 0;
  CHECK(msa_tokenizer_tokenize(tk, text, sizeof text - 1, 0, ids.data(), 2, &n2) == MSA_ERR_BUFFER_TOO_SMALL);
  CHECK(n2 == n);
  REQUIRE(msa_tokenizer_tokenize(tk, text, sizeof text - 1, 1, ids.data(), ids.size(), &n2) == MSA_OK);
  CHECK(n2 == n);
  CHECK(ids[0] == 151644);

  size_t len = 0;
  CHECK(msa_tokenizer_detokenize(tk, ids.data(), ids.size(), 0, nullptr, 0, &len) == MSA_ERR_BUFFER_TOO_SMALL);
  CHECK(len == sizeof text - 1);
  std::vector<char> buf(len + 1);
  REQUIRE(msa_tokenizer_detokenize(tk, ids.data(), ids.size(), 0, buf.data(), buf.size(), &len) == MSA_OK);
  CHECK(std::string(buf.data(), len) == text);
  CHECK(buf[len] == '\0');
  REQUIRE(msa_tokenizer_detokenize(tk, ids.data(), ids.size(), 1, buf.data(), buf.size(), &len) == MSA_OK);
  CHECK(std::string(buf.data(), len) == "user\nHello, world!");

  char piece[64];
  REQUIRE(msa_tokenizer_token_to_piece(tk, 151645, piece, sizeof piece, &len) == MSA_OK);
  CHECK(std::string(piece, len) == "<|im_end|>");
  CHECK(msa_tokenizer_token_to_piece(tk, 151669, piece, sizeof piece, &len) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(std::string(msa_last_error()).find("151669") != std::string::npos);
  int32_t id = -1;
  REQUIRE(msa_tokenizer_token_to_id(tk, "<|im_end|>", 10, &id) == MSA_OK);
  CHECK(id == 151645);
  CHECK(msa_tokenizer_token_to_id(tk, "no such token!", 14, &id) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(id == -1);

  // Streaming: one id at a time, "😀" is split over several byte tokens.
  const char emoji[] = "a😀b";
  std::vector<int32_t> e(16);
  REQUIRE(msa_tokenizer_tokenize(tk, emoji, sizeof emoji - 1, 0, e.data(), e.size(), &n) == MSA_OK);
  e.resize(n);
  msa_detokenizer* d = nullptr;
  REQUIRE(msa_detokenizer_create(tk, 0, &d) == MSA_OK);
  std::string streamed;
  for (int32_t x : e) {
    char small[1];
    size_t need = 0;
    msa_status st = msa_detokenizer_push(d, x, small, 0, &need);
    if (st == MSA_ERR_BUFFER_TOO_SMALL) {
      // State unchanged: retry with room.
      std::vector<char> b(need + 1);
      REQUIRE(msa_detokenizer_push(d, x, b.data(), b.size(), &need) == MSA_OK);
      streamed.append(b.data(), need);
    } else {
      REQUIRE(st == MSA_OK);
      CHECK(need == 0);
    }
  }
  char tail[8];
  REQUIRE(msa_detokenizer_flush(d, tail, sizeof tail, &len) == MSA_OK);
  streamed.append(tail, len);
  CHECK(streamed == emoji);
  CHECK(msa_detokenizer_push(d, -5, tail, sizeof tail, &len) == MSA_ERR_INVALID_ARGUMENT);
  msa_detokenizer_free(d);
  msa_detokenizer_free(nullptr);

  // Invalid arguments.
  CHECK(msa_tokenizer_tokenize(nullptr, text, 1, 0, ids.data(), ids.size(), &n) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(msa_tokenizer_tokenize(tk, nullptr, 1, 0, ids.data(), ids.size(), &n) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(msa_tokenizer_tokenize(tk, nullptr, 0, 0, ids.data(), ids.size(), &n) == MSA_OK);  // empty text
  CHECK(n == 0);
  CHECK(msa_tokenizer_tokenize(tk, text, 1, 0, ids.data(), ids.size(), nullptr) == MSA_ERR_INVALID_ARGUMENT);
  msa_tokenizer* none = reinterpret_cast<msa_tokenizer*>(1);
  CHECK(msa_tokenizer_load("/nonexistent/tokenizer.json", &none) == MSA_ERR_IO);
  CHECK(none == nullptr);
  msa_tokenizer_free(tk);
  msa_tokenizer_free(nullptr);
}
