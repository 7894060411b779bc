// Stage-1 encoder: pooled K̄/V̄/K̄ᴿ against an independent computation (the document run alone through the
// forward, chunk means taken here), bit-identical memory for different batch splits, the INFONCE rule,
// decouple_router=false, the template prefix, progress/cancel, and every bad input with the bank unchanged.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "engine/encoder.h"
#include "model/forward.h"
#include "test_engine_common.h"
#include "tokenizer/tokenizer.h"

using namespace msa;

namespace {

const std::vector<std::string> kDocs = {
    "The Eiffel Tower is in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
    "Short.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Ça marche très bien — 日本語のテキスト。",
    "Water boils at 100 degrees Celsius at sea level; at altitude it boils at lower temperatures because the "
    "air pressure is lower.",
    "Cats sleep a lot.",
    "A longer document about routing: memory sparse attention pools keys and values per chunk of tokens, "
    "scores router keys against router queries, and gathers the chunks of the best documents.",
};

std::vector<std::string_view> views(const std::vector<std::string>& v) {
  return std::vector<std::string_view>(v.begin(), v.end());
}

std::vector<uint64_t> iota_ids(size_t n, uint64_t base = 0) {
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = base + i;
  return ids;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// The activations of every router layer when `tokens` run alone (positions 0..n-1, plain causal).
struct Capture final : ForwardObserver {
  int64_t hidden = 0, width = 0;
  std::map<int, std::vector<float>> a, k, v;
  Status before_attention(const LayerActivations& act, LayerKV*) override {
    a[act.layer] = engine_test::to_host(act.backend, act.a, static_cast<size_t>(act.n_tokens * hidden));
    k[act.layer] = engine_test::to_host(act.backend, act.k, static_cast<size_t>(act.n_tokens * width));
    v[act.layer] = engine_test::to_host(act.backend, act.v, static_cast<size_t>(act.n_tokens * width));
    return Status::Ok();
  }
};

// pad: append a separate segment so the call has >= 64 rows. The backend's matmul takes a GEMV path for very
// few rows (another summation order), so only a padded run is bit-comparable with the encoder, which pads the
// same way; the document's own attention never sees the padding segment either way.
Capture run_alone(const Model& model, const std::vector<int32_t>& tokens, bool pad = true) {
  const ModelConfig& c = model.config();
  Capture cap;
  cap.hidden = c.hidden_size;
  cap.width = c.num_key_value_heads * c.head_dim;
  std::vector<int32_t> ids = tokens, pos(tokens.size()), seg(tokens.size(), 0);
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  for (int32_t i = 0; pad && ids.size() < 64; ++i) {
    ids.push_back(198);
    pos.push_back(i);
    seg.push_back(1);
  }
  const DeviceModel& dm = engine_test::device(model);
  KVContext kv;
  kv.init(c, dm.backend());
  ForwardWorkspace ws;
  ForwardBatch b;
  b.tokens = ids.data();
  b.positions = pos.data();
  b.segments = pad ? seg.data() : nullptr;
  b.n_tokens = static_cast<int64_t>(ids.size());
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.keep_kv = false;
  o.observer = &cap;
  ENGINE_REQUIRE_OK(forward(dm.weights(), b, &kv, o, &ws, nullptr, 0));
  return cap;
}

// Chunk means, f32: each chunk summed in row order from 0, then divided by its count.
std::vector<float> chunk_means_f32(const std::vector<float>& rows, int64_t n, int64_t width, int64_t p) {
  const int64_t nc = (n + p - 1) / p;
  std::vector<float> out(static_cast<size_t>(nc * width), 0.0f);
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t r1 = std::min(n, (c + 1) * p);
    for (int64_t r = c * p; r < r1; ++r) {
      for (int64_t i = 0; i < width; ++i) out[static_cast<size_t>(c * width + i)] += rows[static_cast<size_t>(r * width + i)];
    }
    const float cnt = static_cast<float>(r1 - c * p);
    for (int64_t i = 0; i < width; ++i) out[static_cast<size_t>(c * width + i)] /= cnt;
  }
  return out;
}

float weight_at(const TensorView& w, int64_t o, int64_t i) {
  const int64_t cols = w.dim(1);
  switch (w.dtype) {
    case DType::kBF16: return bf16_to_f32(w.as<uint16_t>()[o * cols + i]);
    case DType::kF16: return f16_to_f32(w.as<uint16_t>()[o * cols + i]);
    default: return w.as<float>()[o * cols + i];
  }
}

// mean over each chunk of router_k(a) rows, in double (an independent computation of the engine's K̄ᴿ).
std::vector<double> router_key_means(const Model& model, int layer, const std::vector<float>& a, int64_t n) {
  const ModelConfig& c = model.config();
  const TensorView& w = model.weights().layers[static_cast<size_t>(layer)].router_k;
  REQUIRE_FALSE(w.empty());
  const int64_t width = w.dim(0), hidden = w.dim(1), p = c.msa.pooling_kernel_size;
  const int64_t nc = (n + p - 1) / p;
  std::vector<double> out(static_cast<size_t>(nc * width), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t o = 0; o < width; ++o) {
      double s = 0;
      for (int64_t i = 0; i < hidden; ++i) s += static_cast<double>(a[static_cast<size_t>(r * hidden + i)]) * weight_at(w, o, i);
      out[static_cast<size_t>((r / p) * width + o)] += s;
    }
  }
  for (int64_t cidx = 0; cidx < nc; ++cidx) {
    const double cnt = static_cast<double>(std::min(n, (cidx + 1) * p) - cidx * p);
    for (int64_t o = 0; o < width; ++o) out[static_cast<size_t>(cidx * width + o)] /= cnt;
  }
  return out;
}

