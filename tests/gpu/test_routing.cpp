// GPU routing tier against its CPU twin (src/router, src/memory/page_codec):
//   1. device routing scores (cuda/routing_score.h) vs msa::score_documents for random banks (f32 / bf16 /
//      int8 pages), GQA groups 1/2/3/4, head_dim 7..128 (every global-load path of the scan), T = 1..40
//      (one and several row passes), documents of 1..5 chunks, tombstones, duplicated documents (exact ties),
//      every head x query x chunk reduction; tolerance per document: 1e-5 x the sum of |q|·|k| products
//      (the rounding bound of a reordered f32 dot product), NaN / -inf exactly where the CPU has them;
//   2. top-k (cuda/topk.h) vs msa::select_top_k: on the device scores of 1 (always exact: same input), on
//      the CPU scores when every gap among the first k+1 exceeds twice the tolerance (or is an exact tie),
//      and on crafted score vectors (ties, NaN, +-0, +-inf, tombstones, k > live);
//   3. NaN propagation (NaN int8 scales / bf16 keys in some chunks) and incremental append == one upload;
//   4. page gather + decode (cuda/page_gather.h) vs msa::decode_rows, bit for bit (f32 and bf16 output);
//   5. argument errors come back as kInvalidArgument.
// Exit 77 without a device, 1 on any failure (each printed), 0 otherwise; one summary line per group.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "device.h"
#include "memory/memory_bank.h"
#include "memory/page_codec.h"
#include "page_gather.h"
#include "resources.h"
#include "backend/cpu/routing_scan.h"
#include "routing_fixtures.h"
#include "routing_index.h"
#include "routing_score.h"
#include "topk.h"

namespace {

using msa::ChunkReduce;
using msa::HeadReduce;
using msa::PageDType;
using msa::QueryReduce;
using msa::RouterReductions;
using msa::Status;

int g_failures = 0;
bool g_quick = false;  // --quick: a small subset (for compute-sanitizer runs)

void fail(const std::string& what) {
  ++g_failures;
  if (g_failures <= 40) std::printf("FAIL: %s\n", what.c_str());
}

bool ok(const Status& st, const std::string& what) {
  if (st.ok()) return true;
  fail(what + ": " + st.message());
  return false;
}

const char* hname(HeadReduce h) { return h == HeadReduce::kMean ? "mean" : "max"; }
const char* qname(QueryReduce q) {
  return q == QueryReduce::kMax ? "max" : (q == QueryReduce::kMean ? "mean" : "last");
}
const char* cname(ChunkReduce c) { return c == ChunkReduce::kMean ? "mean" : "max"; }

struct Shape {
  int64_t heads, kv_heads, head_dim;
};

std::string fmt_shape(const Shape& s, int64_t T, PageDType dt) {
  char b[128];
  std::snprintf(b, sizeof b, "H=%lld G=%lld D=%lld T=%lld %s", static_cast<long long>(s.heads),
                static_cast<long long>(s.kv_heads), static_cast<long long>(s.head_dim), static_cast<long long>(T),
                msa::page_dtype_name(dt));
  return b;
}

// A bank of n_docs documents of 1..max_chunks chunks, random ids (not monotone in the index), keys ~ N(0,1);
// every 7th document repeats the previous one's pages (exact score ties); every 5th is tombstoned.
std::unique_ptr<msa::MemoryBank> make_bank(const Shape& s, PageDType dt, int64_t n_docs, int64_t max_chunks,
                                           uint32_t seed, bool tombstones) {
  const int pooling = 4;
  const int64_t width = s.kv_heads * s.head_dim;
  std::unique_ptr<msa::MemoryBank> bank;
  Status st = routing_fixtures::create_bank(s.heads, s.kv_heads, s.head_dim, pooling, dt, &bank);
  if (!ok(st, "MemoryBank::create")) return nullptr;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> nch(1, max_chunks);
  std::normal_distribution<float> val(0.0f, 1.0f);
  std::vector<uint64_t> ids(static_cast<size_t>(n_docs));
  for (int64_t i = 0; i < n_docs; ++i) ids[static_cast<size_t>(i)] = static_cast<uint64_t>(i) * 7919u % 100003u + 5;
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<msa::DocumentRecord> docs;
  std::vector<msa::PooledDocument> pooled;
  routing_fixtures::make_documents(
      ids,
      [&] {
        msa::PooledDocument p;
        const int64_t nc = nch(rng);
        p.n_chunks = nc;
        p.n_tokens = (nc - 1) * pooling + 1 + static_cast<int64_t>(rng() % pooling);
        std::vector<float> k(static_cast<size_t>(nc * width)), v(k.size()), rk(k.size());
        for (float& x : k) x = val(rng);
        for (float& x : v) x = val(rng);
        for (float& x : rk) x = val(rng);
        p.k = {k};
        p.v = {v};
        p.rk = {rk};
        return p;
      },
      &docs, &pooled);
  if (!ok(bank->add(docs, pooled), "MemoryBank::add")) return nullptr;
  if (tombstones) {
    std::vector<uint64_t> rm;
    for (int64_t d = 4; d < n_docs; d += 5) rm.push_back(ids[static_cast<size_t>(d)]);
    if (!rm.empty() && !ok(bank->remove(rm), "MemoryBank::remove")) return nullptr;
  }
  return bank;
}

using routing_fixtures::abs_index;

std::vector<float> make_query(int64_t T, const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> val(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(T * s.heads * s.head_dim));
  for (float& x : q) x = val(rng) * 0.1f;
  return q;
}

// The device query of make_query's host vector q (T tokens of shape s).
msa::cuda::DeviceRouterQuery device_query(const std::vector<float>& q, int64_t T, const Shape& s) {
  msa::cuda::DeviceRouterQuery dq;
  dq.q = q.data();
  dq.n_tokens = T;
  dq.n_heads = s.heads;
  dq.n_kv_heads = s.kv_heads;
  dq.head_dim = s.head_dim;
  return dq;
}

bool same_float(float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  return ua == ub || (a == b);
}

std::string ids_str(const std::vector<msa::ScoredDocument>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? "," : "") + std::to_string(v[i].id);
  return s;
}

