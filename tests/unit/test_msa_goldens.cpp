// MSA end to end against the goldens of tools/msa_reference.py (an independent float32 PyTorch
// implementation of MSA_SPEC.md Part B with the Part A decisions), committed under tests/data/msa_goldens/:
//
//   * the checkpoint of each configuration is regenerated with msa::init_model (the command is in the
//     sidecar <config>.json) into a temporary directory and must hash (XXH64) to the recorded value;
//   * stage 1 (Encoder + MemoryBank): document tokens, pooled K̄/V̄/K̄ᴿ of every router layer, template K/V;
//   * stage 2 (Session::route, Session::generate): every document's score per router layer, the selected
//     top-k, the first step's logits;
//   * stage 3: the 32-token greedy continuation;
//   * Memory Interleave, one scripted run (config a_default): every string and token list the protocol
//     builds (interleave.h pure functions), and the whole run through Session::generate(kInterleave) with
//     the scripted outputs forced by a logits callback: round-2 routing with the §6.4 routing-token mask, the
//     forced "<End-of-Retrieve>", the question restatement and the greedy answer.
//
// Tolerances: f32 vs f32 with different summation orders. Values are compared with
// |got - want| <= 1e-4 * (|want| + scale), scale = the largest |value| of the golden tensor (pooled rows,
// template rows, a layer's scores, the stored logits), i.e. 1e-4 relative with a floor for entries near zero.
// Token lists, selections and strings must be identical. The goldens were chosen so that every greedy step's
// top1-top2 logit gap is >= 0.08 and every top-k boundary gap is >= 1e-3 relative (see the sidecars).
#include <catch2/catch.hpp>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/encoder.h"
#include "engine/interleave.h"
#include "engine/session.h"
#include "memory/memory_bank.h"
#include "model/forward.h"
#include "model/init_model.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "router/router.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace msa;

const char* const kConfigs[] = {"a_default", "b_cosine", "c_all_layers", "d_attn_infonce", "e_attn_decouple"};
constexpr double kRel = 1e-4;

std::string golden_dir() { return std::string(MSA_TEST_DATA_DIR) + "/msa_goldens"; }
std::string tokenizer_dir() { return std::string(MSA_SHARED_DIR) + "/data/qwen3-tokenizer"; }

// ------------------------------------------------------------------------------------------- golden files

struct Golden {
  std::string name;
  json side;  // <name>.json
  SafetensorsSet st;

  bool has(const std::string& t) const { return st.contains(t); }
  std::vector<float> f32(const std::string& t) const {
    const TensorInfo* info = st.find(t);
    INFO("golden tensor " << name << ":" << t);
    REQUIRE(info != nullptr);
    REQUIRE(info->dtype == DType::kF32);
    std::vector<float> out(static_cast<size_t>(info->view.numel()));
    std::memcpy(out.data(), info->view.data, out.size() * sizeof(float));
    return out;
  }
  std::vector<int32_t> i32(const std::string& t) const {
    const TensorInfo* info = st.find(t);
    INFO("golden tensor " << name << ":" << t);
    REQUIRE(info != nullptr);
    REQUIRE(info->dtype == DType::kI32);
    std::vector<int32_t> out(static_cast<size_t>(info->view.numel()));
    std::memcpy(out.data(), info->view.data, out.size() * sizeof(int32_t));
    return out;
  }
};

// A regenerated checkpoint, its model and its stage-1 bank (built once per configuration per process).
struct Fixture {
  Golden g;
  std::string dir;
  uint64_t xxh = 0;
  std::unique_ptr<Model> model;
  std::unique_ptr<MemoryBank> bank;
  std::vector<std::string> documents, queries;
  int64_t doc_top_k = 0, first_position = 0;
};