void normalize_heads(std::vector<double>* x, int64_t d) {
  for (size_t h = 0; h + static_cast<size_t>(d) <= x->size(); h += static_cast<size_t>(d)) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += (*x)[h + static_cast<size_t>(i)] * (*x)[h + static_cast<size_t>(i)];
    const double nrm = std::max(std::sqrt(ss), 1e-12);
    for (int64_t i = 0; i < d; ++i) (*x)[h + static_cast<size_t>(i)] /= nrm;
  }
}

std::vector<double> head_norms(const std::vector<float>& x, int64_t d) {
  std::vector<double> n;
  for (size_t h = 0; h + static_cast<size_t>(d) <= x.size(); h += static_cast<size_t>(d)) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(x[h + static_cast<size_t>(i)]) * x[h + static_cast<size_t>(i)];
    n.push_back(std::sqrt(ss));
  }
  return n;
}

EncodedDocuments encode_all(const Model& model, const std::vector<std::string>& docs, int64_t batch_tokens,
                            const std::vector<uint64_t>& ids) {
  EncoderOptions eo;
  eo.batch_tokens = batch_tokens;
  Encoder enc(model, eo);
  EncodedDocuments out;
  Status s = enc.encode(views(docs), ids, &out);
  INFO(s.to_string());
  ENGINE_REQUIRE_OK(s);
  return out;
}

