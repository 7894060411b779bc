// Stages 2-3: argument validation, context limits, the assembled prefill context against a hand-built KV
// context ([template; chunks of the selected documents in ascending id; query] at positions 3 + k ...), router
// queries against an independent computation (three routing rules), greedy determinism, seeded sampling, EOS
// from generation_config.json, streaming, cancellation and the no-bank mode.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/limits.h"
#include "engine/encoder.h"
#include "engine/sampler.h"
#include "backend/cpu/routing_scan.h"
#include "engine/resident_bank.h"
#include "engine/session.h"
#include "model/forward.h"
#include "test_engine_common.h"
#include "tokenizer/templates.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace msa;

namespace {

const std::vector<std::string> kDocs = {
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Photosynthesis converts light energy into chemical energy.",
    "Mount Everest is the highest mountain above sea level.",
    "The Great Wall of China is thousands of kilometres long.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Honey never spoils; archaeologists found edible honey in Egyptian tombs.",
};
const char* kQuestion = "Where is the Eiffel Tower?";

std::unique_ptr<MemoryBank> make_bank(const Model& model, size_t n_docs = kDocs.size()) {
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  std::vector<std::string_view> v(kDocs.begin(), kDocs.begin() + static_cast<std::ptrdiff_t>(n_docs));
  Encoder enc(model);
  const std::vector<uint64_t> ids = {40, 10, 30, 20, 50, 60};  // not in corpus order: ascending-id assembly matters
  std::vector<uint64_t> use(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n_docs));
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), v, &use));
  return bank;
}

GenerateOptions greedy_plain(int64_t max_new = 8) {
  GenerateOptions o;
  o.mode = GenerateMode::kPlain;
  o.sampling.use_model_defaults = false;
  o.sampling.do_sample = false;
  o.max_new_tokens = max_new;
  return o;
}

// The prefill KV context built by hand: template rows, then at router layers the chunks of `selected` (per
// router slot) in ascending id order. Returns the logits of the last query token and leaves `kv` ready to decode.
std::vector<float> manual_prefill(const Model& model, const MemoryBank* bank,
                                  const std::vector<std::vector<uint64_t>>& selected, const std::vector<int32_t>& ids,
                                  int64_t first, KVContext* kv, ForwardWorkspace* ws) {
  const ModelConfig& c = model.config();
  const int64_t width = c.num_key_value_heads * c.head_dim;
  const DeviceModel& dm = engine_test::device(model);
  Backend* be = dm.backend();
  std::vector<std::vector<float>> tk, tv;
  ENGINE_REQUIRE_OK(compute_template_prefix(dm, &tk, &tv));
  kv->init(c, be);
  for (size_t l = 0; l < kv->layers.size(); ++l) {
    const DeviceBuffer dk = engine_test::to_backend(be, tk[l]), dv = engine_test::to_backend(be, tv[l]);
    ENGINE_REQUIRE_OK(kv->layers[l].set_prefix(dk.as<float>(), dv.as<float>(), 3));
  }
  for (size_t s = 0; s < selected.size(); ++s) {
    std::vector<uint64_t> by_id = selected[s];
    std::sort(by_id.begin(), by_id.end());
    std::vector<float> k, v;
    for (uint64_t id : by_id) {
      const DocumentRecord& r = bank->document(bank->find(id));
      const ContentPages& p = bank->content(static_cast<int>(s));
      k.insert(k.end(), p.k.begin() + r.chunk_begin * width, p.k.begin() + (r.chunk_begin + r.n_chunks) * width);
      v.insert(v.end(), p.v.begin() + r.chunk_begin * width, p.v.begin() + (r.chunk_begin + r.n_chunks) * width);
    }
    const int layer = c.msa.router_layers[s];
    const DeviceBuffer dk = engine_test::to_backend(be, k), dv = engine_test::to_backend(be, v);
    ENGINE_REQUIRE_OK(kv->layers[static_cast<size_t>(layer)].insert_prefix(3, dk.as<float>(), dv.as<float>(),
                                                                 static_cast<int64_t>(k.size()) / width));
  }
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(first + static_cast<int64_t>(i));
  ForwardBatch b;
  b.tokens = ids.data();
  b.positions = pos.data();
  b.n_tokens = static_cast<int64_t>(ids.size());
  ForwardOptions o;
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  ENGINE_REQUIRE_OK(forward(dm.weights(), b, kv, o, ws, logits.data(), c.vocab_size));
  return logits;
}