// Temporary checkpoint directories, removed at exit.
struct TempRoot {
  std::string path;
  TempRoot() {
    std::string tmpl = (fs::temp_directory_path() / "msa_goldens_XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) != nullptr) path = buf.data();
  }
  ~TempRoot() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string hex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

Fixture& fixture(const std::string& name) {
  static TempRoot root;
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return *it->second;
  REQUIRE_FALSE(root.path.empty());
  auto f = std::make_unique<Fixture>();
  f->g.name = name;
  const std::string side_text = read_file(golden_dir() + "/" + name + ".json");
  REQUIRE_FALSE(side_text.empty());
  f->g.side = json::parse(side_text);
  Status s = SafetensorsSet::open_file(golden_dir() + "/" + name + ".safetensors", &f->g.st);
  INFO(s.to_string());
  REQUIRE(s.ok());
  const json& side = f->g.side;
  for (const auto& d : side.at("documents")) f->documents.push_back(d.get<std::string>());
  for (const auto& q : side.at("queries")) f->queries.push_back(q.get<std::string>());
  f->doc_top_k = side.at("doc_top_k").get<int64_t>();
  f->first_position = side.at("first_position").get<int64_t>();

  // The checkpoint, exactly as recorded: msa init-model --preset P --seed S --msa-config J.
  InitModelOptions o;
  o.preset = side.at("init_model").at("preset").get<std::string>();
  o.seed = side.at("init_model").at("seed").get<uint64_t>();
  o.msa_config_json = side.at("init_model").at("msa_config_json").get<std::string>();
  o.tokenizer_dir = tokenizer_dir();
  o.out_dir = root.path + "/" + name;
  s = init_model(o);
  INFO(s.to_string());
  REQUIRE(s.ok());
  f->dir = o.out_dir;
  const std::string blob = read_file(f->dir + "/model.safetensors");
  REQUIRE(static_cast<int64_t>(blob.size()) == side.at("model_safetensors").at("bytes").get<int64_t>());
  f->xxh = XXH64(blob.data(), blob.size(), 0);

  s = Model::load(f->dir, ModelLoadOptions(), &f->model);
  INFO(s.to_string());
  REQUIRE(s.ok());
  s = create_memory_bank(*f->model, nullptr, &f->bank);
  INFO(s.to_string());
  REQUIRE(s.ok());
  std::vector<std::string_view> texts(f->documents.begin(), f->documents.end());
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < texts.size(); ++i) ids.push_back(i);
  Encoder enc(*f->model);
  s = enc.add_documents(f->bank.get(), texts, &ids);
  INFO(s.to_string());
  REQUIRE(s.ok());
  Fixture& ref = *f;
  cache.emplace(name, std::move(f));
  return ref;
}

// |got - want| <= rel * (|want| + scale), scale = max |want|.
void check_close(const std::string& what, const float* got, const std::vector<float>& want, double rel = kRel) {
  double scale = 0;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  double worst = 0;
  size_t worst_at = 0, bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = rel * (std::fabs(want[i]) + scale);
    if (!(d <= tol)) ++bad;
    if (!(d <= worst)) {
      worst = d;
      worst_at = i;
    }
  }
  if (std::getenv("MSA_GOLDEN_VERBOSE") != nullptr) {
    std::fprintf(stderr, "%-48s n=%-5zu max|diff| %.3g (%.3g of scale %.3g)\n", what.c_str(), want.size(), worst,
                 scale > 0 ? worst / scale : 0.0, scale);
  }
  INFO(what << ": " << bad << " of " << want.size() << " values outside " << rel << " relative; worst |diff| "
            << worst << " at " << worst_at << " (golden " << (want.empty() ? 0.0f : want[worst_at]) << ", got "
            << (want.empty() ? 0.0f : got[worst_at]) << "), scale " << scale);
  CHECK(bad == 0);
}

std::vector<int32_t> as_i32(const std::vector<ScoredDocument>& docs) {
  std::vector<int32_t> out;
  for (const ScoredDocument& d : docs) out.push_back(static_cast<int32_t>(d.id));
  return out;
}

std::string decode(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string s;
  Status st = tok.decode(ids.data(), ids.size(), false, &s);
  REQUIRE(st.ok());
  return s;
}