// Checks one encoded document against the independent computation; returns the number of tokens.
void check_against_alone(const Model& model, const std::string& text, uint64_t id, const DocumentRecord& rec,
                         const PooledDocument& pd) {
  const ModelConfig& c = model.config();
  const int64_t width = c.num_key_value_heads * c.head_dim, p = c.msa.pooling_kernel_size;
  std::vector<int32_t> tokens;
  ENGINE_REQUIRE_OK(model.tokenizer()->encode(format_memory_document(id, text), &tokens));
  const int64_t n = static_cast<int64_t>(tokens.size());
  CHECK(rec.id == id);
  CHECK(rec.text == text);
  CHECK(rec.n_tokens == n);
  CHECK(pd.n_tokens == n);
  CHECK(rec.n_chunks == (n + p - 1) / p);
  CHECK(pd.n_chunks == (n + p - 1) / p);
  Capture cap = run_alone(model, tokens);
  Capture plain = run_alone(model, tokens, false);  // no padding at all: equal up to summation order
  for (size_t s = 0; s < c.msa.router_layers.size(); ++s) {
    const int layer = c.msa.router_layers[s];
    REQUIRE(pd.k[s].size() == static_cast<size_t>(pd.n_chunks * width));
    CHECK(same_bits(pd.k[s], chunk_means_f32(cap.k[layer], n, width, p)));
    CHECK(same_bits(pd.v[s], chunk_means_f32(cap.v[layer], n, width, p)));
    const std::vector<float> pk = chunk_means_f32(plain.k[layer], n, width, p);
    const std::vector<float> pv = chunk_means_f32(plain.v[layer], n, width, p);
    for (size_t i = 0; i < pk.size(); ++i) {
      REQUIRE(pd.k[s][i] == Approx(pk[i]).margin(1e-5).epsilon(1e-4));
      REQUIRE(pd.v[s][i] == Approx(pv[i]).margin(1e-5).epsilon(1e-4));
    }
    if (c.msa.decouple_router) {
      std::vector<double> want = router_key_means(model, layer, cap.a[layer], n);
      if (c.msa.normalize_routing()) normalize_heads(&want, c.head_dim);
      REQUIRE(pd.rk[s].size() == want.size());
      for (size_t i = 0; i < want.size(); ++i) REQUIRE(pd.rk[s][i] == Approx(want[i]).margin(2e-5).epsilon(1e-4));
    }
  }
}

}  // namespace

TEST_CASE("encoder: pooled K, V and routing keys are the chunk means of the document run alone", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  const ModelConfig& c = model.config();
  REQUIRE(c.msa.pooling_kernel_size == 4);
  REQUIRE(c.msa.decouple_router);
  REQUIRE_FALSE(c.msa.normalize_routing());
  const std::vector<uint64_t> ids = {5, 17, 3, 1000000000000ull, 42, 7, 8, 9};
  EncodedDocuments enc = encode_all(model, kDocs, 64, ids);
  REQUIRE(enc.records.size() == kDocs.size());
  bool saw_partial = false;
  for (size_t i = 0; i < kDocs.size(); ++i) {
    INFO("document " << i);
    check_against_alone(model, kDocs[i], ids[i], enc.records[i], enc.pooled[i]);
    saw_partial |= enc.records[i].n_tokens % 4 != 0;
  }
  CHECK(saw_partial);  // a partial last chunk was exercised
}

TEST_CASE("encoder: partial last chunk is the mean over its actual token count", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  const int64_t width = model.config().num_key_value_heads * model.config().head_dim;
  // Find a document whose formatted length is 4q + 1 (last chunk = a single token).
  std::string text = "x";
  std::vector<int32_t> tokens;
  for (int i = 0; i < 16; ++i) {
    tokens.clear();
    ENGINE_REQUIRE_OK(model.tokenizer()->encode(format_memory_document(0, text), &tokens));
    if (tokens.size() % 4 == 1) break;
    text += " y";
  }
  REQUIRE(tokens.size() % 4 == 1);
  EncodedDocuments enc = encode_all(model, {text}, 4096, {0});
  const PooledDocument& pd = enc.pooled[0];
  Capture cap = run_alone(model, tokens);
  const int layer = model.config().msa.router_layers[0];
  const int64_t last = pd.n_chunks - 1;
  for (int64_t i = 0; i < width; ++i) {
    // A one-token chunk: the mean is that token's row, exactly.
    CHECK(pd.k[0][static_cast<size_t>(last * width + i)] ==
          cap.k[layer][static_cast<size_t>((static_cast<int64_t>(tokens.size()) - 1) * width + i)]);
    CHECK(pd.v[0][static_cast<size_t>(last * width + i)] ==
          cap.v[layer][static_cast<size_t>((static_cast<int64_t>(tokens.size()) - 1) * width + i)]);
  }
}