std::vector<int32_t> manual_greedy(const Model& model, KVContext* kv, ForwardWorkspace* ws, std::vector<float> logits,
                                   int64_t pos, int n) {
  const ModelConfig& c = model.config();
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t t = static_cast<int32_t>(argmax(logits.data(), c.vocab_size));
    out.push_back(t);
    if (i + 1 == n) break;
    const int32_t p = static_cast<int32_t>(pos++);
    ForwardBatch b;
    b.tokens = &t;
    b.positions = &p;
    b.n_tokens = 1;
    ForwardOptions o;
    ENGINE_REQUIRE_OK(forward(engine_test::device(model).weights(), b, kv, o, ws, logits.data(), c.vocab_size));
  }
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("session: invalid arguments are rejected", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session session(model, bank.get());
  GenerateResult res;
  RouteResult rr;
  GenerateOptions o = greedy_plain();

  o.doc_top_k = 0;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);
  RouteOptions ro;
  ro.doc_top_k = 0;
  CHECK(session.route(kQuestion, ro, &rr).code() == StatusCode::kInvalidArgument);
  o = greedy_plain();
  o.max_new_tokens = 0;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);
  o.max_new_tokens = -3;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);
  o = greedy_plain();
  o.max_rounds = 0;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);
  o = greedy_plain();
  CHECK(session.generate("", o, &res).code() == StatusCode::kInvalidArgument);
  CHECK(session.generate("bad \xFF utf8", o, &res).code() == StatusCode::kInvalidUtf8);
  CHECK(session.route("bad \xFF utf8", RouteOptions(), &rr).code() == StatusCode::kInvalidUtf8);
  o.sampling.do_sample = true;
  o.sampling.top_p = 0.0f;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);
  o.sampling.top_p = 0.9f;
  o.sampling.temperature = -1.0f;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);
  o.sampling.temperature = 1.0f;
  o.sampling.top_k = -1;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kInvalidArgument);

  // A bank built for another model shape.
  const Model& other = engine_test::cached_model("micro", R"({"router_layer_idx": "all"})");
  auto other_bank = make_bank(other, 2);
  Session mismatched(model, other_bank.get());
  CHECK(mismatched.generate(kQuestion, greedy_plain(), &res).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("session: a prompt beyond the context is kContextOverflow; decoding stops at the limit", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session session(model, bank.get());
  GenerateResult res;
  GenerateOptions o = greedy_plain(50);
  o.context_limit = 10;
  CHECK(session.generate(kQuestion, o, &res).code() == StatusCode::kContextOverflow);

  std::vector<int32_t> ids, doc_ids;
  ENGINE_REQUIRE_OK(encode_query(*model.tokenizer(), kQuestion, &ids, &doc_ids));
  const int64_t first = 3 + o.doc_top_k;
  o.context_limit = first + static_cast<int64_t>(ids.size());  // the prompt fits exactly; no decode step fits
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  if (res.stop != StopReason::kEos) {
    CHECK(res.stop == StopReason::kContextLimit);
    CHECK(res.generated_ids.size() == 1);
  }
  o.context_limit += 3;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  if (res.stop != StopReason::kEos) {
    CHECK(res.stop == StopReason::kContextLimit);
    CHECK(res.generated_ids.size() == 4);
  }

  // max_position_embeddings is the default limit.
  const Model& small = engine_test::cached_model("micro", "", 0, "maxpos48", [](nlohmann::json& c, nlohmann::json&) {
    c["max_position_embeddings"] = 48;
  });
  auto small_bank = make_bank(small, 2);
  Session s2(small, small_bank.get());
  std::string q;
  for (int i = 0; i < 30; ++i) q += " why";
  CHECK(s2.generate(q, greedy_plain(), &res).code() == StatusCode::kContextOverflow);
  RouteResult rr;
  CHECK(s2.route(q, RouteOptions(), &rr).code() == StatusCode::kContextOverflow);
}

TEST_CASE("session: prefill context = [template; chunks of the top-k documents by ascending id; query]",
          "[engine][session]") {
  const Model& model = engine_test::micro();
  const ModelConfig& c = model.config();
  auto bank = make_bank(model);
  Session session(model, bank.get());

  for (int64_t k : {int64_t{1}, int64_t{3}, int64_t{16}}) {
    INFO("doc_top_k " << k);
    RouteOptions ro;
    ro.doc_top_k = k;
    RouteResult route;
    ENGINE_REQUIRE_OK(session.route(kQuestion, ro, &route));
    REQUIRE(route.layers.size() == c.msa.router_layers.size());
    std::vector<std::vector<uint64_t>> selected;
    for (const LayerRouting& lr : route.layers) {
      CHECK(static_cast<int64_t>(lr.top.size()) == std::min<int64_t>(k, bank->n_documents()));
      REQUIRE(lr.scores.size() == static_cast<size_t>(bank->n_documents()));
      std::vector<uint64_t> ids;
      for (size_t i = 0; i < lr.top.size(); ++i) {
        ids.push_back(lr.top[i].id);
        CHECK(lr.top[i].score == lr.scores[static_cast<size_t>(lr.top[i].index)]);
        if (i > 0) {
          CHECK((lr.top[i - 1].score > lr.top[i].score ||
                 (lr.top[i - 1].score == lr.top[i].score && lr.top[i - 1].id < lr.top[i].id)));
        }
      }
      // Nothing outside the top-k scores higher than the k-th.
      for (int64_t d = 0; d < bank->n_documents(); ++d) {
        if (std::find(ids.begin(), ids.end(), bank->document(d).id) == ids.end()) {
          CHECK(lr.scores[static_cast<size_t>(d)] <= lr.top.back().score);
        }
      }
      selected.push_back(ids);
    }

    GenerateOptions o = greedy_plain(6);
    o.doc_top_k = k;
    o.record_first_logits = true;
    o.record_scores = true;
    GenerateResult res;
    ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
    REQUIRE(res.routing.size() == route.layers.size());
    for (size_t s = 0; s < res.routing.size(); ++s) {
      CHECK(res.routing[s].layer == route.layers[s].layer);
      REQUIRE(res.routing[s].top.size() == route.layers[s].top.size());
      for (size_t i = 0; i < res.routing[s].top.size(); ++i) {
        CHECK(res.routing[s].top[i].id == route.layers[s].top[i].id);
        CHECK(res.routing[s].top[i].score == route.layers[s].top[i].score);
      }
      CHECK(same_bits(res.routing[s].scores, route.layers[s].scores));
    }

    std::vector<int32_t> ids, doc_ids;
    ENGINE_REQUIRE_OK(encode_query(*model.tokenizer(), kQuestion, &ids, &doc_ids));
    KVContext kv;
    ForwardWorkspace ws;
    std::vector<float> logits = manual_prefill(model, bank.get(), selected, ids, 3 + k, &kv, &ws);
    CHECK(same_bits(logits, res.first_logits));
    std::vector<int32_t> want = manual_greedy(model, &kv, &ws, logits, 3 + k + static_cast<int64_t>(ids.size()), 6);
    REQUIRE(res.generated_ids.size() <= want.size());
    CHECK(std::equal(res.generated_ids.begin(), res.generated_ids.end(), want.begin()));
    CHECK(res.timings.prompt_tokens == static_cast<int64_t>(ids.size()));
    CHECK(res.rounds.size() == 1);
  }
}

TEST_CASE("session: first_position overrides 3 + k", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session session(model, bank.get());
  GenerateOptions o = greedy_plain(1);
  o.doc_top_k = 2;
  o.first_position = 100;
  o.record_first_logits = true;
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  std::vector<std::vector<uint64_t>> selected;
  for (const LayerRouting& lr : res.routing) {
    std::vector<uint64_t> ids;
    for (const ScoredDocument& s : lr.top) ids.push_back(s.id);
    selected.push_back(ids);
  }
  std::vector<int32_t> ids, doc_ids;
  ENGINE_REQUIRE_OK(encode_query(*model.tokenizer(), kQuestion, &ids, &doc_ids));
  KVContext kv;
  ForwardWorkspace ws;
  CHECK(same_bits(manual_prefill(model, bank.get(), selected, ids, 100, &kv, &ws), res.first_logits));
}

namespace {

// Router queries recomputed here from the layer input / attention q of the routing tokens (in double), then
// scored with the router's per-head oracle, against the session's route() scores.
void check_router_queries(const Model& model) {
  const ModelConfig& c = model.config();
  const MsaConfig& m = c.msa;
  auto bank = make_bank(model);
  Session session(model, bank.get());
  RouteOptions ro;
  ro.doc_top_k = 2;
  RouteResult route;
  ENGINE_REQUIRE_OK(session.route(kQuestion, ro, &route));

  // Capture a and q of the first router layer for the query (the layers before it only see the template).
  std::vector<int32_t> ids, doc_ids;
  size_t n_routing = 0;
  ENGINE_REQUIRE_OK(encode_query(*model.tokenizer(), kQuestion, &ids, &doc_ids, &n_routing));
  const int layer = m.router_layers[0];
  const int64_t hidden = c.hidden_size, qw = c.num_attention_heads * c.head_dim, d = c.head_dim;
  struct Cap final : ForwardObserver {
    int layer;
    int64_t hidden, qw;
    std::vector<float> a, q;
    Status before_attention(const LayerActivations& act, LayerKV*) override {
      if (act.layer == layer) {
        a = engine_test::to_host(act.backend, act.a, static_cast<size_t>(act.n_tokens * hidden));
        q = engine_test::to_host(act.backend, act.q, static_cast<size_t>(act.n_tokens * qw));
      }
      return Status::Ok();
    }
  } cap;
  cap.layer = layer;
  cap.hidden = hidden;
  cap.qw = qw;
  const DeviceModel& dm = engine_test::device(model);
  std::vector<std::vector<float>> tk, tv;
  ENGINE_REQUIRE_OK(compute_template_prefix(dm, &tk, &tv));
  KVContext kv;
  kv.init(c, dm.backend());
  for (size_t l = 0; l < kv.layers.size(); ++l) {
    const DeviceBuffer dk = engine_test::to_backend(dm.backend(), tk[l]);
    const DeviceBuffer dv = engine_test::to_backend(dm.backend(), tv[l]);
    ENGINE_REQUIRE_OK(kv.layers[l].set_prefix(dk.as<float>(), dv.as<float>(), 3));
  }
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(3 + 2 + i);
  ForwardBatch b;
  b.tokens = ids.data();
  b.positions = pos.data();
  b.n_tokens = static_cast<int64_t>(ids.size());
  ForwardOptions fo;
  fo.logits = LogitsMode::kNone;
  fo.observer = &cap;
  ForwardWorkspace ws;
  ENGINE_REQUIRE_OK(forward(dm.weights(), b, &kv, fo, &ws, nullptr, 0));

  std::vector<float> qr(n_routing * static_cast<size_t>(qw));
  for (size_t t = 0; t < n_routing; ++t) {
    for (int64_t o = 0; o < qw; ++o) {
      double v;
      if (m.decouple_router) {
        const TensorView& w = model.weights().layers[static_cast<size_t>(layer)].router_q;
        v = 0;
        for (int64_t i = 0; i < hidden; ++i) {
          v += static_cast<double>(cap.a[t * static_cast<size_t>(hidden) + static_cast<size_t>(i)]) *
               bf16_to_f32(w.as<uint16_t>()[o * hidden + i]);
        }
      } else {
        v = cap.q[t * static_cast<size_t>(qw) + static_cast<size_t>(o)];
      }
      qr[t * static_cast<size_t>(qw) + static_cast<size_t>(o)] = static_cast<float>(v);
    }
  }
  for (size_t h = 0; h < n_routing * static_cast<size_t>(c.num_attention_heads); ++h) {
    float* x = qr.data() + h * static_cast<size_t>(d);
    if (m.normalize_routing()) {
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(x[i]) * x[i];
      for (int64_t i = 0; i < d; ++i) x[i] = static_cast<float>(x[i] / std::max(std::sqrt(ss), 1e-12));
    }
    if (m.scale_routing()) {
      for (int64_t i = 0; i < d; ++i) x[i] = static_cast<float>(x[i] / std::sqrt(static_cast<double>(d)));
    }
  }
  RouterQuery rq;
  rq.q = qr.data();
  rq.n_tokens = static_cast<int64_t>(n_routing);
  rq.n_heads = c.num_attention_heads;
  rq.n_kv_heads = c.num_key_value_heads;
  rq.head_dim = d;
  RouterReductions red;
  red.head = m.head_reduce;
  red.query = m.query_reduce;
  red.chunk = m.chunk_reduce;
  std::vector<float> want;
  std::vector<uint64_t> bank_ids;
  std::vector<uint8_t> removed;
  for (int64_t i = 0; i < bank->n_documents(); ++i) {
    bank_ids.push_back(bank->document(i).id);
    removed.push_back(bank->is_removed(i) ? 1 : 0);
  }
  ENGINE_REQUIRE_OK(score_documents_per_head(rq, routing_view(*bank, 0, bank_ids, removed), red, &want));
  REQUIRE(route.layers[0].scores.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CHECK(route.layers[0].scores[i] == Approx(want[i]).margin(1e-4).epsilon(1e-3));
  CHECK(route.routing_tokens == static_cast<int64_t>(n_routing));
}

}  // namespace

TEST_CASE("session: router queries follow the configured rule", "[engine][session]") {
  SECTION("decoupled, INFONCE_DECOUPLE: router_q_proj(a) x head_dim^-0.5") {
    check_router_queries(engine_test::micro());
  }
  SECTION("decoupled, INFONCE: cosine (normalised, no scale)") {
    const Model& m = engine_test::cached_model("micro", R"({"aux_loss_method": "INFONCE"})");
    REQUIRE_FALSE(m.config().msa.scale_routing());
    check_router_queries(m);
  }
  SECTION("attention q, INFONCE: normalised and scaled; head max, query mean, chunk mean") {
    const Model& m = engine_test::cached_model(
        "micro", R"({"decouple_router": false, "aux_loss_method": "INFONCE", "head_reduce_method": "max",
                     "query_reduce_method": "mean", "chunk_reduce_method": "mean", "router_layer_idx": "all"})");
    REQUIRE(m.config().msa.scale_routing());
    check_router_queries(m);
  }
}

TEST_CASE("session: greedy decoding is deterministic", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session s1(model, bank.get());
  GenerateResult a, b, c;
  ENGINE_REQUIRE_OK(s1.generate(kQuestion, greedy_plain(16), &a));
  ENGINE_REQUIRE_OK(s1.generate(kQuestion, greedy_plain(16), &b));
  Session s2(model, bank.get());
  ENGINE_REQUIRE_OK(s2.generate(kQuestion, greedy_plain(16), &c));
  CHECK(!a.generated_ids.empty());
  CHECK(a.generated_ids == b.generated_ids);
  CHECK(a.generated_ids == c.generated_ids);
  CHECK(a.answer == c.answer);
  CHECK(a.transcript == c.transcript);
  if (a.stop != StopReason::kEos) {
    CHECK(a.stop == StopReason::kMaxNewTokens);
    CHECK(a.generated_ids.size() == 16);
  }
  CHECK(a.timings.ttft_ms > 0);
  CHECK(a.timings.prefill_ms > 0);
}

TEST_CASE("session: sampling is reproducible with a seed", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session session(model, bank.get());
  GenerateOptions o = greedy_plain(24);
  o.sampling.do_sample = true;
  o.sampling.temperature = 1.5f;
  o.sampling.top_k = 200;
  o.sampling.top_p = 0.95f;
  o.sampling.seed = 1234;
  GenerateResult a, b, c;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &a));
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &b));
  o.sampling.seed = 1235;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &c));
  CHECK(a.generated_ids == b.generated_ids);
  CHECK(a.generated_ids != c.generated_ids);
}