std::vector<int32_t> encode(const Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> ids;
  Status st = tok.encode(text, &ids);
  REQUIRE(st.ok());
  return ids;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ tests

TEST_CASE("msa goldens: init-model regenerates every golden checkpoint bit for bit", "[msa_goldens]") {
  for (const char* name : kConfigs) {
    Fixture& f = fixture(name);
    INFO(name << ": " << f.g.side.at("init_model").at("command").get<std::string>());
    CHECK(hex64(f.xxh) == f.g.side.at("model_safetensors").at("xxh64").get<std::string>());
    CHECK(f.g.st.files().at(0).metadata.at("model_xxh64") == hex64(f.xxh));
    // The configuration the golden was written for is the one the engine read.
    const MsaConfig& m = f.model->config().msa;
    const json& mc = f.g.side.at("msa_config");
    CHECK(m.aux_loss_method == mc.at("aux_loss_method").get<std::string>());
    CHECK(m.decouple_router == mc.at("decouple_router").get<bool>());
    std::vector<int> layers;
    for (const auto& l : f.g.side.at("routing").at("router_layers")) layers.push_back(l.get<int>());
    CHECK(m.router_layers == layers);
    CHECK(m.normalize_routing() == f.g.side.at("routing").at("normalize").get<bool>());
    CHECK(m.scale_routing() == !f.g.side.at("routing").at("scale").is_null());
  }
}

TEST_CASE("msa goldens: stage 1 tokens, pooled K/V/router keys, template prefix", "[msa_goldens]") {
  for (const char* name : kConfigs) {
    Fixture& f = fixture(name);
    INFO("config " << name);
    const Tokenizer& tok = *f.model->tokenizer();
    const std::vector<int32_t> tokens = f.g.i32("stage1.tokens");
    const std::vector<int32_t> n_tokens = f.g.i32("stage1.doc_n_tokens");
    const std::vector<int32_t> chunk_begin = f.g.i32("stage1.doc_chunk_begin");
    const std::vector<int32_t> n_chunks = f.g.i32("stage1.doc_n_chunks");
    REQUIRE(f.bank->n_documents() == static_cast<int64_t>(f.documents.size()));
    size_t at = 0;
    for (size_t d = 0; d < f.documents.size(); ++d) {
      INFO("document " << d);
      std::vector<int32_t> ids;
      REQUIRE(encode_document(tok, static_cast<int64_t>(d), f.documents[d], &ids).ok());
      const std::vector<int32_t> want(tokens.begin() + static_cast<long>(at),
                                      tokens.begin() + static_cast<long>(at + static_cast<size_t>(n_tokens[d])));
      CHECK(ids == want);
      at += static_cast<size_t>(n_tokens[d]);
      const DocumentRecord& rec = f.bank->document(static_cast<int64_t>(d));
      CHECK(rec.id == d);
      CHECK(rec.n_tokens == n_tokens[d]);
      CHECK(rec.chunk_begin == chunk_begin[d]);
      CHECK(rec.n_chunks == n_chunks[d]);
    }
    const ModelConfig& c = f.model->config();
    for (size_t slot = 0; slot < c.msa.router_layers.size(); ++slot) {
      const std::string p = "stage1.layer" + std::to_string(c.msa.router_layers[slot]);
      const std::vector<float> k = f.g.f32(p + ".k"), v = f.g.f32(p + ".v"), rk = f.g.f32(p + ".rk");
      const RoutingIndex& ri = f.bank->routing(static_cast<int>(slot));
      const ContentPages& cp = f.bank->content(static_cast<int>(slot));
      REQUIRE(ri.keys.size() == rk.size());
      REQUIRE(cp.k.size() == k.size());
      REQUIRE(cp.v.size() == v.size());
      check_close(p + ".k", cp.k.data(), k);
      check_close(p + ".v", cp.v.data(), v);
      check_close(p + ".rk", ri.keys.data(), rk);
    }
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "template.layer" + std::to_string(l);
      const std::vector<float> tk = f.g.f32(p + ".k"), tv = f.g.f32(p + ".v");
      REQUIRE(f.bank->template_k(l).size() == tk.size());
      REQUIRE(f.bank->template_v(l).size() == tv.size());
      check_close(p + ".k", f.bank->template_k(l).data(), tk);
      check_close(p + ".v", f.bank->template_v(l).data(), tv);
    }
  }
}

TEST_CASE("msa goldens: stage 2 routing scores and top-k of every query", "[msa_goldens]") {
  for (const char* name : kConfigs) {
    Fixture& f = fixture(name);
    const ModelConfig& c = f.model->config();
    Session session(*f.model, f.bank.get());
    for (size_t j = 0; j < f.queries.size(); ++j) {
      INFO("config " << name << ", query " << j);
      const std::string p = "query" + std::to_string(j);
      std::vector<int32_t> ids, doc_ids;
      REQUIRE(encode_query(*f.model->tokenizer(), f.queries[j], &ids, &doc_ids).ok());
      CHECK(ids == f.g.i32(p + ".ids"));
      CHECK(doc_ids == f.g.i32(p + ".doc_ids"));
      RouteOptions ro;
      ro.doc_top_k = f.doc_top_k;
      ro.record_scores = true;
      RouteResult rr;
      Status s = session.route(f.queries[j], ro, &rr);
      INFO(s.to_string());
      REQUIRE(s.ok());
      REQUIRE(rr.layers.size() == c.msa.router_layers.size());
      for (const LayerRouting& lr : rr.layers) {
        const std::string lp = p + ".layer" + std::to_string(lr.layer);
        INFO("layer " << lr.layer);
        const std::vector<float> want = f.g.f32(lp + ".scores");
        REQUIRE(lr.scores.size() == want.size());
        check_close(lp + ".scores", lr.scores.data(), want);
        CHECK(as_i32(lr.top) == f.g.i32(lp + ".selected"));
      }
    }
  }
}