TEST_CASE("encoder: memory is bit-identical however the documents are batched", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  const std::vector<uint64_t> ids = iota_ids(kDocs.size());
  EncodedDocuments alone = encode_all(model, kDocs, 1, ids);       // every document alone
  EncodedDocuments packed = encode_all(model, kDocs, 1 << 20, ids);  // all in one forward call
  EncodedDocuments mid = encode_all(model, kDocs, 57, ids);          // some in between
  for (size_t i = 0; i < kDocs.size(); ++i) {
    for (size_t s = 0; s < alone.pooled[i].k.size(); ++s) {
      INFO("document " << i << ", router slot " << s);
      CHECK(same_bits(alone.pooled[i].k[s], packed.pooled[i].k[s]));
      CHECK(same_bits(alone.pooled[i].v[s], packed.pooled[i].v[s]));
      CHECK(same_bits(alone.pooled[i].rk[s], packed.pooled[i].rk[s]));
      CHECK(same_bits(alone.pooled[i].k[s], mid.pooled[i].k[s]));
      CHECK(same_bits(alone.pooled[i].v[s], mid.pooled[i].v[s]));
      CHECK(same_bits(alone.pooled[i].rk[s], mid.pooled[i].rk[s]));
    }
  }
}

TEST_CASE("encoder: batches whose MLP split would leave a single row stay bit-identical", "[engine][encoder]") {
  // forward() runs the MLP in sub-batches of mlp_chunk_rows (512) rows; a 1-row remainder would take the GEMV
  // path (another summation order). Build a batch of exactly 513 tokens and compare with documents alone.
  const Model& model = engine_test::micro();
  const Tokenizer& tok = *model.tokenizer();
  std::vector<std::string> docs(kDocs.begin(), kDocs.end());
  auto count = [&](const std::vector<std::string>& d) {
    int64_t n = 0;
    for (size_t i = 0; i < d.size(); ++i) {
      std::vector<int32_t> t;
      ENGINE_REQUIRE_OK(tok.encode(format_memory_document(i, d[i]), &t));
      n += static_cast<int64_t>(t.size());
    }
    return n;
  };
  docs.push_back("and");
  int64_t total = count(docs);
  REQUIRE(total < 513);
  for (int guard = 0; guard < 2000 && total < 513; ++guard) {
    docs.back() += " and";  // one more token each time
    total = count(docs);
  }
  REQUIRE(total == 513);
  const std::vector<uint64_t> ids = iota_ids(docs.size());
  EncodedDocuments alone = encode_all(model, docs, 1, ids);
  EncodedDocuments packed = encode_all(model, docs, 513, ids);
  for (size_t i = 0; i < docs.size(); ++i) {
    INFO("document " << i);
    CHECK(same_bits(alone.pooled[i].k[0], packed.pooled[i].k[0]));
    CHECK(same_bits(alone.pooled[i].v[0], packed.pooled[i].v[0]));
    CHECK(same_bits(alone.pooled[i].rk[0], packed.pooled[i].rk[0]));
  }
}