TEST_CASE("sampler: greedy, top-k, top-p and the seeded RNG", "[engine][sampler]") {
  SECTION("greedy takes the lowest id among ties") {
    SamplingParams p;
    p.use_model_defaults = false;
    Sampler s(p);
    const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f};
    CHECK(s.sample(l.data(), 4) == 1);
  }
  SECTION("top_k = 1 is greedy; top_p tiny keeps the best token only") {
    SamplingParams p;
    p.use_model_defaults = false;
    p.do_sample = true;
    p.top_k = 1;
    Sampler s(p);
    const std::vector<float> l = {0.5f, 2.0f, -1.0f, 1.9f};
    for (int i = 0; i < 20; ++i) CHECK(s.sample(l.data(), 4) == 1);
    p.top_k = 0;
    p.top_p = 1e-3f;
    Sampler s2(p);
    for (int i = 0; i < 20; ++i) CHECK(s2.sample(l.data(), 4) == 1);
  }
  SECTION("top_k keeps ties at the boundary; draws follow the distribution") {
    SamplingParams p;
    p.use_model_defaults = false;
    p.do_sample = true;
    p.top_k = 2;
    p.seed = 7;
    Sampler s(p);
    const std::vector<float> l = {1.0f, 1.0f, 1.0f, 0.0f};  // three tied maxima: all kept, token 3 never
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < 3000; ++i) ++counts[s.sample(l.data(), 4)];
    CHECK(counts[3] == 0);
    for (int t = 0; t < 3; ++t) CHECK(counts[t] == Approx(1000).margin(120));
  }
  SECTION("top_p drops the tail as HF does") {
    // probs ~ [0.665, 0.245, 0.090]: top_p 0.8 keeps the first two (tail of the last = 0.09 <= 0.2).
    SamplingParams p;
    p.use_model_defaults = false;
    p.do_sample = true;
    p.top_p = 0.8f;
    p.seed = 3;
    Sampler s(p);
    const std::vector<float> l = {2.0f, 1.0f, 0.0f};
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 4000; ++i) ++counts[s.sample(l.data(), 3)];
    CHECK(counts[2] == 0);
    CHECK(counts[0] / 4000.0 == Approx(0.665 / 0.91).margin(0.03));
  }
  SECTION("Rng is deterministic per seed") {
    Rng a(42), b(42), c(43);
    for (int i = 0; i < 10; ++i) {
      const uint64_t x = a.next_u64();
      CHECK(x == b.next_u64());
      CHECK(x != c.next_u64());
    }
    Rng d(0);
    for (int i = 0; i < 1000; ++i) {
      const double u = d.next_double();
      CHECK(u >= 0.0);
      CHECK(u < 1.0);
    }
  }
  SECTION("model defaults come from generation_config.json") {
    const Model& model = engine_test::micro();
    SamplingParams p;
    p.seed = 9;
    SamplingParams r = resolve_sampling(p, model.config().generation);
    CHECK_FALSE(r.use_model_defaults);
    CHECK(r.do_sample);
    CHECK(r.temperature == Approx(0.7f));
    CHECK(r.top_k == 20);
    CHECK(r.top_p == Approx(0.8f));
    CHECK(r.seed == 9);
    GenerationDefaults none;
    CHECK(resolve_sampling(p, none).greedy());
  }
}