bool same_topk(const std::vector<msa::ScoredDocument>& a, const std::vector<msa::ScoredDocument>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id || a[i].index != b[i].index) return false;
    if (!same_float(a[i].score, b[i].score) && !(std::isnan(a[i].score) && std::isnan(b[i].score))) return false;
  }
  return true;
}

struct Gpu {
  std::unique_ptr<msa::cuda::CudaResources> res;
  std::unique_ptr<msa::cuda::RoutingScorer> scorer;
  std::unique_ptr<msa::cuda::TopKSelector> topk;
  std::unique_ptr<msa::cuda::DeviceDocSet> docs;
  std::unique_ptr<msa::cuda::PageGatherer> gather;
};

struct ScoreStats {
  int cases = 0;
  int topk_exact_cpu = 0;
  int topk_near_tie = 0;
  int multi_pass = 0;
  double worst_ratio = 0;  // max |gpu - cpu| / tol
};

// Scores one bank with every reduction and compares; k: top-k size.
void check_scores(Gpu& g, const msa::MemoryBank& bank, const Shape& s, int64_t T, uint32_t seed, int64_t k,
                  ScoreStats* stats) {
  const msa::RoutingIndex& index = bank.routing(0);
  const int64_t n_docs = bank.n_documents();
  std::unique_ptr<msa::cuda::DeviceRoutingIndex> dindex;
  if (!ok(msa::cuda::DeviceRoutingIndex::upload(g.res.get(), index, s.kv_heads, s.head_dim, n_docs, &dindex),
          "upload " + fmt_shape(s, T, index.dtype))) {
    return;
  }
  if (!ok(g.docs->set_from_bank(bank), "DeviceDocSet::set_from_bank")) return;
  const std::vector<float> q = make_query(T, s, seed);
  std::vector<float> qabs(q.size());
  for (size_t i = 0; i < q.size(); ++i) qabs[i] = std::fabs(q[i]);
  const msa::RoutingIndex aindex = abs_index(index);
  const routing_fixtures::DocArrays docs = routing_fixtures::doc_arrays(bank);
  const msa::RoutingIndexView view = routing_fixtures::view_of(index, bank, docs);
  msa::RouterQuery cq;
  cq.q = q.data();
  cq.n_tokens = T;
  cq.n_heads = s.heads;
  cq.n_kv_heads = s.kv_heads;
  cq.head_dim = s.head_dim;
  msa::RouterQuery aq = cq;
  aq.q = qabs.data();
  std::vector<float> mag;
  RouterReductions maxred;  // max / max / max
  if (!ok(msa::score_documents_per_head(aq, routing_fixtures::view_of(aindex, bank, docs), maxred, &mag), "CPU magnitude")) return;
  const msa::cuda::DeviceRouterQuery dq = device_query(q, T, s);

  for (HeadReduce h : {HeadReduce::kMean, HeadReduce::kMax}) {
    for (QueryReduce qr : {QueryReduce::kMax, QueryReduce::kMean, QueryReduce::kLast}) {
      for (ChunkReduce cr : {ChunkReduce::kMax, ChunkReduce::kMean}) {
        RouterReductions red;
        red.head = h;
        red.query = qr;
        red.chunk = cr;
        char tag[256];
        std::snprintf(tag, sizeof tag, "%s head %s query %s chunk %s", fmt_shape(s, T, index.dtype).c_str(),
                      hname(h), qname(qr), cname(cr));
        const int64_t used = qr == QueryReduce::kLast ? 1 : T;
        const int64_t rows = h == HeadReduce::kMax ? used * (s.heads / s.kv_heads) : (qr == QueryReduce::kMean ? 1 : used);
        if (rows > 32) ++stats->multi_pass;
        std::vector<float> cpu, gpu;
        if (!ok(msa::score_documents(cq, view, red, &cpu), std::string("CPU ") + tag)) continue;
        if (!ok(g.scorer->score(dq, *dindex, red), std::string("GPU score ") + tag)) continue;
        if (!ok(g.scorer->download(&gpu), std::string("GPU download ") + tag)) continue;
        ++stats->cases;
        if (gpu.size() != cpu.size()) {
          fail(std::string(tag) + ": size mismatch");
          continue;
        }
        std::vector<float> tol(cpu.size());
        bool bad = false;
        for (size_t d = 0; d < cpu.size(); ++d) {
          tol[d] = 1e-5f * mag[d] + 1e-30f;
          const bool cn = std::isnan(cpu[d]), gn = std::isnan(gpu[d]);
          if (cn || gn || std::isinf(cpu[d]) || std::isinf(gpu[d])) {
            if (cn != gn || (!cn && cpu[d] != gpu[d])) bad = true;
          } else {
            const double r = std::fabs(static_cast<double>(gpu[d]) - cpu[d]) / tol[d];
            stats->worst_ratio = std::max(stats->worst_ratio, r);
            if (r > 1.0) bad = true;
          }
          if (bad) {
            char m[400];
            std::snprintf(m, sizeof m, "%s: doc %zu gpu %.9g cpu %.9g tol %.3g", tag, d, gpu[d], cpu[d], tol[d]);
            fail(m);
            break;
          }
        }
        if (bad) continue;
        // Top-k of the device scores == select_top_k of the same scores (exact).
        std::vector<msa::ScoredDocument> gtop, ctop_g, ctop;
        if (!ok(g.topk->select(g.scorer->doc_scores(), n_docs, *g.docs, k, &gtop), std::string("GPU topk ") + tag)) continue;
        if (!ok(msa::select_top_k(gpu, view, k, &ctop_g), "select_top_k")) continue;
        if (!same_topk(gtop, ctop_g)) {
          fail(std::string(tag) + ": top-k of the device scores: gpu " + ids_str(gtop) + " cpu " + ids_str(ctop_g));
          continue;
        }
        // Against the CPU scores: identical unless two neighbours among the first k+1 are within 2 tol.
        std::vector<msa::ScoredDocument> all;
        if (!ok(msa::select_top_k(cpu, view, k + 1, &all), "select_top_k k+1")) continue;
        bool separated = true;
        for (size_t i = 0; i + 1 < all.size(); ++i) {
          const size_t a = static_cast<size_t>(all[i].index), b = static_cast<size_t>(all[i + 1].index);
          const bool tie = same_float(cpu[a], cpu[b]) && same_float(gpu[a], gpu[b]);
          const bool nan_pair = std::isnan(cpu[a]) && std::isnan(cpu[b]);
          if (!tie && !nan_pair && !(std::fabs(static_cast<double>(cpu[a]) - cpu[b]) > 2.0 * (tol[a] + tol[b]))) {
            separated = false;
          }
        }
        if (!separated) {
          ++stats->topk_near_tie;
          continue;
        }
        if (!ok(msa::select_top_k(cpu, view, k, &ctop), "select_top_k")) continue;
        bool same_ids = gtop.size() == ctop.size();
        for (size_t i = 0; same_ids && i < gtop.size(); ++i) same_ids = gtop[i].id == ctop[i].id;
        if (!same_ids) {
          fail(std::string(tag) + ": top-k vs CPU scores: gpu " + ids_str(gtop) + " cpu " + ids_str(ctop));
          continue;
        }
        ++stats->topk_exact_cpu;
      }
    }
  }
}