TEST_CASE("encoder: incremental adds give the same bank as one add", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  std::unique_ptr<MemoryBank> one, two;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &one));
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &two));
  Encoder enc(model);
  std::vector<uint64_t> assigned;
  ENGINE_REQUIRE_OK(enc.add_documents(one.get(), views(kDocs), nullptr, &assigned));
  CHECK(assigned == iota_ids(kDocs.size()));
  const std::vector<std::string> first(kDocs.begin(), kDocs.begin() + 3), rest(kDocs.begin() + 3, kDocs.end());
  ENGINE_REQUIRE_OK(enc.add_documents(two.get(), views(first)));
  ENGINE_REQUIRE_OK(enc.add_documents(two.get(), views(rest), nullptr, &assigned));
  CHECK(assigned == iota_ids(rest.size(), 3));
  REQUIRE(one->n_documents() == two->n_documents());
  for (int s = 0; s < one->n_router_layers(); ++s) {
    CHECK(same_bits(one->routing(s).keys, two->routing(s).keys));
    CHECK(one->routing(s).chunk_doc == two->routing(s).chunk_doc);
    CHECK(same_bits(one->content(s).k, two->content(s).k));
    CHECK(same_bits(one->content(s).v, two->content(s).v));
  }
  for (int64_t i = 0; i < one->n_documents(); ++i) {
    CHECK(one->document(i).id == two->document(i).id);
    CHECK(one->document(i).text == kDocs[static_cast<size_t>(i)]);
    CHECK(one->document(i).n_tokens == two->document(i).n_tokens);
  }
}

TEST_CASE("encoder: routing keys are L2-normalised exactly when aux_loss_method == INFONCE", "[engine][encoder]") {
  const Model& plain = engine_test::cached_model("micro", R"({"aux_loss_method": "INFONCE_DECOUPLE"})");
  const Model& infonce = engine_test::cached_model("micro", R"({"aux_loss_method": "INFONCE"})");
  const Model& focal = engine_test::cached_model("micro", R"({"aux_loss_method": "INFONCE_FOCAL"})");
  REQUIRE(infonce.config().msa.normalize_routing());
  REQUIRE_FALSE(focal.config().msa.normalize_routing());
  const std::vector<uint64_t> ids = iota_ids(kDocs.size());
  EncodedDocuments a = encode_all(plain, kDocs, 4096, ids);
  EncodedDocuments b = encode_all(infonce, kDocs, 4096, ids);
  EncodedDocuments f = encode_all(focal, kDocs, 4096, ids);
  const int64_t d = plain.config().head_dim;
  bool some_not_unit = false;
  for (size_t i = 0; i < kDocs.size(); ++i) {
    // Same weights (same seed and tensor list): K̄/V̄ agree; only the routing keys' normalisation differs.
    CHECK(same_bits(a.pooled[i].k[0], b.pooled[i].k[0]));
    CHECK(same_bits(a.pooled[i].rk[0], f.pooled[i].rk[0]));
    for (double n : head_norms(b.pooled[i].rk[0], d)) CHECK(n == Approx(1.0).epsilon(1e-5));
    for (double n : head_norms(a.pooled[i].rk[0], d)) some_not_unit |= std::fabs(n - 1.0) > 1e-3;
    std::vector<double> want(a.pooled[i].rk[0].begin(), a.pooled[i].rk[0].end());
    normalize_heads(&want, d);
    for (size_t j = 0; j < want.size(); ++j) CHECK(b.pooled[i].rk[0][j] == Approx(want[j]).margin(1e-6));
    check_against_alone(infonce, kDocs[i], ids[i], b.records[i], b.pooled[i]);
  }
  CHECK(some_not_unit);
}

TEST_CASE("encoder: decouple_router=false routes with the pooled attention keys", "[engine][encoder]") {
  const Model& m1 = engine_test::cached_model("micro", R"({"decouple_router": false})");
  const Model& m2 = engine_test::cached_model("micro", R"({"decouple_router": false, "aux_loss_method": "INFONCE"})");
  REQUIRE_FALSE(m1.config().msa.decouple_router);
  REQUIRE(m1.weights().layers[1].router_k.empty());
  const std::vector<uint64_t> ids = iota_ids(kDocs.size());
  EncodedDocuments a = encode_all(m1, kDocs, 4096, ids);
  EncodedDocuments b = encode_all(m2, kDocs, 4096, ids);
  const int64_t d = m1.config().head_dim;
  for (size_t i = 0; i < kDocs.size(); ++i) {
    check_against_alone(m1, kDocs[i], ids[i], a.records[i], a.pooled[i]);
    CHECK(same_bits(a.pooled[i].rk[0], a.pooled[i].k[0]));  // un-normalised K̄ as routing key
    std::vector<double> want(b.pooled[i].k[0].begin(), b.pooled[i].k[0].end());
    normalize_heads(&want, d);
    for (size_t j = 0; j < want.size(); ++j) CHECK(b.pooled[i].rk[0][j] == Approx(want[j]).margin(1e-6));
  }
}