TEST_CASE("session: generation stops on an EOS id from generation_config.json", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  GenerateResult ref;
  {
    Session session(model, bank.get());
    ENGINE_REQUIRE_OK(session.generate(kQuestion, greedy_plain(12), &ref));
  }
  REQUIRE(ref.generated_ids.size() >= 4);
  // The first token that did not occur before it becomes the EOS of a checkpoint with the same weights.
  size_t j = 2;
  while (j < ref.generated_ids.size() &&
         std::find(ref.generated_ids.begin(), ref.generated_ids.begin() + static_cast<std::ptrdiff_t>(j),
                   ref.generated_ids[j]) != ref.generated_ids.begin() + static_cast<std::ptrdiff_t>(j)) {
    ++j;
  }
  REQUIRE(j < ref.generated_ids.size());
  const int32_t eos = ref.generated_ids[j];
  const Model& m2 = engine_test::cached_model("micro", "", 0, "eos" + std::to_string(eos),
                                              [eos](nlohmann::json&, nlohmann::json& g) {
                                                g["eos_token_id"] = nlohmann::json::array({eos});
                                              });
  REQUIRE(m2.config().generation.eos_token_ids == std::vector<int32_t>{eos});
  auto bank2 = make_bank(m2);
  Session session(m2, bank2.get());
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, greedy_plain(12), &res));
  CHECK(res.stop == StopReason::kEos);
  REQUIRE(res.generated_ids.size() == j + 1);
  CHECK(std::equal(res.generated_ids.begin(), res.generated_ids.end(), ref.generated_ids.begin()));
  const std::string text = engine_test::decode_valid(*m2.tokenizer(), res.generated_ids.data(), j);
  CHECK(res.answer == text);  // the EOS is not part of the text
  CHECK(res.transcript.size() >= text.size());
  CHECK(res.transcript.compare(res.transcript.size() - text.size(), text.size(), text) == 0);
}

