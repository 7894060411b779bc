// Memory Interleave: every protocol step as a pure function (id parsing, injections, question extraction, the
// regenerate prompt and its routing regions, answer extraction), then the driver end to end:
//   * on random checkpoints, invariants only (rounds <= max_rounds, documents read are bank ids, transcript
//     structure, token budget, stream == generated text);
//   * on "bigram" checkpoints: real MSA checkpoints (written here, run through the real forward, routing and KV
//     assembly) whose o_proj/down_proj are zero, so the residual stream stays the current token's embedding and
//     an untied lm_head maps chosen tokens to chosen successors. They make the model emit the protocol's
//     markers, which exercises round ends, document injection, re-encoding, the question injection, the answer
//     stage, max_rounds and the length rule deterministically. Nothing of the engine is mocked.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "engine/encoder.h"
#include "engine/interleave.h"
#include "engine/session.h"
#include "model/safetensors.h"
#include "test_engine_common.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace msa;
namespace il = msa::interleave;

namespace {

const Tokenizer& tokenizer() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::unique_ptr<Tokenizer> t;
    Status s = Tokenizer::load(MSA_SHARED_DIR "/data/qwen3-tokenizer", &t);
    if (!s.ok()) throw std::runtime_error(s.to_string());
    return t;
  }();
  return *tok;
}

std::vector<int32_t> ids_of(std::string_view text) {
  std::vector<int32_t> ids;
  ENGINE_REQUIRE_OK(tokenizer().encode(text, &ids));
  return ids;
}

int32_t single_id(std::string_view text) {
  std::vector<int32_t> ids = ids_of(text);
  REQUIRE(ids.size() == 1);
  return ids[0];
}

const std::vector<std::string> kDocs = {
    "The Eiffel Tower is in Paris.",
    "Mount Everest is in the Himalayas.",
    "Honey never spoils.",
    "Water boils at 100 degrees Celsius at sea level.",
};

}  // namespace

// ------------------------------------------------------------------------------------------------ pure functions

TEST_CASE("interleave: document ids are parsed like re.findall(r'\\[(\\d+)\\]')", "[engine][interleave]") {
  CHECK(il::parse_document_ids("[3] and [12][3] [x] [] [007] [ 5] [6 ]") == std::vector<uint64_t>{3, 7, 12});
  CHECK(il::parse_document_ids("").empty());
  CHECK(il::parse_document_ids("[1").empty());
  CHECK(il::parse_document_ids("[[5]]") == std::vector<uint64_t>{5});
  CHECK(il::parse_document_ids("[99999999999999999999999][2]") == std::vector<uint64_t>{2});  // overflow skipped
  CHECK(il::parse_document_ids("[18446744073709551615]") == std::vector<uint64_t>{18446744073709551615ull});
  CHECK(il::parse_document_ids("[4]<|object_ref_end|>") == std::vector<uint64_t>{4});
  CHECK(il::parse_document_ids("[٣]").empty());  // ASCII digits only (documented difference from Python's \d)
}

TEST_CASE("interleave: injection texts", "[engine][interleave]") {
  CHECK(il::format_documents_injection({{3, "abc"}, {7, "d e"}}) == "[3]. abc\n[7]. d e\n<|object_ref_end|>");
  CHECK(il::format_documents_injection({}) == "<|object_ref_end|>");
  CHECK(il::format_question_injection("Who wrote it?") ==
        "<|im_start|>The user's question is: Who wrote it?\n<|object_ref_end|>");
}

TEST_CASE("interleave: the question is cut from the fed text as the reference does", "[engine][interleave]") {
  const std::string q = "Who built the tower?";
  const std::string fed = format_query_block(q) + "<|im_end|>\n<|im_start|>[1]<|object_ref_end|>";
  CHECK(il::extract_question(fed) == q);
  // After the LAST head, before the FIRST tail after it.
  const std::string twice = "a historical document information\n\nold" + format_query_block(q) +
                            "\nPlease return all documents related to the question x";
  CHECK(il::extract_question(twice) == q);
  CHECK(il::extract_question("no markers") == "no markers");
}

TEST_CASE("interleave: regenerate prompt text and the regenerate rule", "[engine][interleave]") {
  CHECK(il::regenerate_prompt_text("junk\nPlease answer the question based X<|endoftext|>Y<|endoftext|>") ==
        "\nPlease answer the question based XY");
  CHECK(il::regenerate_prompt_text("\nPlease answer the question based A\nPlease answer the question based B") ==
        "\nPlease answer the question based A");
  CHECK(il::regenerate_prompt_text("plain<|endoftext|>") == "plain");
  CHECK(il::should_regenerate("x[1]<|object_ref_end|>[1]. d\n<|object_ref_end|>"));
  CHECK_FALSE(il::should_regenerate("x<|object_ref_end|> tail"));
  CHECK_FALSE(il::should_regenerate("The answer to the question is: 4<|object_ref_end|>"));
  CHECK_FALSE(il::should_regenerate(""));
}