TEST_CASE("encoder: template prefix is the 3 template tokens run alone at positions 0..2", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  const ModelConfig& c = model.config();
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  const std::vector<int32_t> head = {151644, 872, 198};
  const std::vector<int32_t> pos = {0, 1, 2};
  const DeviceModel& dm = engine_test::device(model);
  KVContext kv;
  kv.init(c, dm.backend());
  ForwardWorkspace ws;
  ForwardBatch b;
  b.tokens = head.data();
  b.positions = pos.data();
  b.n_tokens = 3;
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  ENGINE_REQUIRE_OK(forward(dm.weights(), b, &kv, o, &ws, nullptr, 0));
  for (int l = 0; l < static_cast<int>(c.num_hidden_layers); ++l) {
    std::vector<float> k, v;
    ENGINE_REQUIRE_OK(kv.layers[static_cast<size_t>(l)].download(&k, &v));
    CHECK(kv.layers[static_cast<size_t>(l)].n_rows() == 3);
    CHECK(same_bits(bank->template_k(l), k));
    CHECK(same_bits(bank->template_v(l), v));
  }
}

TEST_CASE("encoder: formatted documents carry their id; default ids continue from next_id", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  CHECK(format_memory_document(3, "abc") == "<|im_start|>[3]. abc[3]<|im_end|>");
  CHECK(format_memory_document(18446744073709551614ull, "d") ==
        "<|im_start|>[18446744073709551614]. d[18446744073709551614]<|im_end|>");
  std::vector<int32_t> t;
  ENGINE_REQUIRE_OK(model.tokenizer()->encode(format_memory_document(3, "abc"), &t));
  CHECK(t.front() == 151644);
  CHECK(t.back() == 151645);
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  Encoder enc(model);
  const std::vector<uint64_t> explicit_ids = {10, 4};
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), views({"abc", "def"}), &explicit_ids));
  std::vector<uint64_t> got;
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), views({"ghi"}), nullptr, &got));
  CHECK(got == std::vector<uint64_t>{11});
  std::vector<int32_t> t10;
  ENGINE_REQUIRE_OK(model.tokenizer()->encode(format_memory_document(10, "abc"), &t10));
  CHECK(bank->document(bank->find(10)).n_tokens == static_cast<int64_t>(t10.size()));
}

TEST_CASE("encoder: progress callback counts documents and tokens; non-zero cancels", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  std::vector<EncodeProgress> calls;
  EncoderOptions eo;
  eo.batch_tokens = 40;
  eo.progress = [&](const EncodeProgress& p) {
    calls.push_back(p);
    return 0;
  };
  Encoder enc(model, eo);
  EncodedDocuments out;
  ENGINE_REQUIRE_OK(enc.encode(views(kDocs), iota_ids(kDocs.size()), &out));
  REQUIRE(calls.size() >= 3);
  int64_t tokens = 0;
  for (const DocumentRecord& r : out.records) tokens += r.n_tokens;
  for (size_t i = 1; i < calls.size(); ++i) {
    CHECK(calls[i].documents_done > calls[i - 1].documents_done);
    CHECK(calls[i].tokens_done > calls[i - 1].tokens_done);
  }
  CHECK(calls.back().documents_done == static_cast<int64_t>(kDocs.size()));
  CHECK(calls.back().documents_total == static_cast<int64_t>(kDocs.size()));
  CHECK(calls.back().tokens_done == tokens);
  CHECK(calls.back().tokens_total == tokens);
}