TEST_CASE("session: streamed pieces are valid UTF-8 and concatenate to the answer", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session session(model, bank.get());
  GenerateOptions o = greedy_plain(64);
  o.sampling.do_sample = true;
  o.sampling.temperature = 1.0f;
  o.sampling.top_k = 0;
  o.sampling.seed = 99;
  std::vector<std::string> pieces;
  o.on_token = [&](std::string_view p) {
    pieces.emplace_back(p);
    return 0;
  };
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  std::string joined;
  for (const std::string& p : pieces) {
    CHECK(tok::utf8_is_valid(p));
    CHECK_FALSE(p.empty());
    joined += p;
  }
  CHECK(joined == res.answer);
  CHECK(joined == res.generated_text);
  std::vector<int32_t> ids = res.generated_ids;
  if (res.stop == StopReason::kEos) ids.pop_back();
  const std::string decoded = engine_test::decode_valid(*model.tokenizer(), ids.data(), ids.size());
  CHECK(decoded == joined);
  // The transcript = the prompt text, then the generated text.
  std::string prompt = format_query_block(kQuestion) + "<|im_end|>\n<|im_start|>";
  CHECK(res.transcript == prompt + joined);
}

TEST_CASE("session: a token callback can cancel; the partial result is kept", "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  Session session(model, bank.get());
  GenerateOptions o = greedy_plain(40);
  int calls = 0;
  std::string seen;
  o.on_token = [&](std::string_view p) {
    seen += p;
    return ++calls == 3 ? 1 : 0;
  };
  GenerateResult res;
  Status s = session.generate(kQuestion, o, &res);
  if (res.stop == StopReason::kEos && calls < 3) return;  // (a random model that stops at once)
  CHECK(s.code() == StatusCode::kCancelled);
  CHECK(res.stop == StopReason::kCancelled);
  CHECK(calls == 3);
  CHECK(res.generated_text == seen);
  CHECK(res.answer == seen);
  CHECK_FALSE(res.generated_ids.empty());
}