void test_scores(Gpu& g) {
  const std::vector<Shape> shapes = g_quick ? std::vector<Shape>{{16, 4, 16}, {6, 2, 20}, {3, 1, 7}}
                                            : std::vector<Shape>{{4, 4, 16}, {8, 4, 32}, {16, 4, 16}, {8, 2, 128},
                                                                 {6, 2, 20}, {3, 1, 7}, {32, 8, 128}};
  const std::vector<int64_t> tokens = g_quick ? std::vector<int64_t>{1, 9} : std::vector<int64_t>{1, 2, 5, 9};
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    ScoreStats st;
    uint32_t seed = 1000 + static_cast<uint32_t>(dt) * 100;
    for (const Shape& s : shapes) {
      const bool big = s.heads == 32;
      // > 256 chunks: several scan blocks, a partial last tile.
      auto bank = make_bank(s, dt, big ? 90 : 130, 5, seed++, true);
      if (!bank) continue;
      for (int64_t T : tokens) check_scores(g, *bank, s, T, seed++, 16, &st);
      if (s.heads == 8 && s.kv_heads == 4) check_scores(g, *bank, s, 40, seed++, 5, &st);  // 40 rows collapsed
    }
    std::printf("routing scores %-4s: %d cases (%d with several row passes), worst |gpu-cpu|/tol %.3f, top-k == CPU "
                "%d, near-tie (checked on device scores only) %d\n",
                msa::page_dtype_name(dt), st.cases, st.multi_pass, st.worst_ratio, st.topk_exact_cpu,
                st.topk_near_tie);
  }
}