TEST_CASE("encoder: bad inputs fail with distinct codes and leave the bank unchanged", "[engine][encoder]") {
  const Model& model = engine_test::micro();
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  Encoder enc(model);
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), views({kDocs[0], kDocs[1]})));
  const MemoryStats before = bank->stats();
  const std::vector<float> keys_before = bank->routing(0).keys;
  auto unchanged = [&]() {
    const MemoryStats now = bank->stats();
    CHECK(now.n_documents == before.n_documents);
    CHECK(now.n_chunks == before.n_chunks);
    CHECK(now.n_tokens == before.n_tokens);
    CHECK(now.text_bytes == before.text_bytes);
    CHECK(bank->next_id() == 2);
    CHECK(same_bits(bank->routing(0).keys, keys_before));
  };

  SECTION("empty list") {
    Status s = enc.add_documents(bank.get(), {});
    CHECK(s.code() == StatusCode::kInvalidArgument);
    unchanged();
  }
  SECTION("empty document") {
    Status s = enc.add_documents(bank.get(), views({"fine", ""}));
    CHECK(s.code() == StatusCode::kInvalidArgument);
    CHECK(s.message().find("document 1") != std::string::npos);
    unchanged();
  }
  SECTION("invalid UTF-8") {
    Status s = enc.add_documents(bank.get(), views({"fine", "bad \xC3\x28 bytes"}));
    CHECK(s.code() == StatusCode::kInvalidUtf8);
    CHECK(s.message().find("document 1") != std::string::npos);
    unchanged();
  }
  SECTION("ids: mismatch, duplicate in the batch, already in the bank") {
    std::vector<uint64_t> one = {7};
    CHECK(enc.add_documents(bank.get(), views({"a", "b"}), &one).code() == StatusCode::kInvalidArgument);
    std::vector<uint64_t> dup = {7, 7};
    CHECK(enc.add_documents(bank.get(), views({"a", "b"}), &dup).code() == StatusCode::kInvalidArgument);
    std::vector<uint64_t> taken = {9, 1};
    CHECK(enc.add_documents(bank.get(), views({"a", "b"}), &taken).code() == StatusCode::kInvalidArgument);
    unchanged();
  }
  SECTION("cancelled add leaves no partial document") {
    EncoderOptions eo;
    eo.batch_tokens = 1;  // one call per document
    int calls = 0;
    eo.progress = [&](const EncodeProgress&) { return ++calls == 2 ? 1 : 0; };
    Encoder cancel(model, eo);
    Status s = cancel.add_documents(bank.get(), views(kDocs));
    CHECK(s.code() == StatusCode::kCancelled);
    CHECK(calls == 2);
    unchanged();
  }
  SECTION("batch_tokens <= 0") {
    EncoderOptions eo;
    eo.batch_tokens = 0;
    Encoder bad(model, eo);
    CHECK(bad.add_documents(bank.get(), views({"a"})).code() == StatusCode::kInvalidArgument);
    unchanged();
  }
}

TEST_CASE("encoder: a document longer than max_position_embeddings is kContextOverflow", "[engine][encoder]") {
  const Model& model = engine_test::cached_model("micro", "", 0, "maxpos48", [](nlohmann::json& c, nlohmann::json&) {
    c["max_position_embeddings"] = 48;
  });
  REQUIRE(model.config().max_position_embeddings == 48);
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank));
  Encoder enc(model);
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), views({"short one"})));
  std::string long_doc;
  for (int i = 0; i < 60; ++i) long_doc += " word";
  Status s = enc.add_documents(bank.get(), views({"fine", long_doc}));
  CHECK(s.code() == StatusCode::kContextOverflow);
  CHECK(s.message().find("48") != std::string::npos);
  CHECK(s.message().find("document 1 (id 2)") != std::string::npos);
  CHECK(bank->n_documents() == 1);
  CHECK(bank->next_id() == 1);
}