TEST_CASE("session: without a bank, plain generation over [template; query]", "[engine][session]") {
  const Model& model = engine_test::micro();
  Session session(model, nullptr);
  GenerateOptions o = greedy_plain(5);
  o.mode = GenerateMode::kInterleave;  // falls back to plain without a bank
  o.record_first_logits = true;
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  std::vector<int32_t> ids, doc_ids;
  ENGINE_REQUIRE_OK(encode_query(*model.tokenizer(), kQuestion, &ids, &doc_ids));
  KVContext kv;
  ForwardWorkspace ws;
  std::vector<float> logits = manual_prefill(model, nullptr, {}, ids, 3 + 16, &kv, &ws);
  CHECK(same_bits(logits, res.first_logits));
  std::vector<int32_t> want = manual_greedy(model, &kv, &ws, logits, 3 + 16 + static_cast<int64_t>(ids.size()), 5);
  CHECK(std::equal(res.generated_ids.begin(), res.generated_ids.end(), want.begin()));
  CHECK(res.answer == res.generated_text);
  REQUIRE(res.routing.size() == 1);
  CHECK(res.routing[0].top.empty());
  RouteResult rr;
  ENGINE_REQUIRE_OK(session.route(kQuestion, RouteOptions(), &rr));
  REQUIRE(rr.layers.size() == 1);
  CHECK(rr.layers[0].top.empty());
}

