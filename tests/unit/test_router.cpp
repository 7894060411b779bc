// The CPU routing scan (backend/cpu/routing_scan.h, the CPU twin of Backend::route): the GQA-collapsed head-mean
// path against the per-head path, every reduction combination against a naive double-precision implementation
// written here, quantised indexes, top-k order, ties and tombstones, thread-count independence, and the host view
// of a bank's routing index (engine/resident_bank.h routing_view).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/routing_scan.h"
#include "backend/cpu/score_kernels.h"
#include "backend/registry.h"
#include "backend/routing_types.h"
#include "core/thread_pool.h"
#include "engine/resident_bank.h"
#include "memory/memory_bank.h"
#include "memory/page_codec.h"

namespace {

using msa::ChunkReduce;
using msa::CpuIsa;
using msa::HeadReduce;
using msa::PageDType;
using msa::QueryReduce;
using msa::RouterQuery;
using msa::RouterReductions;
using msa::RoutingIndexView;
using msa::ScanOptions;
using msa::StatusCode;

struct Shape {
  int64_t tokens, heads, kv_heads, head_dim;
};

std::string describe(const Shape& s) {
  return "T=" + std::to_string(s.tokens) + " H=" + std::to_string(s.heads) + " G=" + std::to_string(s.kv_heads) +
         " D=" + std::to_string(s.head_dim);
}

// Random f32 routing index: n_docs documents of 1..max_chunks chunks each (contiguous), optionally followed by
// `empty_docs` documents without chunks; keys ~ N(0, 1). The host arrays a RoutingIndexView points into.
struct Corpus {
  std::vector<float> keys;         // [n_chunks, kv_heads * head_dim]
  std::vector<int32_t> chunk_doc;  // [n_chunks]
  std::vector<uint64_t> ids;       // [n_documents]: the DocStore index + 1000
  int64_t n_documents = 0;
  int64_t kv_heads = 0, head_dim = 0;
  int64_t n_chunks() const { return static_cast<int64_t>(chunk_doc.size()); }
  RoutingIndexView view() const {
    RoutingIndexView v;
    v.dtype = PageDType::kF32;
    v.n_chunks = n_chunks();
    v.n_kv_heads = kv_heads;
    v.head_dim = head_dim;
    v.keys = keys.empty() ? nullptr : keys.data();
    v.chunk_doc = chunk_doc.empty() ? nullptr : chunk_doc.data();
    v.n_documents = n_documents;
    v.doc_ids = ids.empty() ? nullptr : ids.data();
    return v;
  }
};

Corpus make_corpus(int64_t n_docs, int64_t max_chunks, int64_t kv_heads, int64_t head_dim, uint32_t seed,
                   int64_t empty_docs = 0) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> chunks(1, max_chunks);
  std::normal_distribution<float> val(0.0f, 1.0f);
  Corpus c;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.n_documents = n_docs + empty_docs;
  for (int64_t d = 0; d < n_docs; ++d) {
    const int64_t n = chunks(rng);
    for (int64_t i = 0; i < n; ++i) c.chunk_doc.push_back(static_cast<int32_t>(d));
  }
  for (int64_t d = 0; d < c.n_documents; ++d) c.ids.push_back(static_cast<uint64_t>(1000 + d));
  c.keys.resize(c.chunk_doc.size() * static_cast<size_t>(kv_heads * head_dim));
  for (float& x : c.keys) x = val(rng);
  return c;
}

ScanOptions with_isa(CpuIsa isa) {
  ScanOptions o;
  o.isa = isa;
  return o;
}

std::vector<float> make_query(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> val(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(s.tokens * s.heads * s.head_dim));
  for (float& x : q) x = val(rng);
  return q;
}

RouterQuery as_query(const Shape& s, const std::vector<float>& q) {
  RouterQuery r;
  r.q = q.data();
  r.n_tokens = s.tokens;
  r.n_heads = s.heads;
  r.n_kv_heads = s.kv_heads;
  r.head_dim = s.head_dim;
  return r;
}