TEST_CASE("interleave: regenerate prompt routing regions (question block + latest round's documents)",
          "[engine][interleave]") {
  const Tokenizer& tok = tokenizer();
  const std::string q = "Where is the tower?";
  const std::string qblock = format_query_block(q);
  const std::string head = qblock + "<|im_end|>\n<|im_start|>";
  const std::string docs1 = "[2]. Old doc.\n";
  const std::string docs2 = "[4]. Doc four.\n[9]. Doc nine.\n";
  const std::string text = head + "[2]<|object_ref_end|>" + docs1 + "<|object_ref_end|>[4][9]<|object_ref_end|>" +
                           docs2 + "<|object_ref_end|>";
  std::vector<int32_t> ids, doc_ids;
  ENGINE_REQUIRE_OK(il::encode_regenerate_prompt(tok, text, &ids, &doc_ids));
  CHECK(ids == ids_of(text));
  REQUIRE(doc_ids.size() == ids.size());
  // Region 2: the question block without its final "\n".
  const size_t n2 = ids_of(qblock.substr(0, qblock.size() - 1)).size();
  // Region 1: the latest round's injected documents.
  const size_t s = text.rfind("]<|object_ref_end|>[") + std::strlen("]<|object_ref_end|>");
  const size_t n1a = ids_of(text.substr(0, s)).size();
  const size_t n1b = ids_of(docs2).size();
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool routing = i < n2 || (i >= n1a && i < n1a + n1b);
    INFO("token " << i);
    CHECK(doc_ids[i] == (routing ? 0 : -1));
  }
  std::string region1;
  ENGINE_REQUIRE_OK(tok.decode(ids.data() + n1a, n1b, false, &region1));
  CHECK(region1 == docs2);
  std::string region2;
  ENGINE_REQUIRE_OK(tok.decode(ids.data(), n2, false, &region2));
  CHECK(region2 == qblock.substr(0, qblock.size() - 1));

  // No injected documents in the latest round ("]<|object_ref_end|>[" absent): only the question block routes.
  const std::string empty = head + "[99]<|object_ref_end|><|object_ref_end|>";
  ENGINE_REQUIRE_OK(il::encode_regenerate_prompt(tok, empty, &ids, &doc_ids));
  CHECK(std::count(doc_ids.begin(), doc_ids.end(), 0) == static_cast<std::ptrdiff_t>(n2));
}

TEST_CASE("interleave: answer extraction", "[engine][interleave]") {
  CHECK(il::extract_answer("x The answer to the question is: no. The answer to the question is:  May 5, 1939 <|im_end|>z") ==
        "May 5, 1939");
  CHECK(il::extract_answer("  plain text\n") == "plain text");
  CHECK(il::extract_answer("The answer to the question is:\xC2\xA0yes\xE3\x80\x80") == "yes");
  CHECK(il::extract_answer("") == "");
}

// ------------------------------------------------------------------------------------------------ driver

namespace {

std::unique_ptr<MemoryBank> make_bank(const Model& model) {
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  Encoder enc(model);
  std::vector<std::string_view> v(kDocs.begin(), kDocs.end());
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), v));  // ids 0..3
  return bank;
}