TEST_CASE("session: an empty bank routes nothing", "[engine][session]") {
  const Model& model = engine_test::micro();
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  Session session(model, bank.get());
  GenerateOptions o = greedy_plain(3);
  o.record_first_logits = true;
  GenerateResult res;
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  Session none(model, nullptr);
  GenerateResult res2;
  ENGINE_REQUIRE_OK(none.generate(kQuestion, o, &res2));
  CHECK(same_bits(res.first_logits, res2.first_logits));
  CHECK(res.generated_ids == res2.generated_ids);
}

TEST_CASE("session: contract codes: no tokenizer, rounds limit, a logits callback that allows nothing",
          "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model);
  GenerateResult res;
  RouteResult rr;

  // A model loaded without its tokenizer cannot generate: kTokenizer (msa.h documents MSA_ERR_TOKENIZER).
  std::unique_ptr<Model> bare;
  ModelLoadOptions lo;
  lo.load_tokenizer = false;
  ENGINE_REQUIRE_OK(Model::load(model.dir(), lo, &bare));
  Session no_tok(*bare, nullptr);
  Status s = no_tok.generate(kQuestion, greedy_plain(), &res);
  CHECK(s.code() == StatusCode::kTokenizer);
  CHECK(s.message().find("tokenizer") != std::string::npos);
  CHECK(no_tok.route(kQuestion, RouteOptions(), &rr).code() == StatusCode::kTokenizer);

  Session session(model, bank.get());
  GenerateOptions o = greedy_plain();
  o.max_rounds = static_cast<int>(limits::kMaxRounds) + 1;
  s = session.generate(kQuestion, o, &res);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(s.message().find("MSA_MAX_ROUNDS") != std::string::npos);
  o.max_rounds = static_cast<int>(limits::kMaxRounds);
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));

  // Every logit NaN (or -inf) after the callback: the caller's mistake, not a bug of libmsa.
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    for (const bool sample : {false, true}) {
      o = greedy_plain(4);
      o.sampling.do_sample = sample;
      o.sampling.temperature = 0.7f;
      int calls = 0;
      o.on_logits = [&](const LogitsStep& st, float* logits, int64_t vocab) {
        ++calls;
        if (st.index == 1) std::fill(logits, logits + vocab, bad);
        return 0;
      };
      s = session.generate(kQuestion, o, &res);
      INFO("bad = " << bad << ", sample = " << sample << ": " << s.to_string());
      if (res.stop == StopReason::kEos && calls == 1) continue;  // (a random model that stops at once)
      CHECK(s.code() == StatusCode::kInvalidArgument);
      CHECK(s.message().find("logits callback produced no finite logit") != std::string::npos);
      CHECK(calls == 2);
    }
  }
  // A single +inf (or finite) logit left is a forced token, not an error.
  o = greedy_plain(2);
  o.on_logits = [](const LogitsStep&, float* logits, int64_t vocab) {
    std::fill(logits, logits + vocab, std::numeric_limits<float>::quiet_NaN());
    logits[785] = std::numeric_limits<float>::infinity();
    return 0;
  };
  ENGINE_REQUIRE_OK(session.generate(kQuestion, o, &res));
  CHECK(res.generated_ids.front() == 785);
}