// The spec's reductions written out independently, in double: per (token, chunk, head) dot products, head
// reduce, query reduce, chunk -> document reduce. Documents without chunks: -inf.
std::vector<double> naive_scores(const Shape& s, const std::vector<float>& q, const Corpus& c,
                                 const RouterReductions& red) {
  const int64_t width = s.kv_heads * s.head_dim;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t n_chunks = c.n_chunks();
  std::vector<double> chunk(static_cast<size_t>(n_chunks));
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    std::vector<double> per_token;
    for (int64_t t = 0; t < s.tokens; ++t) {
      std::vector<double> per_head;
      for (int64_t h = 0; h < s.heads; ++h) {
        const int64_t g = h / group;
        double dot = 0;
        for (int64_t d = 0; d < s.head_dim; ++d) {
          dot += static_cast<double>(q[static_cast<size_t>((t * s.heads + h) * s.head_dim + d)]) *
                 static_cast<double>(c.keys[static_cast<size_t>(ch * width + g * s.head_dim + d)]);
        }
        per_head.push_back(dot);
      }
      double hv = 0;
      if (red.head == HeadReduce::kMax) {
        hv = *std::max_element(per_head.begin(), per_head.end());
      } else {
        for (double x : per_head) hv += x;
        hv /= static_cast<double>(per_head.size());
      }
      per_token.push_back(hv);
    }
    double qv = 0;
    switch (red.query) {
      case QueryReduce::kMax: qv = *std::max_element(per_token.begin(), per_token.end()); break;
      case QueryReduce::kLast: qv = per_token.back(); break;
      case QueryReduce::kMean:
        for (double x : per_token) qv += x;
        qv /= static_cast<double>(per_token.size());
        break;
    }
    chunk[static_cast<size_t>(ch)] = qv;
  }
  std::vector<double> out(static_cast<size_t>(c.n_documents), -std::numeric_limits<double>::infinity());
  for (int64_t d = 0; d < c.n_documents; ++d) {
    std::vector<double> mine;
    for (int64_t ch = 0; ch < n_chunks; ++ch) {
      if (c.chunk_doc[static_cast<size_t>(ch)] == d) mine.push_back(chunk[static_cast<size_t>(ch)]);
    }
    if (mine.empty()) continue;
    if (red.chunk == ChunkReduce::kMax) {
      out[static_cast<size_t>(d)] = *std::max_element(mine.begin(), mine.end());
    } else {
      double sum = 0;
      for (double x : mine) sum += x;
      out[static_cast<size_t>(d)] = sum / static_cast<double>(mine.size());
    }
  }
  return out;
}

// |got - want| <= rel * scale for every document, scale = the largest |score| of the reference (errors of a
// dot product scale with the magnitudes of its terms, not with its possibly cancelled result). Infinite
// entries (documents without chunks) must match exactly.
template <typename T>
void check_close(const std::vector<float>& got, const std::vector<T>& want, double rel) {
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (T w : want) {
    if (std::isfinite(static_cast<double>(w))) scale = std::max(scale, std::fabs(static_cast<double>(w)));
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = static_cast<double>(want[i]);
    if (!std::isfinite(w)) {
      CHECK(static_cast<double>(got[i]) == w);
      continue;
    }
    const double err = std::fabs(static_cast<double>(got[i]) - w);
    if (err > rel * scale) {
      FAIL_CHECK("document " << i << ": got " << got[i] << ", want " << w << ", |err| " << err << " > " << rel
                             << " x scale " << scale);
    }
  }
}

const std::vector<RouterReductions>& all_reductions() {
  static const std::vector<RouterReductions> all = [] {
    std::vector<RouterReductions> v;
    for (HeadReduce h : {HeadReduce::kMean, HeadReduce::kMax}) {
      for (QueryReduce q : {QueryReduce::kMax, QueryReduce::kMean, QueryReduce::kLast}) {
        for (ChunkReduce c : {ChunkReduce::kMax, ChunkReduce::kMean}) v.push_back({h, q, c});
      }
    }
    return v;
  }();
  return all;
}

std::string describe(const RouterReductions& r) {
  return std::string("head ") + msa::head_reduce_name(r.head) + ", query " + msa::query_reduce_name(r.query) +
         ", chunk " + msa::chunk_reduce_name(r.chunk);
}

std::vector<CpuIsa> isas() {
  std::vector<CpuIsa> v = {CpuIsa::kScalar};
  if (msa::scan::avx2_score_kernels_supported()) v.push_back(CpuIsa::kAvx2);
  return v;
}

// Shapes that reach every kernel path: inner (<= 4 rows) and outer (even and odd panel counts, partial panels),
// n_kv_heads = 1 and = n_heads, odd head_dim, inner lengths below and above the 256-float slice.
const std::vector<Shape> kShapes = {
    {5, 8, 2, 16},    // collapsed: 5 rows, 1 panel; per head: 20 rows, 3 panels
    {64, 32, 8, 128}, // MSA-4B shape: collapsed 64 rows x 1024 (4 slices)
    {3, 4, 1, 33},    // n_kv_heads = 1, odd head_dim
    {7, 6, 6, 17},    // n_kv_heads = n_heads (no grouping), odd head_dim
    {1, 4, 2, 8},     // one routing token
    {13, 12, 3, 31},  // odd everything: 13 rows (2 panels, second partial)
    {2, 16, 2, 65},   // per head: 16 rows (2 full panels); collapsed: 130 wide
    {9, 2, 1, 300},   // collapsed inner length 300 > slice of 256
};

}  // namespace