// Crafted score vectors: ties, NaN, +-0, +-inf, tombstones, k beyond the live count.
void test_topk_crafted(Gpu& g) {
  int cases = 0;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::mt19937 rng(77);
  for (int64_t n : {1, 2, 7, 100, 1000, 5000}) {
    auto bank = make_bank({1, 1, 2}, PageDType::kF32, n, 1, static_cast<uint32_t>(n), n > 2);
    if (!bank) return;
    if (!ok(g.docs->set_from_bank(*bank), "DeviceDocSet::set_from_bank")) return;
    const routing_fixtures::DocArrays docs = routing_fixtures::doc_arrays(*bank);
    const msa::RoutingIndexView view = routing_fixtures::view_of(bank->routing(0), *bank, docs);
    msa::cuda::DeviceBuffer d;
    if (!ok(d.reserve(static_cast<size_t>(n) * 4), "reserve")) return;
    for (int variant = 0; variant < 4; ++variant) {
      std::vector<float> scores(static_cast<size_t>(n));
      const float pool[] = {0.5f, 0.25f, -0.0f, 0.0f, nan, -inf, inf, -1e30f, 1e-40f, -1e-40f};
      for (float& x : scores) {
        if (variant == 0) x = pool[rng() % 10];                                      // heavy ties + specials
        if (variant == 1) x = static_cast<float>(rng() % 5) * 0.125f;                // ties only
        if (variant == 2) x = std::normal_distribution<float>(0.0f, 1.0f)(rng);      // distinct
        if (variant == 3) x = nan;                                                   // all NaN: by id
      }
      if (cudaMemcpy(d.data(), scores.data(), scores.size() * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
          cudaDeviceSynchronize() != cudaSuccess) {
        fail("cudaMemcpy scores");
        return;
      }
      for (int64_t k : {int64_t{1}, int64_t{3}, int64_t{16}, n, n + 5}) {
        std::vector<msa::ScoredDocument> gt, ct;
        if (!ok(g.topk->select(d.as<float>(), n, *g.docs, k, &gt), "GPU topk crafted")) continue;
        if (!ok(msa::select_top_k(scores, view, k, &ct), "select_top_k crafted")) continue;
        ++cases;
        if (!same_topk(gt, ct)) {
          fail("crafted top-k n=" + std::to_string(n) + " variant " + std::to_string(variant) + " k=" +
               std::to_string(k) + ": gpu " + ids_str(gt) + " cpu " + ids_str(ct));
        }
      }
    }
  }
  std::printf("top-k crafted (ties, NaN, +-0, +-inf, tombstones, k > live): %d cases\n", cases);
}

// NaN scales / keys in some chunks; incremental append == one upload (bitwise).
void test_nan_and_append(Gpu& g) {
  int cases = 0;
  const Shape s{8, 2, 32};
  for (PageDType dt : {PageDType::kBF16, PageDType::kInt8}) {
    auto bank = make_bank(s, dt, 60, 4, 4242 + static_cast<uint32_t>(dt), false);
    if (!bank) return;
    msa::RoutingIndex idx = bank->routing(0);
    const int64_t n_docs = bank->n_documents();
    const int64_t width = s.kv_heads * s.head_dim;
    const routing_fixtures::DocArrays docs = routing_fixtures::doc_arrays(*bank);
    for (int64_t c = 3; c < idx.n_chunks(); c += 17) {
      if (dt == PageDType::kInt8) {
        idx.scales[static_cast<size_t>(c * s.kv_heads + 1)] = std::numeric_limits<float>::quiet_NaN();
      } else {
        const uint16_t qnan = 0x7fc0;
        std::memcpy(idx.packed.data() + static_cast<size_t>(c * width + 5) * 2, &qnan, 2);
      }
    }
    std::unique_ptr<msa::cuda::DeviceRoutingIndex> full, inc;
    if (!ok(msa::cuda::DeviceRoutingIndex::upload(g.res.get(), idx, s.kv_heads, s.head_dim, n_docs, &full), "upload")) return;
    // Incremental: an empty index with capacity 1 (forces regrowth), three appends (one from device memory).
    if (!ok(msa::cuda::DeviceRoutingIndex::create(g.res.get(), dt, s.kv_heads, s.head_dim, 1, &inc), "create")) return;
    const int64_t nc = idx.n_chunks();
    const int64_t cut1 = nc / 3, cut2 = 2 * nc / 3;
    const size_t rb = msa::page_row_bytes(dt, width);
    const int64_t ns = msa::page_row_scales(dt, s.kv_heads);
    const float* sc = idx.scales.empty() ? nullptr : idx.scales.data();
    int32_t max_doc1 = 0;
    for (int64_t c = 0; c < cut1; ++c) max_doc1 = std::max(max_doc1, idx.chunk_doc[static_cast<size_t>(c)]);
    if (!ok(inc->append(idx.packed.data(), sc, idx.chunk_doc.data(), cut1, max_doc1 + 1), "append 1")) return;
    msa::cuda::DeviceBuffer drows, dsc;
    if (!ok(drows.reserve(static_cast<size_t>(cut2 - cut1) * rb + 1), "reserve") ||
        !ok(dsc.reserve(static_cast<size_t>((cut2 - cut1) * ns) * 4 + 4), "reserve")) {
      return;
    }
    bool cp = cudaMemcpy(drows.data(), idx.packed.data() + static_cast<size_t>(cut1) * rb,
                         static_cast<size_t>(cut2 - cut1) * rb, cudaMemcpyHostToDevice) == cudaSuccess;
    if (sc) {
      cp = cp && cudaMemcpy(dsc.data(), sc + cut1 * ns, static_cast<size_t>((cut2 - cut1) * ns) * 4,
                            cudaMemcpyHostToDevice) == cudaSuccess;
    }
    cp = cp && cudaDeviceSynchronize() == cudaSuccess;  // the legacy-stream copies vs the non-blocking stream
    if (!cp) {
      fail("cudaMemcpy append rows");
      return;
    }
    if (!ok(inc->append_device(drows.data(), sc ? dsc.as<float>() : nullptr, idx.chunk_doc.data() + cut1, cut2 - cut1,
                               n_docs),
            "append_device")) {
      return;
    }
    if (!ok(inc->append(idx.packed.data() + static_cast<size_t>(cut2) * rb, sc ? sc + cut2 * ns : nullptr,
                        idx.chunk_doc.data() + cut2, nc - cut2, n_docs),
            "append 3")) {
      return;
    }
    for (int64_t T : {1, 3}) {
      const std::vector<float> q = make_query(T, s, 99 + static_cast<uint32_t>(T));
      msa::RouterQuery cq{q.data(), T, s.heads, s.kv_heads, s.head_dim};
      const msa::cuda::DeviceRouterQuery dq = device_query(q, T, s);
      for (HeadReduce h : {HeadReduce::kMean, HeadReduce::kMax}) {
        for (ChunkReduce cr : {ChunkReduce::kMax, ChunkReduce::kMean}) {
          RouterReductions red;
          red.head = h;
          red.chunk = cr;
          std::vector<float> cpu, a, b;
          if (!ok(msa::score_documents(cq, routing_fixtures::view_of(idx, *bank, docs), red, &cpu), "CPU NaN")) continue;
          if (!ok(g.scorer->score(dq, *full, red), "GPU full") || !ok(g.scorer->download(&a), "download")) continue;
          if (!ok(g.scorer->score(dq, *inc, red), "GPU inc") || !ok(g.scorer->download(&b), "download")) continue;
          ++cases;
          int n_nan = 0;
          for (size_t d = 0; d < cpu.size(); ++d) {
            n_nan += std::isnan(cpu[d]) ? 1 : 0;
            if (std::isnan(cpu[d]) != std::isnan(a[d])) {
              fail(std::string("NaN propagation ") + msa::page_dtype_name(dt) + " head " + hname(h) + " doc " +
                   std::to_string(d) + ": cpu " + std::to_string(cpu[d]) + " gpu " + std::to_string(a[d]));
              break;
            }
            if (!same_float(a[d], b[d]) && !(std::isnan(a[d]) && std::isnan(b[d]))) {
              fail(std::string("append != upload ") + msa::page_dtype_name(dt) + " doc " + std::to_string(d));
              break;
            }
          }
          if (n_nan == 0 || n_nan == static_cast<int>(cpu.size())) {
            fail(std::string("NaN test is not discriminating: ") + std::to_string(n_nan) + " NaN documents");
          }
        }
      }
    }
  }
  std::printf("NaN propagation + incremental append (bf16, int8): %d cases\n", cases);
}

void test_gather(Gpu& g) {
  int cases = 0;
  size_t bytes = 0;
  const Shape shapes[] = {{8, 2, 32}, {32, 8, 128}, {3, 1, 7}};
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    for (const Shape& s : shapes) {
      auto bank = make_bank(s, dt, 40, 5, 555 + static_cast<uint32_t>(dt), false);
      if (!bank) return;
      const int64_t width = s.kv_heads * s.head_dim;
      const msa::ContentPages& cp = bank->content(0);
      msa::cuda::HostPages hp = msa::cuda::host_pages_of(cp, s.kv_heads, s.head_dim);
      std::unique_ptr<msa::cuda::PinnedPages> pinned;
      if (!ok(msa::cuda::PinnedPages::create(hp, &pinned), "PinnedPages::create")) return;
      std::mt19937 rng(9);
      for (int round = 0; round < 4; ++round) {
        const bool use_pinned = round % 2 == 1;
        const PageDType out = round < 2 ? PageDType::kF32 : PageDType::kBF16;
        std::vector<msa::cuda::PageSpan> spans;
        const int n_sel = round == 3 ? 0 : 1 + static_cast<int>(rng() % 16);
        for (int i = 0; i < n_sel; ++i) {
          const auto& rec = bank->document(static_cast<int64_t>(rng() % static_cast<uint32_t>(bank->n_documents())));
          spans.push_back({rec.chunk_begin, rec.n_chunks});
        }
        if (!ok(g.gather->gather(use_pinned ? pinned->view() : hp, spans, out), "gather")) continue;
        std::vector<uint8_t> gk, gv;
        if (!ok(g.gather->download(&gk, &gv), "gather download")) continue;
        ++cases;
        bytes += g.gather->staged_bytes();
        // Host reference: decode_rows of each span, in order.
        std::vector<float> rk, rv;
        for (const auto& sp : spans) {
          std::vector<float> k(static_cast<size_t>(sp.n_chunks * width)), v(k.size());
          if (dt == PageDType::kF32) {
            std::copy(cp.k.begin() + sp.chunk_begin * width, cp.k.begin() + (sp.chunk_begin + sp.n_chunks) * width, k.begin());
            std::copy(cp.v.begin() + sp.chunk_begin * width, cp.v.begin() + (sp.chunk_begin + sp.n_chunks) * width, v.begin());
          } else {
            const size_t rb = msa::page_row_bytes(dt, width);
            const float* ks = dt == PageDType::kInt8 ? cp.k_scales.data() + sp.chunk_begin * s.kv_heads : nullptr;
            const float* vs = dt == PageDType::kInt8 ? cp.v_scales.data() + sp.chunk_begin * s.kv_heads : nullptr;
            msa::decode_rows(dt, cp.qk.data() + static_cast<size_t>(sp.chunk_begin) * rb, ks, sp.n_chunks, s.kv_heads,
                             s.head_dim, k.data());
            msa::decode_rows(dt, cp.qv.data() + static_cast<size_t>(sp.chunk_begin) * rb, vs, sp.n_chunks, s.kv_heads,
                             s.head_dim, v.data());
          }
          rk.insert(rk.end(), k.begin(), k.end());
          rv.insert(rv.end(), v.begin(), v.end());
        }
        std::vector<uint8_t> ek, ev;
        if (out == PageDType::kF32) {
          ek.resize(rk.size() * 4);
          ev.resize(rv.size() * 4);
          if (!rk.empty()) {
            std::memcpy(ek.data(), rk.data(), ek.size());
            std::memcpy(ev.data(), rv.data(), ev.size());
          }
        } else {
          for (float x : rk) {
            const uint16_t h = msa::f32_to_bf16(x);
            ek.push_back(static_cast<uint8_t>(h & 0xff));
            ek.push_back(static_cast<uint8_t>(h >> 8));
          }
          for (float x : rv) {
            const uint16_t h = msa::f32_to_bf16(x);
            ev.push_back(static_cast<uint8_t>(h & 0xff));
            ev.push_back(static_cast<uint8_t>(h >> 8));
          }
        }
        if (gk != ek || gv != ev || g.gather->n_rows() * width * static_cast<int64_t>(msa::page_elem_bytes(out)) !=
                                        static_cast<int64_t>(ek.size())) {
          fail(std::string("gather ") + msa::page_dtype_name(dt) + " -> " + msa::page_dtype_name(out) + " " +
               fmt_shape(s, 0, dt) + (use_pinned ? " pinned" : " pageable") + ": device pages differ from decode_rows");
        }
      }
    }
  }
  std::printf("page gather + decode (f32/bf16/int8 pages -> f32/bf16, pageable and pinned sources): %d cases, "
              "%zu staged bytes, bit-exact\n",
              cases, bytes);
}