TEST_CASE("session: a prompt of more than MSA_MAX_PROMPT_TOKENS tokens is kContextOverflow naming the limit",
          "[engine][session]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model, 2);
  Session session(model, bank.get());
  // "<|im_end|>" is an added token: one id per copy, split out before BPE (cheap to tokenize).
  std::string q;
  const std::string t = "<|im_end|>";
  q.reserve(t.size() * static_cast<size_t>(limits::kMaxPromptTokens + 1));
  for (int64_t i = 0; i <= limits::kMaxPromptTokens; ++i) q += t;
  GenerateResult res;
  RouteResult rr;
  Status s = session.generate(q, greedy_plain(), &res);
  CHECK(s.code() == StatusCode::kContextOverflow);
  CHECK(s.message().find("MSA_MAX_PROMPT_TOKENS") != std::string::npos);
  s = session.route(q, RouteOptions(), &rr);
  CHECK(s.code() == StatusCode::kContextOverflow);
  CHECK(s.message().find("MSA_MAX_PROMPT_TOKENS") != std::string::npos);
}

// Readers (route / generate) on one bank while another thread tombstones and compacts it. Every reader
// touches the bank only under its shared lock (the shape check included), so under ThreadSanitizer this
// reports no race (the old code checked the bank's shape before taking the lock: TSan flagged
// MemoryBank::n_router_layers / template_k against compact()); without TSan it checks that every read sees a
// consistent bank.
TEST_CASE("session: route and generate while another thread removes and compacts the bank",
          "[engine][session][concurrency]") {
  const Model& model = engine_test::micro();
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  std::vector<std::string> texts;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 16; ++i) {
    texts.push_back(kDocs[static_cast<size_t>(i) % kDocs.size()] + " (copy " + std::to_string(i) + ")");
    ids.push_back(static_cast<uint64_t>(100 + i));
  }
  {
    std::vector<std::string_view> v(texts.begin(), texts.end());
    Encoder enc(model);
    ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), v, &ids));
  }

  std::atomic<bool> writer_done{false};
  std::atomic<int> reads{0};
  std::vector<Status> writer_status;
  std::thread writer([&] {
    while (reads.load() == 0) std::this_thread::yield();  // start once a reader runs
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      writer_status.push_back(bank->remove({ids[i]}));
      writer_status.push_back(bank->compact());
    }
    writer_done = true;
  });

  // Catch2 assertions are not thread-safe: each reader collects its problems, checked after join.
  auto reader = [&](bool gen, std::vector<std::string>* problems) {
    for (int iter = 0; iter < 200 && (iter < 4 || !writer_done.load()); ++iter) {
      Session session(model, bank.get());
      ++reads;
      std::vector<LayerRouting> routing;
      if (gen) {
        GenerateOptions o = greedy_plain(2);
        o.doc_top_k = 2;
        GenerateResult res;
        Status s = session.generate(kQuestion, o, &res);
        if (!s.ok()) problems->push_back("generate: " + s.to_string());
        routing = res.routing;
      } else {
        RouteOptions ro;
        ro.doc_top_k = 3;
        RouteResult rr;
        Status s = session.route(kQuestion, ro, &rr);
        if (!s.ok()) problems->push_back("route: " + s.to_string());
        routing = rr.layers;
      }
      for (const LayerRouting& lr : routing) {
        if (lr.top.empty() || lr.top.size() > 3)
          problems->push_back(std::to_string(lr.top.size()) + " documents routed");
        for (const ScoredDocument& d : lr.top)
          if (d.id < 100 || d.id >= 116) problems->push_back("routed to id " + std::to_string(d.id));
      }
    }
  };
  std::vector<std::string> route_problems, generate_problems;
  std::thread route_thread(reader, false, &route_problems);
  std::thread generate_thread(reader, true, &generate_problems);
  route_thread.join();
  generate_thread.join();
  writer.join();
  for (const std::string& p : route_problems) FAIL_CHECK(p);
  for (const std::string& p : generate_problems) FAIL_CHECK(p);
  for (const Status& s : writer_status) CHECK(s.ok());
  for (const std::string& p : route_problems) FAIL_CHECK(p);
  CHECK(bank->n_live_documents() == 1);
}

TEST_CASE("session: stop reasons have one spelling, the one msa.h documents", "[engine][session]") {
  CHECK(std::string(stop_reason_name(StopReason::kNone)).empty());
  CHECK(std::string(stop_reason_name(StopReason::kEos)) == "eos");
  CHECK(std::string(stop_reason_name(StopReason::kMaxNewTokens)) == "max_new_tokens");
  CHECK(std::string(stop_reason_name(StopReason::kContextLimit)) == "context_limit");
  CHECK(std::string(stop_reason_name(StopReason::kMaxRounds)) == "max_rounds");
  CHECK(std::string(stop_reason_name(StopReason::kCancelled)) == "cancelled");
  CHECK(std::string(stop_reason_name(StopReason::kAnswerInRound)) == "answer");
}