TEST_CASE("GQA-collapsed head mean equals the per-head path", "[router]") {
  uint32_t seed = 1;
  for (const Shape& s : kShapes) {
    const Corpus c = make_corpus(23, 9, s.kv_heads, s.head_dim, seed++);
    const std::vector<float> q = make_query(s, seed++);
    for (const RouterReductions& r : all_reductions()) {
      if (r.head != HeadReduce::kMean) continue;
      std::vector<float> ref;
      REQUIRE(msa::score_documents_per_head(as_query(s, q), c.view(), r, &ref).ok());
      for (CpuIsa isa : isas()) {
        INFO(describe(s) << ", " << describe(r) << ", isa " << static_cast<int>(isa));
        const ScanOptions opt = with_isa(isa);
        std::vector<float> got;
        REQUIRE(msa::score_documents(as_query(s, q), c.view(), r, &got, opt).ok());
        check_close(got, ref, 1e-5);
      }
    }
  }
}

TEST_CASE("Every reduction combination matches a naive double implementation", "[router]") {
  uint32_t seed = 100;
  for (const Shape& s : kShapes) {
    // Two documents without chunks at the end: they score -inf under every reduction.
    const Corpus c = make_corpus(17, 7, s.kv_heads, s.head_dim, seed++, 2);
    const std::vector<float> q = make_query(s, seed++);
    for (const RouterReductions& r : all_reductions()) {
      const std::vector<double> want = naive_scores(s, q, c, r);
      std::vector<float> per_head;
      REQUIRE(msa::score_documents_per_head(as_query(s, q), c.view(), r, &per_head).ok());
      {
        INFO(describe(s) << ", " << describe(r) << ", per-head reference");
        check_close(per_head, want, 1e-5);
      }
      for (CpuIsa isa : isas()) {
        INFO(describe(s) << ", " << describe(r) << ", isa " << static_cast<int>(isa));
        const ScanOptions opt = with_isa(isa);
        std::vector<float> got;
        REQUIRE(msa::score_documents(as_query(s, q), c.view(), r, &got, opt).ok());
        check_close(got, want, 1e-5);
      }
    }
  }
}