TEST_CASE("msa goldens: first-step logits and greedy continuation", "[msa_goldens]") {
  for (const char* name : kConfigs) {
    Fixture& f = fixture(name);
    const std::vector<int32_t> sample_ids = f.g.i32("logit_sample_ids");
    Session session(*f.model, f.bank.get());
    for (size_t j = 0; j < f.queries.size(); ++j) {
      INFO("config " << name << ", query " << j);
      const std::string p = "query" + std::to_string(j);
      const std::vector<int32_t> want = f.g.i32(p + ".greedy");
      const int32_t eos_at = f.g.i32(p + ".greedy_eos_index").at(0);
      GenerateOptions o;
      o.mode = GenerateMode::kPlain;
      o.doc_top_k = f.doc_top_k;
      o.max_new_tokens = static_cast<int64_t>(want.size());
      o.sampling.use_model_defaults = false;
      o.sampling.do_sample = false;
      o.record_first_logits = true;
      o.record_scores = true;
      GenerateResult r;
      Status s = session.generate(f.queries[j], o, &r);
      INFO(s.to_string());
      REQUIRE(s.ok());
      REQUIRE(r.first_logits.size() == static_cast<size_t>(f.model->config().vocab_size));
      // Logits: the stored top ids with their values, and a fixed sample of ids.
      const std::vector<int32_t> top_ids = f.g.i32(p + ".first_logits.top_ids");
      const std::vector<float> top_values = f.g.f32(p + ".first_logits.top_values");
      const std::vector<float> sample_values = f.g.f32(p + ".first_logits.sample_values");
      std::vector<float> got_top, got_sample;
      for (int32_t id : top_ids) got_top.push_back(r.first_logits[static_cast<size_t>(id)]);
      for (int32_t id : sample_ids) got_sample.push_back(r.first_logits[static_cast<size_t>(id)]);
      const float max_abs = f.g.f32(p + ".first_logits.stats").at(2);
      std::vector<float> top_scaled = top_values, sample_scaled = sample_values;
      top_scaled.push_back(max_abs);  // scale floor: the largest |logit| of the whole vector
      sample_scaled.push_back(max_abs);
      got_top.push_back(max_abs);
      got_sample.push_back(max_abs);
      check_close(p + ".first_logits.top_values", got_top.data(), top_scaled);
      check_close(p + ".first_logits.sample_values", got_sample.data(), sample_scaled);
      CHECK(static_cast<int32_t>(argmax(r.first_logits.data(), static_cast<int64_t>(r.first_logits.size()))) ==
            top_ids.at(0));
      // Greedy continuation: identical tokens; an EOS inside the golden's steps would stop the engine there.
      std::vector<int32_t> expect = want;
      if (eos_at >= 0) expect.resize(static_cast<size_t>(eos_at + 1));
      CHECK(r.generated_ids == expect);
      CHECK(r.stop == (eos_at >= 0 ? StopReason::kEos : StopReason::kMaxNewTokens));
      // The routing of generate() is the routing of route().
      for (const LayerRouting& lr : r.routing) {
        CHECK(as_i32(lr.top) == f.g.i32(p + ".layer" + std::to_string(lr.layer) + ".selected"));
      }
    }
  }
}