void expect_invalid(const Status& st, const char* what, int* n) {
  ++*n;
  if (st.code() != msa::StatusCode::kInvalidArgument) {
    fail(std::string(what) + ": expected kInvalidArgument, got " + std::to_string(static_cast<int>(st.code())) + " " +
         st.message());
  }
}

void test_errors(Gpu& g) {
  int n = 0;
  const Shape s{4, 2, 16};
  auto bank = make_bank(s, PageDType::kInt8, 10, 2, 3, false);
  if (!bank) return;
  std::unique_ptr<msa::cuda::DeviceRoutingIndex> idx;
  if (!ok(msa::cuda::DeviceRoutingIndex::upload(g.res.get(), bank->routing(0), 2, 16, 10, &idx), "upload")) return;
  std::unique_ptr<msa::cuda::DeviceRoutingIndex> bad;
  expect_invalid(msa::cuda::DeviceRoutingIndex::upload(g.res.get(), bank->routing(0), 2, 8, 10, &bad), "wrong head_dim", &n);
  expect_invalid(msa::cuda::DeviceRoutingIndex::upload(g.res.get(), bank->routing(0), 2, 16, 3, &bad), "chunk_doc >= n_documents", &n);
  expect_invalid(msa::cuda::DeviceRoutingIndex::create(g.res.get(), PageDType::kInt8, 0, 16, 1, &bad), "zero kv heads", &n);
  const int32_t doc = 20;
  std::vector<uint8_t> row(32);
  std::vector<float> sc(2);
  expect_invalid(idx->append(row.data(), sc.data(), &doc, 1, 10), "append chunk_doc out of range", &n);
  expect_invalid(idx->append(row.data(), nullptr, &doc, 1, 30), "append int8 without scales", &n);
  std::vector<float> q(4 * 16);
  msa::cuda::DeviceRouterQuery dq;
  dq.q = q.data();
  dq.n_tokens = 1;
  dq.n_heads = 4;
  dq.n_kv_heads = 2;
  dq.head_dim = 8;
  RouterReductions red;
  expect_invalid(g.scorer->score(dq, *idx, red), "query shape != index", &n);
  dq.head_dim = 16;
  dq.n_heads = 3;
  expect_invalid(g.scorer->score(dq, *idx, red), "n_heads not a multiple", &n);
  dq.n_heads = 4;
  dq.n_tokens = 0;
  expect_invalid(g.scorer->score(dq, *idx, red), "no tokens", &n);
  dq.n_tokens = 1;
  red.query = static_cast<QueryReduce>(9);
  expect_invalid(g.scorer->score(dq, *idx, red), "unknown reduction", &n);
  red.query = QueryReduce::kMax;
  if (!ok(g.scorer->score(dq, *idx, red), "valid score")) return;
  if (!ok(g.docs->set_from_bank(*bank), "docs")) return;
  std::vector<msa::ScoredDocument> out;
  expect_invalid(g.topk->select(g.scorer->doc_scores(), 10, *g.docs, 0, &out), "k = 0", &n);
  expect_invalid(g.topk->select(g.scorer->doc_scores(), 9, *g.docs, 2, &out), "n != documents", &n);
  msa::cuda::HostPages hp = msa::cuda::host_pages_of(bank->content(0), 2, 16);
  expect_invalid(g.gather->gather(hp, {{bank->document(9).chunk_begin, 99}}, PageDType::kF32), "span outside pages", &n);
  expect_invalid(g.gather->gather(hp, {}, PageDType::kInt8), "int8 output", &n);
  std::printf("argument errors -> kInvalidArgument: %d cases\n", n);
}

}  // namespace

int main(int argc, char** argv) {
  g_quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int n_dev = msa::cuda::device_count();
  if (n_dev == 0) {
    std::printf("SKIP: no CUDA device (test_routing compiled, not run)\n");
    return 77;
  }
  std::printf("device 0: %s\n", msa::cuda::device_name(0));
  Gpu g;
  if (!ok(msa::cuda::CudaResources::create(0, nullptr, &g.res), "CudaResources::create") ||
      !ok(msa::cuda::RoutingScorer::create(g.res.get(), &g.scorer), "RoutingScorer::create") ||
      !ok(msa::cuda::TopKSelector::create(g.res.get(), &g.topk), "TopKSelector::create") ||
      !ok(msa::cuda::DeviceDocSet::create(g.res.get(), &g.docs), "DeviceDocSet::create") ||
      !ok(msa::cuda::PageGatherer::create(g.res.get(), &g.gather), "PageGatherer::create")) {
    return 1;
  }
  test_scores(g);
  test_topk_crafted(g);
  test_nan_and_append(g);
  test_gather(g);
  test_errors(g);
  if (g_failures > 0) {
    std::printf("test_routing: %d FAILURES\n", g_failures);
    return 1;
  }
  std::printf("test_routing: all passed\n");
  return 0;
}