// A micro checkpoint whose next token depends only on the current token (see the file comment). `next` maps
// current -> successor; at most hidden_size (32) distinct current tokens. // Rewrites model.safetensors of a checkpoint directory for the bigram map.
void write_bigram_weights(const engine_test::fs::path& dir, const std::map<int32_t, int32_t>& next) {
  SafetensorsSet set;
  ENGINE_REQUIRE_OK(SafetensorsSet::open_dir(dir.string(), &set));
  const uint16_t one = f32_to_bf16(1.0f);
  std::vector<std::vector<uint8_t>> store;
  std::vector<TensorToWrite> out;
  int64_t vocab = 0, hidden = 0;
  for (const TensorInfo& t : set.tensors()) {
    const uint8_t* p = static_cast<const uint8_t*>(t.view.data);
    store.emplace_back(p, p + t.nbytes());
    out.push_back(TensorToWrite{t.name, t.dtype, t.shape, nullptr});
    if (t.name == "model.embed_tokens.weight") {
      vocab = t.shape[0];
      hidden = t.shape[1];
    }
  }
  REQUIRE(hidden > 0);
  std::map<int32_t, int64_t> dim;  // current token -> its one-hot dimension
  for (const auto& kv : next) dim.emplace(kv.first, static_cast<int64_t>(dim.size()));
  REQUIRE(static_cast<int64_t>(dim.size()) <= hidden);
  for (size_t i = 0; i < out.size(); ++i) {
    REQUIRE(out[i].dtype == DType::kBF16);
    uint16_t* w = reinterpret_cast<uint16_t*>(store[i].data());
    const size_t n = store[i].size() / 2;
    const std::string& name = out[i].name;
    const bool zero = name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos;
    if (zero) std::fill(w, w + n, uint16_t{0});
    if (name == "model.norm.weight") std::fill(w, w + n, one);
    if (name == "model.embed_tokens.weight") {
      for (const auto& kv : dim) {
        std::fill(w + kv.first * hidden, w + (kv.first + 1) * hidden, uint16_t{0});
        w[kv.first * hidden + kv.second] = one;
      }
    }
    out[i].data = store[i].data();
  }
  std::vector<uint16_t> head(static_cast<size_t>(vocab * hidden), 0);
  for (const auto& kv : next) head[static_cast<size_t>(kv.second * hidden + dim.at(kv.first))] = one;
  out.push_back(TensorToWrite{"lm_head.weight", DType::kBF16, {vocab, hidden}, head.data()});
  set = SafetensorsSet();
  ENGINE_REQUIRE_OK(write_safetensors((dir / "model.safetensors").string(), out, {}));
}

// Writes and loads a bigram checkpoint (not cached: each test builds what it needs).
std::unique_ptr<Model> load_bigram(const std::map<int32_t, int32_t>& next) {
  engine_test::fs::path dir = engine_test::write_checkpoint(
      "micro", "", 0, [](nlohmann::json& cfg, nlohmann::json&) { cfg["tie_word_embeddings"] = false; });
  write_bigram_weights(dir, next);
  return engine_test::load_model(dir);
}

void chain(std::map<int32_t, int32_t>* m, const std::vector<int32_t>& seq) {
  for (size_t i = 0; i + 1 < seq.size(); ++i) {
    auto r = m->emplace(seq[i], seq[i + 1]);
    REQUIRE((r.second || r.first->second == seq[i + 1]));  // a bigram machine: one successor per token
  }
}

std::vector<int32_t> cat(std::vector<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

constexpr int32_t kImStart = 151644, kImEnd = 151645, kRefEnd = 151647;

GenerateOptions interleave_greedy(int64_t max_new = 64) {
  GenerateOptions o;
  o.mode = GenerateMode::kInterleave;
  o.sampling.use_model_defaults = false;
  o.max_new_tokens = max_new;
  o.doc_top_k = 2;
  return o;
}

}  // namespace