TEST_CASE("msa goldens: scripted Memory Interleave run, protocol text and tokens", "[msa_goldens]") {
  Fixture& f = fixture("a_default");
  const Golden& g = f.g;
  const json& il = g.side.at("interleave");
  const Tokenizer& tok = *f.model->tokenizer();
  const std::string question = il.at("question").get<std::string>();

  // Round 1: the question prompt; the model's output is forced to FORCED_ROUND1.
  std::vector<int32_t> ids1, doc_ids1;
  REQUIRE(encode_query(tok, question, &ids1, &doc_ids1).ok());
  CHECK(ids1 == g.i32("interleave.round1.ids"));
  CHECK(decode(tok, ids1) == il.at("round1_prompt_text").get<std::string>());
  const std::vector<int32_t> forced1 = encode(tok, il.at("forced_round1").get<std::string>());
  CHECK(forced1 == g.i32("interleave.round1.forced_ids"));
  const std::string generated1 = decode(tok, forced1);
  CHECK(generated1 == il.at("round1_generated_text").get<std::string>());
  CHECK(generated1.find(interleave::kRoundEnd) != std::string::npos);

  // Documents read: the ids in the round's text that exist in the bank, ascending.
  std::vector<std::pair<uint64_t, std::string_view>> docs;
  std::vector<int32_t> read;
  for (uint64_t id : interleave::parse_document_ids(generated1)) {
    const int64_t idx = f.bank->find(id);
    if (idx < 0) continue;
    docs.emplace_back(id, f.bank->document(idx).text);
    read.push_back(static_cast<int32_t>(id));
  }
  CHECK(read == g.i32("interleave.round1.documents_read"));
  const std::string inject1 = interleave::format_documents_injection(docs);
  CHECK(inject1 == il.at("round1_injection").get<std::string>());
  const std::vector<int32_t> inject1_ids = encode(tok, inject1);
  CHECK(inject1_ids == g.i32("interleave.round1.injection_ids"));
  const std::vector<int32_t> seq1 = concat(concat(ids1, forced1), inject1_ids);
  CHECK(seq1 == g.i32("interleave.round1.transcript_ids"));
  const std::string transcript1 = decode(tok, seq1);
  CHECK(transcript1 == il.at("round1_transcript").get<std::string>());

  // The next round's prompt and its routing tokens (§6.4 regions, counted on separately tokenised substrings).
  const std::string next = interleave::regenerate_prompt_text(transcript1);
  CHECK(next == il.at("round2_prompt_text").get<std::string>());
  CHECK(interleave::should_regenerate(next));
  std::vector<int32_t> ids2, doc_ids2;
  REQUIRE(interleave::encode_regenerate_prompt(tok, next, &ids2, &doc_ids2).ok());
  CHECK(ids2 == g.i32("interleave.round2.ids"));
  CHECK(doc_ids2 == g.i32("interleave.round2.doc_ids"));
  CHECK(std::count(doc_ids2.begin(), doc_ids2.end(), 0) == il.at("round2_routing_tokens").get<int64_t>());

  // Round 2: forced "<End-of-Retrieve>", then the question restatement.
  const std::vector<int32_t> forced2 = encode(tok, il.at("forced_round2").get<std::string>());
  CHECK(forced2 == g.i32("interleave.round2.forced_ids"));
  CHECK(decode(tok, forced2) == il.at("round2_generated_text").get<std::string>());
  const std::string fed = decode(tok, concat(ids2, forced2));
  const std::string q = interleave::extract_question(fed);
  CHECK(q == il.at("question_extracted").get<std::string>());
  const std::string inject2 = interleave::format_question_injection(q);
  CHECK(inject2 == il.at("question_injection").get<std::string>());
  CHECK(encode(tok, inject2) == g.i32("interleave.round2.injection_ids"));

  // The final transcript: round 2's prompt, the forced ids, the restatement and the answer tokens.
  const std::vector<int32_t> answer = g.i32("interleave.answer_ids");
  std::vector<int32_t> tail = answer;
  if (il.at("answer_stops_at_eos").get<bool>()) tail.pop_back();
  const std::vector<int32_t> seq_final = concat(concat(concat(ids2, forced2), encode(tok, inject2)), tail);
  CHECK(seq_final == g.i32("interleave.transcript_ids"));
  CHECK(decode(tok, seq_final) == il.at("transcript").get<std::string>());
  CHECK(decode(tok, tail) == il.at("answer_text").get<std::string>());
}