TEST_CASE("Scores are bitwise independent of the thread count", "[router]") {
  // 1000+ chunks = 11+ blocks of 96, with a partial last block.
  const Shape s{11, 8, 2, 24};
  const Corpus c = make_corpus(300, 7, s.kv_heads, s.head_dim, 7);
  REQUIRE(c.n_chunks() > 1000);
  const std::vector<float> q = make_query(s, 8);
  msa::ThreadPool p1(1), p2(2), p3(3);
  for (CpuIsa isa : isas()) {
    for (const RouterReductions& r : all_reductions()) {
      INFO(describe(r) << ", isa " << static_cast<int>(isa));
      std::vector<std::vector<float>> results;
      for (msa::ThreadPool* pool : {&p1, &p2, &p3}) {
        ScanOptions opt = with_isa(isa);
        opt.pool = pool;
        std::vector<float> got;
        REQUIRE(msa::score_documents(as_query(s, q), c.view(), r, &got, opt).ok());
        results.push_back(got);
      }
      for (size_t i = 1; i < results.size(); ++i) {
        REQUIRE(results[i].size() == results[0].size());
        CHECK(std::memcmp(results[i].data(), results[0].data(), results[0].size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("A chunk's score does not depend on its neighbours (block and tile position)", "[router]") {
  // Scoring a prefix of the index must give the prefix's documents the same bits as scoring the whole index:
  // the chunks land in different block/tile positions only at the prefix's end.
  const Shape s{20, 8, 4, 16};
  const Corpus c = make_corpus(150, 4, s.kv_heads, s.head_dim, 11);
  const std::vector<float> q = make_query(s, 12);
  for (CpuIsa isa : isas()) {
    for (const RouterReductions& r : all_reductions()) {
      INFO(describe(r) << ", isa " << static_cast<int>(isa));
      const ScanOptions opt = with_isa(isa);
      std::vector<float> full;
      REQUIRE(msa::score_documents(as_query(s, q), c.view(), r, &full, opt).ok());
      // Cut after document 100 (chunk count not a multiple of any tile width, in general).
      int64_t n = 0;
      while (n < c.n_chunks() && c.chunk_doc[static_cast<size_t>(n)] < 100) ++n;
      RoutingIndexView prefix = c.view();  // the first n chunks and 100 documents of the same arrays
      prefix.n_chunks = n;
      prefix.n_documents = 100;
      std::vector<float> part;
      REQUIRE(msa::score_documents(as_query(s, q), prefix, r, &part, opt).ok());
      REQUIRE(part.size() == 100);
      CHECK(std::memcmp(part.data(), full.data(), 100 * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("score_documents rejects bad input with a message", "[router]") {
  const Shape s{2, 4, 2, 8};
  const Corpus c = make_corpus(3, 2, 2, 8, 3);
  const std::vector<float> q = make_query(s, 4);
  const RouterReductions r;
  std::vector<float> out;
  auto expect_invalid = [&](RouterQuery rq, const RoutingIndexView& idx, const RouterReductions& red,
                            std::vector<float>* o) {
    const msa::Status st = msa::score_documents(rq, idx, red, o);
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK_FALSE(st.message().empty());
    CHECK(msa::score_documents_per_head(rq, idx, red, o).code() == StatusCode::kInvalidArgument);
  };
  RouterQuery good = as_query(s, q);
  REQUIRE(msa::score_documents(good, c.view(), r, &out).ok());
  CHECK(out.size() == 3);

  expect_invalid(good, c.view(), r, nullptr);
  RouterQuery bad = good;
  bad.q = nullptr;
  expect_invalid(bad, c.view(), r, &out);
  bad = good;
  bad.n_tokens = 0;
  expect_invalid(bad, c.view(), r, &out);
  bad = good;
  bad.n_kv_heads = 3;  // 4 % 3 != 0
  expect_invalid(bad, c.view(), r, &out);
  bad = good;
  bad.head_dim = 4;  // width 8 != the index's 16
  expect_invalid(bad, c.view(), r, &out);
  bad = good;
  bad.n_heads = 0;
  expect_invalid(bad, c.view(), r, &out);
  RoutingIndexView v = c.view();
  v.n_documents = c.n_documents - 1;  // chunk_doc names a document past the end
  expect_invalid(good, v, r, &out);
  v = c.view();
  v.n_documents = -1;
  expect_invalid(good, v, r, &out);
  // Views that do not hold what they claim: no key rows, no chunk_doc, int8 without scales, an unknown dtype,
  // an index of another head shape.
  v = c.view();
  v.keys = nullptr;
  expect_invalid(good, v, r, &out);
  v = c.view();
  v.chunk_doc = nullptr;
  expect_invalid(good, v, r, &out);
  std::vector<uint8_t> packed(static_cast<size_t>(c.n_chunks() * 16));
  v = c.view();
  v.dtype = PageDType::kInt8;
  v.keys = nullptr;
  v.packed = packed.data();
  expect_invalid(good, v, r, &out);
  v = c.view();
  v.dtype = static_cast<PageDType>(9);
  expect_invalid(good, v, r, &out);
  v = c.view();
  v.n_kv_heads = 1;
  v.head_dim = 16;
  expect_invalid(good, v, r, &out);
  RouterReductions weird;
  weird.query = static_cast<QueryReduce>(7);
  expect_invalid(good, c.view(), weird, &out);
  weird = r;
  weird.head = static_cast<HeadReduce>(5);
  expect_invalid(good, c.view(), weird, &out);
  weird = r;
  weird.chunk = static_cast<ChunkReduce>(5);
  expect_invalid(good, c.view(), weird, &out);

  // An empty index scores every document -inf; no documents gives no scores.
  RoutingIndexView empty = c.view();
  empty.n_chunks = 0;
  empty.keys = nullptr;
  empty.chunk_doc = nullptr;
  empty.n_documents = 2;
  REQUIRE(msa::score_documents(good, empty, r, &out).ok());
  CHECK(out == std::vector<float>(2, -std::numeric_limits<float>::infinity()));
  empty.n_documents = 0;
  REQUIRE(msa::score_documents(good, empty, r, &out).ok());
  CHECK(out.empty());
}

TEST_CASE("A bf16 or int8 index scores as the f32 index of its decoded keys", "[router]") {
  // The scan dequantises blocks into an f32 tile and runs the f32 kernels on it: the same bits as an f32 index
  // holding the decoded values (decode_index_rows is page_codec's decode_rows).
  const Shape s{6, 8, 2, 24};
  const Corpus c = make_corpus(130, 5, s.kv_heads, s.head_dim, 31);
  const std::vector<float> q = make_query(s, 32);
  const int64_t width = s.kv_heads * s.head_dim;
  for (PageDType dt : {PageDType::kBF16, PageDType::kInt8}) {
    std::vector<uint8_t> packed(static_cast<size_t>(c.n_chunks()) * msa::page_row_bytes(dt, width));
    std::vector<float> scales(static_cast<size_t>(c.n_chunks() * msa::page_row_scales(dt, s.kv_heads)));
    msa::encode_rows(dt, c.keys.data(), c.n_chunks(), s.kv_heads, s.head_dim, packed.data(),
                     scales.empty() ? nullptr : scales.data());
    Corpus decoded = c;
    msa::decode_rows(dt, packed.data(), scales.empty() ? nullptr : scales.data(), c.n_chunks(), s.kv_heads,
                     s.head_dim, decoded.keys.data());
    RoutingIndexView qv = c.view();
    qv.dtype = dt;
    qv.keys = nullptr;
    qv.packed = packed.data();
    qv.scales = scales.empty() ? nullptr : scales.data();
    // decode_index_rows of a middle range gives the decoded rows.
    std::vector<float> rows(static_cast<size_t>(7 * width));
    msa::decode_index_rows(qv, 11, 7, rows.data());
    CHECK(std::memcmp(rows.data(), decoded.keys.data() + 11 * width, rows.size() * sizeof(float)) == 0);
    for (CpuIsa isa : isas()) {
      for (const RouterReductions& r : all_reductions()) {
        INFO(msa::page_dtype_name(dt) << ", " << describe(r) << ", isa " << static_cast<int>(isa));
        std::vector<float> got, want;
        REQUIRE(msa::score_documents(as_query(s, q), qv, r, &got, with_isa(isa)).ok());
        REQUIRE(msa::score_documents(as_query(s, q), decoded.view(), r, &want, with_isa(isa)).ok());
        CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
        std::vector<float> ref;
        REQUIRE(msa::score_documents_per_head(as_query(s, q), qv, r, &ref).ok());
        std::vector<float> ref_decoded;
        REQUIRE(msa::score_documents_per_head(as_query(s, q), decoded.view(), r, &ref_decoded).ok());
        CHECK(std::memcmp(ref.data(), ref_decoded.data(), ref.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("NaN in the routing keys propagates through max and mean", "[router]") {
  const Shape s{3, 4, 2, 8};
  Corpus c = make_corpus(4, 3, 2, 8, 21);
  c.keys[5] = std::nanf("");  // chunk 0, which belongs to document 0
  const std::vector<float> q = make_query(s, 22);
  for (CpuIsa isa : isas()) {
    for (const RouterReductions& r : all_reductions()) {
      INFO(describe(r));
      const ScanOptions opt = with_isa(isa);
      std::vector<float> got;
      REQUIRE(msa::score_documents(as_query(s, q), c.view(), r, &got, opt).ok());
      CHECK(std::isnan(got[0]));
      for (size_t d = 1; d < got.size(); ++d) CHECK(std::isfinite(got[d]));
    }
  }
}

// ------------------------------------------------------------------------------------------------ top-k

namespace {

// The document side of a routing index (no chunks): caller ids and, optionally, tombstones.
struct Docs {
  std::vector<uint64_t> ids;
  std::vector<uint8_t> removed;  // empty: none removed (the view's removed stays null)
  RoutingIndexView view() const {
    RoutingIndexView v;
    v.n_kv_heads = 1;
    v.head_dim = 2;
    v.n_documents = static_cast<int64_t>(ids.size());
    v.doc_ids = ids.empty() ? nullptr : ids.data();
    v.removed = removed.empty() ? nullptr : removed.data();
    return v;
  }
};

Docs docs_with_ids(std::vector<uint64_t> ids, std::vector<uint8_t> removed = {}) {
  Docs d;
  d.ids = std::move(ids);
  d.removed = std::move(removed);
  return d;
}

// Appends one single-chunk document per id, keys (key, -key) with key growing by 0.125 per document.
void add_docs(msa::MemoryBank* bank, const std::vector<uint64_t>& ids, float* key) {
  std::vector<msa::DocumentRecord> docs;
  std::vector<msa::PooledDocument> pooled;
  for (uint64_t id : ids) {
    msa::DocumentRecord d;
    d.id = id;
    d.n_tokens = 3;
    msa::PooledDocument p;
    p.n_tokens = 3;
    p.n_chunks = 1;
    *key += 0.125f;
    p.k = p.v = p.rk = {std::vector<float>{*key, -*key}};
    docs.push_back(d);
    pooled.push_back(p);
  }
  REQUIRE(bank->add(docs, pooled).ok());
}

// A bank of page dtype `dtype` whose documents have the given ids (one chunk each, width 2); key_out (may be
// null): the last key, for add_docs to continue from.
std::unique_ptr<msa::MemoryBank> bank_with_ids(const std::vector<uint64_t>& ids, PageDType dtype = PageDType::kF32,
                                               float* key_out = nullptr) {
  msa::ModelConfig cfg;
  cfg.num_hidden_layers = 1;
  cfg.num_attention_heads = 1;
  cfg.num_key_value_heads = 1;
  cfg.head_dim = 2;
  cfg.msa.present = true;
  cfg.msa.router_layers = {0};
  cfg.msa.pooling_kernel_size = 4;
  std::unique_ptr<msa::MemoryBank> bank;
  REQUIRE(msa::MemoryBank::create(cfg, {std::vector<float>(6)}, {std::vector<float>(6)}, &bank, dtype).ok());
  float key = 0.0f;
  add_docs(bank.get(), ids, &key);
  if (key_out != nullptr) *key_out = key;
  return bank;
}

std::vector<uint64_t> ids_of(const std::vector<msa::ScoredDocument>& v) {
  std::vector<uint64_t> ids;
  for (const auto& d : v) ids.push_back(d.id);
  return ids;
}

}  // namespace

TEST_CASE("select_top_k orders by score desc, then id asc", "[router]") {
  // Index:        0    1    2    3    4    5
  const Docs bank = docs_with_ids({50, 7, 31, 2, 90, 8});
  const std::vector<float> scores = {0.5f, 0.9f, 0.5f, 0.5f, 0.1f, 0.9f};
  std::vector<msa::ScoredDocument> top;
  REQUIRE(msa::select_top_k(scores, bank.view(), 4, &top).ok());
  // 0.9: ids 7, 8; 0.5: ids 2, 31, 50 -> the boundary tie keeps the lowest id (2).
  CHECK(ids_of(top) == std::vector<uint64_t>{7, 8, 2, 31});
  CHECK(top[0].index == 1);
  CHECK(top[1].index == 5);
  CHECK(top[2].index == 3);
  CHECK(top[3].score == 0.5f);

  // k > n_documents: all of them, never an invented document.
  REQUIRE(msa::select_top_k(scores, bank.view(), 100, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{7, 8, 2, 31, 50, 90});

  // k = 0, negative k, size mismatch, null out.
  CHECK(msa::select_top_k(scores, bank.view(), 0, &top).code() == StatusCode::kInvalidArgument);
  CHECK(msa::select_top_k(scores, bank.view(), -3, &top).code() == StatusCode::kInvalidArgument);
  CHECK(msa::select_top_k({0.1f}, bank.view(), 2, &top).code() == StatusCode::kInvalidArgument);
  CHECK(msa::select_top_k(scores, bank.view(), 2, nullptr).code() == StatusCode::kInvalidArgument);
  RoutingIndexView no_ids = bank.view();  // the tie rule needs the caller ids
  no_ids.doc_ids = nullptr;
  CHECK(msa::select_top_k(scores, no_ids, 2, &top).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("select_top_k never returns a tombstoned document", "[router]") {
  // Index:        0    1    2    3    4    5
  const Docs bank = docs_with_ids({50, 7, 31, 2, 90, 8}, {0, 1, 0, 0, 1, 0});
  const std::vector<float> scores = {0.5f, 0.9f, 0.5f, 0.5f, 2.0f, 0.9f};
  std::vector<msa::ScoredDocument> top;
  REQUIRE(msa::select_top_k(scores, bank.view(), 3, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{8, 2, 31});
  // k past the live documents: the 4 live ones, never a removed one.
  REQUIRE(msa::select_top_k(scores, bank.view(), 6, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{8, 2, 31, 50});
  // Everything removed: an empty selection.
  const Docs gone = docs_with_ids({1, 2}, {1, 1});
  REQUIRE(msa::select_top_k({1.0f, 2.0f}, gone.view(), 2, &top).ok());
  CHECK(top.empty());
}

TEST_CASE("routing_view shows a bank's routing index, ids and tombstones", "[router]") {
  auto bank = bank_with_ids({50, 7, 31, 2});
  REQUIRE(bank->remove({31}).ok());
  // The per-document arrays as ResidentBank::sync builds them.
  std::vector<uint64_t> ids;
  std::vector<uint8_t> removed;
  for (int64_t i = 0; i < bank->n_documents(); ++i) {
    ids.push_back(bank->document(i).id);
    removed.push_back(bank->is_removed(i) ? 1 : 0);
  }
  const RoutingIndexView v = msa::routing_view(*bank, 0, ids, removed);
  const msa::RoutingIndex& ri = bank->routing(0);
  CHECK(v.dtype == ri.dtype);
  CHECK(v.n_chunks == ri.n_chunks());
  CHECK(v.n_chunks == 4);
  CHECK(v.n_kv_heads == 1);
  CHECK(v.head_dim == 2);
  CHECK(v.n_documents == bank->n_documents());
  CHECK(v.keys == ri.keys.data());
  CHECK(v.chunk_doc == ri.chunk_doc.data());
  CHECK(v.doc_ids == ids.data());
  CHECK(v.removed == removed.data());
  // Query (1, 0) against keys (0.125 i, -0.125 i): document i scores 0.125 (i + 1), head dim 2 unscaled.
  const std::vector<float> q = {1.0f, 0.0f};
  RouterQuery rq;
  rq.q = q.data();
  rq.n_tokens = 1;
  rq.n_heads = 1;
  rq.n_kv_heads = 1;
  rq.head_dim = 2;
  std::vector<float> scores;
  REQUIRE(msa::score_documents(rq, v, RouterReductions(), &scores).ok());
  CHECK(scores == std::vector<float>{0.125f, 0.25f, 0.375f, 0.5f});
  std::vector<msa::ScoredDocument> top;
  REQUIRE(msa::select_top_k(scores, v, 4, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{2, 7, 50});  // 31 (index 2) is tombstoned
}

TEST_CASE("select_top_k ranks NaN below every number, -inf included", "[router]") {
  const Docs bank = docs_with_ids({1, 2, 3, 4, 5});
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> scores = {nan, -inf, nan, -1e30f, inf};
  std::vector<msa::ScoredDocument> top;
  REQUIRE(msa::select_top_k(scores, bank.view(), 3, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{5, 4, 2});
  REQUIRE(msa::select_top_k(scores, bank.view(), 5, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{5, 4, 2, 1, 3});
  // Signed zeros tie and fall back to ids.
  const Docs bank2 = docs_with_ids({9, 4});
  REQUIRE(msa::select_top_k({0.0f, -0.0f}, bank2.view(), 2, &top).ok());
  CHECK(ids_of(top) == std::vector<uint64_t>{4, 9});
}

TEST_CASE("select_top_k agrees with a full sort on many random tied scores", "[router]") {
  std::mt19937 rng(5);
  std::vector<uint64_t> ids(500);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = (i * 7919) % 1000;  // distinct, not in index order
  const Docs bank = docs_with_ids(ids);
  std::uniform_int_distribution<int> level(0, 20);  // few distinct values: many ties
  std::vector<float> scores(ids.size());
  for (float& x : scores) x = static_cast<float>(level(rng)) * 0.125f;
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : ids[a] < ids[b];
  });
  for (int64_t k : {1, 16, 77, 500}) {
    std::vector<msa::ScoredDocument> top;
    REQUIRE(msa::select_top_k(scores, bank.view(), k, &top).ok());
    REQUIRE(top.size() == static_cast<size_t>(k));
    for (size_t i = 0; i < top.size(); ++i) CHECK(top[i].index == static_cast<int64_t>(order[i]));
  }
}

namespace {

// Every document's score and the top 3 of the query (1, 0.5) through `rb` on its backend.
void route_through(msa::Backend* be, const msa::ResidentBank& rb, std::vector<float>* scores,
                   std::vector<uint64_t>* top) {
  const std::vector<float> q = {1.0f, 0.5f};
  msa::DeviceBuffer dq;
  REQUIRE(msa::upload_vector(be, q.data(), q.size(), &dq).ok());
  msa::RouteRequest req;
  req.query.q = dq.as<float>();
  req.query.n_tokens = 1;
  req.query.n_heads = 1;
  req.query.n_kv_heads = 1;
  req.query.head_dim = 2;
  req.k = 3;
  req.want_scores = true;
  msa::RouteSelection sel;
  REQUIRE(be->route(req, rb.routing(0), &sel).ok());
  *scores = sel.scores;
  *top = ids_of(sel.top);
}

// The incrementally synced `rb` routes exactly as a ResidentBank uploaded from scratch.
void expect_same_as_fresh(msa::Backend* be, const msa::ResidentBank& rb, const msa::MemoryBank& bank) {
  msa::ResidentBank fresh(be);
  REQUIRE(fresh.sync(bank).ok());
  CHECK(fresh.last_sync().kind == msa::ResidentBank::SyncKind::kFull);
  std::vector<float> s1, s2;
  std::vector<uint64_t> t1, t2;
  route_through(be, rb, &s1, &t1);
  route_through(be, fresh, &s2, &t2);
  REQUIRE(s1.size() == static_cast<size_t>(bank.n_documents()));
  CHECK(std::memcmp(s1.data(), s2.data(), s1.size() * sizeof(float)) == 0);
  CHECK(t1 == t2);
}

}  // namespace

TEST_CASE("ResidentBank copies only the appended rows and the tombstones after add and remove", "[router]") {
  using Kind = msa::ResidentBank::SyncKind;
  for (const std::string& name : msa::backend_names()) {
    msa::BackendParams bp;
    bp.name = name;
    std::unique_ptr<msa::Backend> be;
    const msa::Status st = msa::create_backend(bp, &be);
    if (st.code() == StatusCode::kNoDevice) {
      WARN("ResidentBank sync on " << name << ": skipped, " << st.message());
      continue;
    }
    REQUIRE(st.ok());
    for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
      INFO(name << ", " << msa::page_dtype_name(dt) << " bank");
      float key = 0.0f;
      auto bank = bank_with_ids({50, 7, 31, 2}, dt, &key);
      msa::ResidentBank rb(be.get());
      REQUIRE(rb.sync(*bank).ok());
      CHECK(rb.last_sync().kind == Kind::kFull);
      CHECK(rb.last_sync().chunks_copied == 4);
      const uint64_t layout = bank->layout_version();

      // add: the layout stays, two rows and two ids are copied, and routing sees the new documents.
      add_docs(bank.get(), {9, 60}, &key);
      CHECK(bank->layout_version() == layout);
      REQUIRE(rb.sync(*bank).ok());
      CHECK(rb.last_sync().kind == Kind::kAppend);
      CHECK(rb.last_sync().chunks_copied == 2);
      CHECK(rb.last_sync().documents_copied == 2);
      CHECK(rb.routing(0).n_chunks() == 6);
      CHECK(rb.routing(0).n_documents() == 6);
      expect_same_as_fresh(be.get(), rb, *bank);

      // remove: only the tombstones change, and the removed document is never selected.
      REQUIRE(bank->remove({60}).ok());
      CHECK(bank->layout_version() == layout);
      REQUIRE(rb.sync(*bank).ok());
      CHECK(rb.last_sync().kind == Kind::kAppend);
      CHECK(rb.last_sync().chunks_copied == 0);
      CHECK(rb.last_sync().documents_copied == 0);
      std::vector<float> scores;
      std::vector<uint64_t> top;
      route_through(be.get(), rb, &scores, &top);
      CHECK(top == std::vector<uint64_t>{9, 2, 31});  // 60 (the highest key) is tombstoned
      expect_same_as_fresh(be.get(), rb, *bank);

      // Many small adds: the resident index grows past its first allocation, rows kept.
      for (uint64_t id = 100; id < 140; ++id) {
        add_docs(bank.get(), {id}, &key);
        REQUIRE(rb.sync(*bank).ok());
        CHECK(rb.last_sync().chunks_copied == 1);
      }
      expect_same_as_fresh(be.get(), rb, *bank);

      // compact rewrites the rows: everything is uploaded again.
      REQUIRE(bank->compact().ok());
      CHECK(bank->layout_version() != layout);
      REQUIRE(rb.sync(*bank).ok());
      CHECK(rb.last_sync().kind == Kind::kFull);
      CHECK(rb.last_sync().chunks_copied == bank->routing(0).n_chunks());
      expect_same_as_fresh(be.get(), rb, *bank);

      // Another bank: a full upload, whatever its versions.
      auto other = bank_with_ids({1, 2, 3}, dt);
      REQUIRE(rb.sync(*other).ok());
      CHECK(rb.last_sync().kind == Kind::kFull);
      expect_same_as_fresh(be.get(), rb, *other);
    }
  }
}

TEST_CASE("update_routing_index refuses a view that does not extend the index", "[router]") {
  for (const std::string& name : msa::backend_names()) {
    msa::BackendParams bp;
    bp.name = name;
    std::unique_ptr<msa::Backend> be;
    if (!msa::create_backend(bp, &be).ok()) continue;  // a CUDA build without a GPU
    INFO(name);
    auto bank = bank_with_ids({5, 6, 7});
    std::vector<uint64_t> ids = {5, 6, 7};
    std::vector<uint8_t> removed = {0, 0, 0};
    std::unique_ptr<msa::ResidentRoutingIndex> idx;
    REQUIRE(be->upload_routing_index(msa::routing_view(*bank, 0, ids, removed), &idx).ok());
    // Fewer chunks than the index holds.
    RoutingIndexView shrunk = msa::routing_view(*bank, 0, ids, removed);
    shrunk.n_chunks = 2;
    shrunk.n_documents = 2;
    CHECK(be->update_routing_index(shrunk, idx.get()).code() == StatusCode::kInvalidArgument);
    // Another shape.
    RoutingIndexView wide = msa::routing_view(*bank, 0, ids, removed);
    wide.head_dim = 4;
    CHECK(be->update_routing_index(wide, idx.get()).code() == StatusCode::kInvalidArgument);
    // The same view is a valid (empty) update.
    CHECK(be->update_routing_index(msa::routing_view(*bank, 0, ids, removed), idx.get()).ok());
  }
}