TEST_CASE("interleave: ids -> documents -> re-encode -> <End-of-Retrieve> -> question -> answer", "[engine][interleave]") {
  const std::vector<int32_t> eor = ids_of(il::kEndOfRetrieve);
  REQUIRE(eor.size() >= 2);
  const int32_t lb = single_id("["), zero = single_id("0"), rb = single_id("]");
  std::map<int32_t, int32_t> next;
  chain(&next, {kImStart, lb, zero, rb, kRefEnd});          // round 1: "[0]<|object_ref_end|>"
  chain(&next, cat({{kRefEnd}, eor, {kImEnd}}));            // later: "<End-of-Retrieve>", then EOS
  auto model = load_bigram(next);
  auto bank = make_bank(*model);
  Session session(*model, bank.get());
  std::vector<int> rounds_seen;
  std::string streamed;
  GenerateOptions o = interleave_greedy();
  o.on_round = [&](const RoundRecord& r) {
    rounds_seen.push_back(r.round);
    return 0;
  };
  o.on_token = [&](std::string_view p) {
    streamed += p;
    return 0;
  };
  const std::string q = "Where is the Eiffel Tower?";
  GenerateResult res;
  Status s = session.generate(q, o, &res);
  INFO(s.to_string());
  ENGINE_REQUIRE_OK(s);
  CHECK(res.stop == StopReason::kEos);
  REQUIRE(res.rounds.size() == 2);
  CHECK(res.rounds[0].documents_read == std::vector<uint64_t>{0});
  CHECK(res.rounds[0].generated_text == "[0]<|object_ref_end|>");
  CHECK_FALSE(res.rounds[0].question_injected);
  CHECK(res.rounds[1].documents_read.empty());
  CHECK(res.rounds[1].question_injected);
  CHECK(rounds_seen == std::vector<int>{1});
  CHECK(res.generated_ids == cat({{lb, zero, rb, kRefEnd}, eor, eor, {kImEnd}}));
  CHECK(streamed == res.generated_text);
  CHECK(res.generated_text == "[0]<|object_ref_end|><End-of-Retrieve><End-of-Retrieve>");
  CHECK(res.answer == "<End-of-Retrieve>");

  const std::string injected = "[0]. " + kDocs[0] + "\n<|object_ref_end|>";
  const std::string round2_prompt =
      format_query_block(q) + "<|im_end|>\n<|im_start|>" + "[0]<|object_ref_end|>" + injected;
  CHECK(res.transcript == round2_prompt + "<End-of-Retrieve>" + il::format_question_injection(q) + "<End-of-Retrieve>");
  // Round 2 re-encodes the transcript; its routing tokens are the question block (minus its "\n") + document 0.
  std::vector<int32_t> ids, doc_ids;
  ENGINE_REQUIRE_OK(il::encode_regenerate_prompt(*model->tokenizer(), round2_prompt, &ids, &doc_ids));
  CHECK(res.rounds[1].prompt_tokens == static_cast<int64_t>(ids.size()));
  CHECK(res.rounds[1].routing_tokens == std::count(doc_ids.begin(), doc_ids.end(), 0));
  CHECK(res.rounds[1].routing_tokens ==
        static_cast<int64_t>(ids_of(format_query_block(q)).size() - 1 + ids_of("[0]. " + kDocs[0] + "\n").size()));
  // Routing ran in both rounds.
  for (const RoundRecord& r : res.rounds) {
    REQUIRE(r.routing.size() == 1);
    CHECK(r.routing[0].top.size() == 2);
  }
  CHECK(res.timings.prefill_ms_total >= res.timings.prefill_ms);
}

TEST_CASE("interleave: '<End-of-Retrieve>' at once -> question injection -> extracted answer", "[engine][interleave]") {
  const std::vector<int32_t> eor = ids_of(il::kEndOfRetrieve);
  const std::vector<int32_t> ans = ids_of("The answer to the question is: yes");
  std::map<int32_t, int32_t> next;
  chain(&next, cat({{kImStart}, eor}));
  chain(&next, cat({{kRefEnd}, ans, {kImEnd}}));
  auto model = load_bigram(next);
  auto bank = make_bank(*model);
  Session session(*model, bank.get());
  GenerateResult res;
  const std::string q = "Is honey eternal?";
  ENGINE_REQUIRE_OK(session.generate(q, interleave_greedy(), &res));
  CHECK(res.stop == StopReason::kEos);
  REQUIRE(res.rounds.size() == 1);
  CHECK(res.rounds[0].question_injected);
  CHECK(res.answer == "yes");
  CHECK(res.transcript == format_query_block(q) + "<|im_end|>\n<|im_start|>" + "<End-of-Retrieve>" +
                              il::format_question_injection(q) + "The answer to the question is: yes");
  CHECK(res.generated_ids == cat({eor, ans, {kImEnd}}));
}

TEST_CASE("interleave: a model that keeps naming documents stops after max_rounds", "[engine][interleave]") {
  const int32_t lb = single_id("["), one = single_id("1"), rb = single_id("]");
  std::map<int32_t, int32_t> next;
  chain(&next, {kImStart, lb, one, rb, kRefEnd, lb});  // "[1]<|object_ref_end|>" every round
  auto model = load_bigram(next);
  auto bank = make_bank(*model);
  Session session(*model, bank.get());
  GenerateOptions o = interleave_greedy(100);
  o.max_rounds = 3;
  int callbacks = 0;
  o.on_round = [&](const RoundRecord&) {
    ++callbacks;
    return 0;
  };
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate("Where is Everest?", o, &res));
  CHECK(res.stop == StopReason::kMaxRounds);
  REQUIRE(res.rounds.size() == 3);
  CHECK(callbacks == 3);
  for (const RoundRecord& r : res.rounds) {
    CHECK(r.documents_read == std::vector<uint64_t>{1});
    CHECK(r.generated_text == "[1]<|object_ref_end|>");
  }
  CHECK(res.answer.empty());
  CHECK(res.generated_ids.size() == 12);
  // Each round re-encodes a longer transcript.
  CHECK(res.rounds[1].prompt_tokens > res.rounds[0].prompt_tokens);
  CHECK(res.rounds[2].prompt_tokens > res.rounds[1].prompt_tokens);

  SECTION("the round callback can cancel") {
    o.on_round = [&](const RoundRecord& r) { return r.round == 2 ? 1 : 0; };
    Status s = session.generate("Where is Everest?", o, &res);
    CHECK(s.code() == StatusCode::kCancelled);
    CHECK(res.stop == StopReason::kCancelled);
    CHECK(res.rounds.size() == 2);
  }
  SECTION("max_new_tokens bounds the whole call") {
    o.max_new_tokens = 6;
    ENGINE_REQUIRE_OK(session.generate("Where is Everest?", o, &res));
    CHECK(res.stop == StopReason::kMaxNewTokens);
    CHECK(res.generated_ids.size() == 6);
    CHECK(res.rounds.size() == 2);
  }
  SECTION("plain mode ignores the protocol") {
    o.mode = GenerateMode::kPlain;
    o.max_new_tokens = 9;
    ENGINE_REQUIRE_OK(session.generate("Where is Everest?", o, &res));
    CHECK(res.rounds.size() == 1);
    CHECK(res.generated_text == "[1]<|object_ref_end|>[1]<|object_ref_end|>[");
    CHECK(res.answer == res.generated_text);
  }
}