// The model side of the scripted run, through Session::generate(kInterleave): a logits callback forces the
// reference's scripted outputs (round 1: FORCED_ROUND1, round 2: FORCED_ROUND2 ending with "<End-of-Retrieve>"),
// everything after them is greedy. Session does the rest itself: round-1 routing, document injection, the
// re-encoded round-2 prompt with the §6.4 routing-token mask and its routing, the question restatement and the
// answer.
TEST_CASE("msa goldens: scripted Memory Interleave run through Session::generate", "[msa_goldens]") {
  Fixture& f = fixture("a_default");
  const Golden& g = f.g;
  const json& il = g.side.at("interleave");
  const ModelConfig& c = f.model->config();
  const Tokenizer& tok = *f.model->tokenizer();
  const std::vector<int32_t> forced1 = g.i32("interleave.round1.forced_ids");
  const std::vector<int32_t> forced2 = g.i32("interleave.round2.forced_ids");
  const std::vector<int32_t> answer = g.i32("interleave.answer_ids");
  const bool stops_at_eos = il.at("answer_stops_at_eos").get<bool>();

  GenerateOptions o;
  o.mode = GenerateMode::kInterleave;
  o.doc_top_k = f.doc_top_k;
  o.first_position = il.at("first_position").get<int64_t>();
  o.max_new_tokens = static_cast<int64_t>(forced1.size() + forced2.size() + answer.size());
  o.sampling.use_model_defaults = false;
  o.sampling.do_sample = false;
  o.record_scores = true;
  int64_t forced_steps = 0;
  o.on_logits = [&](const LogitsStep& st, float* logits, int64_t vocab) {
    const std::vector<int32_t>* script = st.round == 1 ? &forced1 : st.round == 2 ? &forced2 : nullptr;
    if (script == nullptr || st.round_index >= static_cast<int64_t>(script->size())) return 0;
    const int32_t want = (*script)[static_cast<size_t>(st.round_index)];
    for (int64_t i = 0; i < vocab; ++i) {
      if (i != want) logits[i] = -std::numeric_limits<float>::infinity();
    }
    ++forced_steps;
    return 0;
  };
  Session session(*f.model, f.bank.get());
  GenerateResult r;
  Status s = session.generate(il.at("question").get<std::string>(), o, &r);
  INFO(s.to_string());
  REQUIRE(s.ok());
  CHECK(forced_steps == static_cast<int64_t>(forced1.size() + forced2.size()));

  // Round 1: the question prompt, routed as query 0; the forced output names documents, which are read.
  REQUIRE(r.rounds.size() == 2);
  const RoundRecord& r1 = r.rounds[0];
  const RoundRecord& r2 = r.rounds[1];
  CHECK(r1.prompt_tokens == static_cast<int64_t>(g.i32("interleave.round1.ids").size()));
  CHECK(r1.generated_text == il.at("round1_generated_text").get<std::string>());
  std::vector<int32_t> read1(r1.documents_read.begin(), r1.documents_read.end());
  CHECK(read1 == g.i32("interleave.round1.documents_read"));
  REQUIRE(r1.routing.size() == c.msa.router_layers.size());
  for (const LayerRouting& lr : r1.routing) {
    CHECK(as_i32(lr.top) == g.i32("interleave.round1.layer" + std::to_string(lr.layer) + ".selected"));
  }

  // Round 2: the re-encoded prompt (§6.4 routing tokens), its scores and selections per router layer.
  CHECK(r2.prompt_tokens == static_cast<int64_t>(g.i32("interleave.round2.ids").size()));
  CHECK(r2.routing_tokens == il.at("round2_routing_tokens").get<int64_t>());
  REQUIRE(r2.routing.size() == c.msa.router_layers.size());
  for (const LayerRouting& lr : r2.routing) {
    const std::string lp = "interleave.round2.layer" + std::to_string(lr.layer);
    INFO("layer " << lr.layer);
    REQUIRE(lr.scores.size() == static_cast<size_t>(f.bank->n_documents()));
    check_close(lp + ".scores", lr.scores.data(), g.f32(lp + ".scores"));
    CHECK(as_i32(lr.top) == g.i32(lp + ".selected"));
  }
  CHECK(r2.question_injected);
  CHECK(r2.documents_read.empty());

  // Every sampled token: the two scripts, then the greedy answer; the final transcript and the answer text.
  CHECK(r.generated_ids == concat(concat(forced1, forced2), answer));
  CHECK(r.stop == (stops_at_eos ? StopReason::kEos : StopReason::kMaxNewTokens));
  CHECK(r.transcript == il.at("transcript").get<std::string>());
  std::vector<int32_t> tail = answer;
  if (stops_at_eos) tail.pop_back();
  CHECK(r2.generated_text == il.at("round2_generated_text").get<std::string>() + decode(tok, tail));
  CHECK(r.answer == interleave::extract_answer(il.at("answer_text").get<std::string>()));
}