TEST_CASE("interleave: the reference's length rule ends retrieval without a question", "[engine][interleave]") {
  const int32_t a = single_id("a");
  std::map<int32_t, int32_t> next;
  chain(&next, {kImStart, a, a});  // "aaaa..." forever
  auto model = load_bigram(next);
  auto bank = make_bank(*model);
  Session session(*model, bank.get());
  GenerateOptions o = interleave_greedy(12);
  o.max_round_chars = 5;
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate("Why?", o, &res));
  CHECK(res.stop == StopReason::kMaxNewTokens);
  REQUIRE(res.rounds.size() == 1);
  CHECK_FALSE(res.rounds[0].question_injected);
  CHECK(res.generated_text == std::string(12, 'a'));
  CHECK(res.answer == std::string(6, 'a'));  // the text after retrieval ended (6 > 5 characters)
}

TEST_CASE("interleave: invariants on random checkpoints", "[engine][interleave]") {
  for (const char* preset : {"micro", "tiny"}) {
    const Model& model = engine_test::cached_model(preset, "");
    auto bank = make_bank(model);
    Session session(model, bank.get());
    for (uint64_t seed : {1, 2, 3}) {
      INFO(preset << " seed " << seed);
      GenerateOptions o;
      o.mode = GenerateMode::kInterleave;
      o.sampling.seed = seed;  // the checkpoint's sampling defaults
      o.max_new_tokens = 24;
      o.max_rounds = 2;
      o.doc_top_k = 3;
      std::string streamed;
      o.on_token = [&](std::string_view p) {
        CHECK(tok::utf8_is_valid(p));
        streamed += p;
        return 0;
      };
      GenerateResult res;
      ENGINE_REQUIRE_OK(session.generate("What boils at 100 degrees?", o, &res));
      CHECK(res.stop != StopReason::kNone);
      CHECK(res.rounds.size() >= 1);
      CHECK(res.rounds.size() <= 2);
      CHECK(res.generated_ids.size() <= 24);
      CHECK(streamed == res.generated_text);
      CHECK(res.transcript.rfind(format_query_block("What boils at 100 degrees?"), 0) == 0);
      for (const RoundRecord& r : res.rounds) {
        CHECK(std::is_sorted(r.documents_read.begin(), r.documents_read.end()));
        for (uint64_t id : r.documents_read) CHECK(bank->find(id) >= 0);
        for (const LayerRouting& lr : r.routing) CHECK(lr.top.size() == 3);
      }
      CHECK(res.routing.size() == model.config().msa.router_layers.size());
    }
  }
}

TEST_CASE("session: ids without a token (embedding padding rows) give no text", "[engine][interleave]") {
  REQUIRE_FALSE(tokenizer().is_valid_id(151800));
  std::map<int32_t, int32_t> next;
  chain(&next, {kImStart, 151800, single_id("ok"), kImEnd});
  auto model = load_bigram(next);
  auto bank = make_bank(*model);
  Session session(*model, bank.get());
  GenerateOptions o = interleave_greedy(10);
  o.mode = GenerateMode::kPlain;
  std::string streamed;
  o.on_token = [&](std::string_view p) {
    streamed += p;
    return 0;
  };
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate("Hi?", o, &res));
  CHECK(res.stop == StopReason::kEos);
  CHECK(res.generated_ids == std::vector<int32_t>{151800, single_id("ok"), kImEnd});
  CHECK(res.generated_text == "ok");
  CHECK(streamed == "ok");
  CHECK(res.transcript == format_query_block("Hi?") + "<|im_end|>\n<|im_start|>ok");
}
