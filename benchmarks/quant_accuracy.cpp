// Accuracy of the quantised page dtypes (issue 5: "int8 becomes the default only if top-k agreement >= 99%").
// An end-to-end measurement driver, not a timing benchmark; its table goes into docs/PERFORMANCE.md.
//
//   quant_accuracy [--queries N] [--docs N] [--model DIR --model-docs N --model-queries N] [--seed S]
//
// Part 1 — random MSA-4B-shaped routing keys (32 query heads, 8 kv heads, head_dim 128, INFONCE rule: keys and
//   queries L2-normalised per head, head mean / query max / chunk max): documents are topic vectors, chunks are
//   noisy copies, queries are noisy copies of a random document's topic. Scores use the library router on a
//   RoutingIndex held in f32, bf16 and int8 (page_codec.h); reported: mean top-16 overlap |A∩B|/16 and the
//   fraction of queries whose top-16 sets are identical, int8 vs bf16 and bf16 vs f32.
// Part 2 — attention over the selected pages: for each query, the top-16 documents' pooled K̄/V̄ (random, unit
//   variance) attended by 32 query heads (GQA 4:1); the relative L2 error of the output with bf16 / int8 pages
//   against f32 pages (median, p99, max).
// Part 3 (with --model) — the real encoder on the given checkpoint: deterministic biography records are
//   encoded once and added to three banks (f32, bf16, int8); for generated questions, msa routing top-k of
//   every router layer (Session::route) and the first-step logits (Session::generate, one token) are compared.
// Bytes per memory token (routing + content, all router layers) are printed for both shapes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/encoder.h"
#include "engine/session.h"
#include "memory/memory_bank.h"
#include "memory/page_codec.h"
#include "backend/cpu/routing_scan.h"
#include "backend/routing_types.h"
#include "model/model.h"

namespace {

using msa::PageDType;

struct Args {
  int64_t queries = 1000;
  int64_t docs = 4096;
  std::string model;
  int64_t model_docs = 2000;
  int64_t model_queries = 1000;
  uint64_t seed = 2026;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: quant_accuracy [--queries N] [--docs N] [--model DIR --model-docs N --model-queries N] "
               "[--seed S]\n");
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (k == "--queries") a.queries = std::atoll(v);
    else if (k == "--docs") a.docs = std::atoll(v);
    else if (k == "--model") a.model = v;
    else if (k == "--model-docs") a.model_docs = std::atoll(v);
    else if (k == "--model-queries") a.model_queries = std::atoll(v);
    else if (k == "--seed") a.seed = std::strtoull(v, nullptr, 10);
    else usage();
  }
  if (a.queries < 1 || a.docs < 16 || a.model_docs < 16 || a.model_queries < 1) usage();
  return a;
}

// Top-k indices by (score desc, index asc).
std::vector<int64_t> top_k(const std::vector<float>& s, int64_t k) {
  std::vector<int64_t> idx(s.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  k = std::min<int64_t>(k, static_cast<int64_t>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    const float x = s[static_cast<size_t>(a)], y = s[static_cast<size_t>(b)];
    return x != y ? x > y : a < b;
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

int64_t overlap(std::vector<int64_t> a, std::vector<int64_t> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::vector<int64_t> c;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(c));
  return static_cast<int64_t>(c.size());
}

struct Agreement {
  double overlap_sum = 0;
  int64_t identical = 0;
  int64_t n = 0;
  int64_t k = 16;
  void add(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    const int64_t o = overlap(a, b);
    overlap_sum += static_cast<double>(o) / static_cast<double>(std::max<size_t>(1, a.size()));
    identical += o == static_cast<int64_t>(a.size()) ? 1 : 0;
    ++n;
  }
  double mean() const { return n ? 100.0 * overlap_sum / static_cast<double>(n) : 0; }
  double exact() const { return n ? 100.0 * static_cast<double>(identical) / static_cast<double>(n) : 0; }
};

struct ErrorStats {
  std::vector<double> v;
  double pct(double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
    return v[i];
  }
};

msa::RoutingIndex make_index(PageDType t, const std::vector<float>& keys, const std::vector<int32_t>& chunk_doc,
                             int64_t hkv, int64_t d) {
  msa::RoutingIndex ix;
  ix.dtype = t;
  ix.chunk_doc = chunk_doc;
  const int64_t n = static_cast<int64_t>(chunk_doc.size());
  if (t == PageDType::kF32) {
    ix.keys = keys;
  } else {
    ix.packed.resize(static_cast<size_t>(n) * msa::page_row_bytes(t, hkv * d));
    ix.scales.resize(static_cast<size_t>(n * msa::page_row_scales(t, hkv)));
    msa::encode_rows(t, keys.data(), n, hkv, d, ix.packed.data(), ix.scales.empty() ? nullptr : ix.scales.data());
  }
  return ix;
}

// What the CPU routing scan reads: a view of the index's arrays (n_docs documents; scoring needs no ids).
msa::RoutingIndexView view_of(const msa::RoutingIndex& ix, int64_t hkv, int64_t d, int64_t n_docs) {
  msa::RoutingIndexView v;
  v.dtype = ix.dtype;
  v.n_chunks = ix.n_chunks();
  v.n_kv_heads = hkv;
  v.head_dim = d;
  v.keys = ix.keys.empty() ? nullptr : ix.keys.data();
  v.packed = ix.packed.empty() ? nullptr : ix.packed.data();
  v.scales = ix.scales.empty() ? nullptr : ix.scales.data();
  v.chunk_doc = ix.chunk_doc.empty() ? nullptr : ix.chunk_doc.data();
  v.n_documents = n_docs;
  return v;
}

std::vector<float> roundtrip(PageDType t, const std::vector<float>& x, int64_t rows, int64_t hkv, int64_t d) {
  if (t == PageDType::kF32) return x;
  std::vector<uint8_t> packed(static_cast<size_t>(rows) * msa::page_row_bytes(t, hkv * d));
  std::vector<float> scales(static_cast<size_t>(rows * msa::page_row_scales(t, hkv)));
  std::vector<float> out(x.size());
  msa::encode_rows(t, x.data(), rows, hkv, d, packed.data(), scales.empty() ? nullptr : scales.data());
  msa::decode_rows(t, packed.data(), scales.data(), rows, hkv, d, out.data());
  return out;
}

// o[h, :] = softmax(q_h · K_g / sqrt(d)) V_g over `rows` rows, g = h / (H / Hkv).
std::vector<double> attend(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                           int64_t rows, int64_t H, int64_t hkv, int64_t d) {
  std::vector<double> o(static_cast<size_t>(H * d), 0.0), w(static_cast<size_t>(rows));
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / hkv);
    double mx = -1e300;
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t i = 0; i < d; ++i) s += static_cast<double>(q[static_cast<size_t>(h * d + i)]) * k[static_cast<size_t>((r * hkv + g) * d + i)];
      w[static_cast<size_t>(r)] = s * scale;
      mx = std::max(mx, s * scale);
    }
    double z = 0;
    for (double& x : w) z += (x = std::exp(x - mx));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < d; ++i) {
        o[static_cast<size_t>(h * d + i)] += w[static_cast<size_t>(r)] / z * v[static_cast<size_t>((r * hkv + g) * d + i)];
      }
    }
  }
  return o;
}

double rel_l2(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : 0;
}

void print_bytes_per_token(const char* what, int64_t router_layers, int64_t hkv, int64_t d, int64_t pool) {
  std::printf("\n%s: bytes per memory token (routing + K̄ + V̄ pages, %lld router layers, pooling %lld)\n", what,
              static_cast<long long>(router_layers), static_cast<long long>(pool));
  std::printf("| dtype | routing B/token | content B/token | total B/token |\n|---|---|---|---|\n");
  for (PageDType t : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    const double row = static_cast<double>(msa::page_row_bytes(t, hkv * d)) +
                       4.0 * static_cast<double>(msa::page_row_scales(t, hkv));
    const double per_tok = row * static_cast<double>(router_layers) / static_cast<double>(pool);
    std::printf("| %s | %.1f | %.1f | %.1f |\n", msa::page_dtype_name(t), per_tok, 2 * per_tok, 3 * per_tok);
  }
}

int synthetic(const Args& a) {
  const int64_t H = 32, hkv = 8, d = 128, width = hkv * d, T = 12, K = 16;
  std::mt19937_64 rng(a.seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> nchunks(2, 32);
  // Documents: a topic per document, chunks = topic + noise (routing keys) — normalised per head (INFONCE).
  std::vector<float> topics(static_cast<size_t>(a.docs * width));
  for (float& x : topics) x = nd(rng);
  std::vector<float> keys;
  std::vector<int32_t> chunk_doc;
  std::vector<int64_t> doc_begin, doc_len;
  for (int64_t doc = 0; doc < a.docs; ++doc) {
    const int n = nchunks(rng);
    doc_begin.push_back(static_cast<int64_t>(chunk_doc.size()));
    doc_len.push_back(n);
    for (int c = 0; c < n; ++c) {
      for (int64_t i = 0; i < width; ++i) keys.push_back(topics[static_cast<size_t>(doc * width + i)] + 1.5f * nd(rng));
      chunk_doc.push_back(static_cast<int32_t>(doc));
    }
  }
  const int64_t n_chunks = static_cast<int64_t>(chunk_doc.size());
  msa::l2_normalize_heads(keys.data(), n_chunks * hkv, d);
  const msa::RoutingIndex f32 = make_index(PageDType::kF32, keys, chunk_doc, hkv, d);
  const msa::RoutingIndex bf16 = make_index(PageDType::kBF16, keys, chunk_doc, hkv, d);
  const msa::RoutingIndex i8 = make_index(PageDType::kInt8, keys, chunk_doc, hkv, d);
  const msa::RoutingIndexView f32_view = view_of(f32, hkv, d, a.docs), bf16_view = view_of(bf16, hkv, d, a.docs),
                              i8_view = view_of(i8, hkv, d, a.docs);

  msa::RouterReductions red;
  red.head = msa::HeadReduce::kMean;
  red.query = msa::QueryReduce::kMax;
  red.chunk = msa::ChunkReduce::kMax;
  Agreement i8_vs_bf16, bf16_vs_f32, i8_vs_f32;
  int64_t found[3] = {0, 0, 0};  // queries whose target document is in the top-k (f32, bf16, int8)
  ErrorStats att_bf16, att_i8;
  std::uniform_int_distribution<int64_t> pick(0, a.docs - 1);
  std::vector<float> q(static_cast<size_t>(T * H * d));
  for (int64_t qi = 0; qi < a.queries; ++qi) {
    const int64_t target = pick(rng);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / hkv);
        for (int64_t i = 0; i < d; ++i) {
          q[static_cast<size_t>((t * H + h) * d + i)] = topics[static_cast<size_t>(target * width + g * d + i)] + 3.0f * nd(rng);
        }
      }
    }
    msa::l2_normalize_heads(q.data(), T * H, d);
    msa::RouterQuery rq;
    rq.q = q.data();
    rq.n_tokens = T;
    rq.n_heads = H;
    rq.n_kv_heads = hkv;
    rq.head_dim = d;
    std::vector<float> s32, s16, s8;
    if (!msa::score_documents(rq, f32_view, red, &s32).ok() || !msa::score_documents(rq, bf16_view, red, &s16).ok() ||
        !msa::score_documents(rq, i8_view, red, &s8).ok()) {
      std::fprintf(stderr, "score_documents failed\n");
      return 1;
    }
    const std::vector<int64_t> t32 = top_k(s32, K), t16 = top_k(s16, K), t8 = top_k(s8, K);
    found[0] += std::count(t32.begin(), t32.end(), target);
    found[1] += std::count(t16.begin(), t16.end(), target);
    found[2] += std::count(t8.begin(), t8.end(), target);
    i8_vs_bf16.add(t16, t8);
    bf16_vs_f32.add(t32, t16);
    i8_vs_f32.add(t32, t8);

    // Attention over the f32 selection's content pages (random K̄/V̄, unit variance), one query token.
    int64_t rows = 0;
    for (int64_t doc : t32) rows += doc_len[static_cast<size_t>(doc)];
    std::vector<float> kp(static_cast<size_t>(rows * width)), vp(kp.size()), q1(static_cast<size_t>(H * d));
    for (float& x : kp) x = nd(rng);
    for (float& x : vp) x = nd(rng);
    for (int64_t h = 0; h < H; ++h) {  // a query aligned with a few rows, so attention is not flat
      const int64_t g = h / (H / hkv);
      const int64_t r = static_cast<int64_t>(rng() % static_cast<uint64_t>(rows));
      for (int64_t i = 0; i < d; ++i) q1[static_cast<size_t>(h * d + i)] = 2.0f * kp[static_cast<size_t>((r * hkv + g) * d + i)] + nd(rng);
    }
    const std::vector<double> ref = attend(q1, kp, vp, rows, H, hkv, d);
    att_bf16.v.push_back(rel_l2(attend(q1, roundtrip(PageDType::kBF16, kp, rows, hkv, d),
                                       roundtrip(PageDType::kBF16, vp, rows, hkv, d), rows, H, hkv, d), ref));
    att_i8.v.push_back(rel_l2(attend(q1, roundtrip(PageDType::kInt8, kp, rows, hkv, d),
                                     roundtrip(PageDType::kInt8, vp, rows, hkv, d), rows, H, hkv, d), ref));
  }
  std::printf("Part 1: random MSA-4B-shaped routing keys (%lld documents, %lld chunks, %lld queries, top-%lld)\n",
              static_cast<long long>(a.docs), static_cast<long long>(n_chunks), static_cast<long long>(a.queries),
              static_cast<long long>(K));
  std::printf("| pair | mean top-%lld overlap | identical top-%lld sets |\n|---|---|---|\n", static_cast<long long>(K),
              static_cast<long long>(K));
  std::printf("| int8 vs bf16 | %.2f%% | %.1f%% |\n", i8_vs_bf16.mean(), i8_vs_bf16.exact());
  std::printf("| bf16 vs f32 | %.2f%% | %.1f%% |\n", bf16_vs_f32.mean(), bf16_vs_f32.exact());
  std::printf("| int8 vs f32 | %.2f%% | %.1f%% |\n", i8_vs_f32.mean(), i8_vs_f32.exact());
  std::printf("\nthe query's source document in the top-%lld: f32 %lld, bf16 %lld, int8 %lld of %lld\n",
              static_cast<long long>(K), static_cast<long long>(found[0]), static_cast<long long>(found[1]),
              static_cast<long long>(found[2]), static_cast<long long>(a.queries));
  std::printf("\nPart 2: attention output over the selected pages, relative L2 error vs f32 pages\n");
  std::printf("| pages | median | p99 | max |\n|---|---|---|---|\n");
  std::printf("| bf16 | %.2e | %.2e | %.2e |\n", att_bf16.pct(0.5), att_bf16.pct(0.99), att_bf16.pct(1.0));
  std::printf("| int8 | %.2e | %.2e | %.2e |\n", att_i8.pct(0.5), att_i8.pct(0.99), att_i8.pct(1.0));
  print_bytes_per_token("MSA-4B shape", 18, hkv, d, 64);
  return 0;
}

std::string record(std::mt19937_64& rng, int64_t i) {
  static const char* first[] = {"Alice", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Goran", "Hana", "Ivan", "Jun"};
  static const char* city[] = {"Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Lima", "Hanoi", "Oslo"};
  static const char* job[] = {"marine biologist", "violin maker", "bridge engineer", "pastry chef", "beekeeper"};
  auto p = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  return "Record " + std::to_string(i) + ": " + first[p(10)] + " was born in " + std::to_string(1940 + p(60)) + " in " +
         city[p(8)] + " and works as a " + job[p(5)] + " in " + city[p(8)] + ". Badge number " +
         std::to_string(10000 + p(89999)) + ".";
}

int with_model(const Args& a) {
  std::unique_ptr<msa::Model> model;
  msa::Status s = msa::Model::load(a.model, msa::ModelLoadOptions(), &model);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return 1;
  }
  const msa::ModelConfig& c = model->config();
  std::mt19937_64 rng(a.seed);
  std::vector<std::string> texts;
  for (int64_t i = 0; i < a.model_docs; ++i) texts.push_back(record(rng, i));
  std::vector<std::string_view> views(texts.begin(), texts.end());
  std::vector<uint64_t> ids(texts.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  msa::Encoder enc(*model);
  msa::EncodedDocuments encoded;
  s = enc.encode(views, ids, &encoded);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return 1;
  }
  const PageDType types[3] = {PageDType::kF32, PageDType::kBF16, PageDType::kInt8};
  std::unique_ptr<msa::MemoryBank> banks[3];
  for (int t = 0; t < 3; ++t) {
    s = msa::create_memory_bank(*model, nullptr, &banks[t], types[t]);
    if (s.ok()) s = banks[t]->add(encoded.records, encoded.pooled);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.to_string().c_str());
      return 1;
    }
  }
  static const char* forms[] = {"Where was Record %lld born?", "What does the person of Record %lld work as?",
                                "What is the badge number in Record %lld?", "Who is described in Record %lld?"};
  Agreement i8_vs_bf16, bf16_vs_f32;
  ErrorStats logit_bf16, logit_i8;
  int64_t argmax_same_i8 = 0, n_logits = 0;
  msa::Session s32(*model, banks[0].get()), s16(*model, banks[1].get()), s8(*model, banks[2].get());
  msa::RouteOptions ro;
  ro.doc_top_k = 16;
  ro.record_scores = false;
  for (int64_t qi = 0; qi < a.model_queries; ++qi) {
    char buf[160];
    std::snprintf(buf, sizeof buf, forms[qi % 4], static_cast<long long>(rng() % static_cast<uint64_t>(a.model_docs)));
    msa::RouteResult r32, r16, r8;
    if (!s32.route(buf, ro, &r32).ok() || !s16.route(buf, ro, &r16).ok() || !s8.route(buf, ro, &r8).ok()) {
      std::fprintf(stderr, "route failed\n");
      return 1;
    }
    for (size_t l = 0; l < r32.layers.size(); ++l) {
      auto idx = [](const msa::LayerRouting& lr) {
        std::vector<int64_t> v;
        for (const msa::ScoredDocument& d : lr.top) v.push_back(d.index);
        return v;
      };
      i8_vs_bf16.add(idx(r16.layers[l]), idx(r8.layers[l]));
      bf16_vs_f32.add(idx(r32.layers[l]), idx(r16.layers[l]));
    }
    if (qi < 200) {  // first-step logits through the whole stage 2 (routing + sparse attention)
      msa::GenerateOptions go;
      go.mode = msa::GenerateMode::kPlain;
      go.doc_top_k = 16;
      go.max_new_tokens = 1;
      go.sampling.use_model_defaults = false;
      go.record_first_logits = true;
      msa::GenerateResult g32, g16, g8;
      if (!s32.generate(buf, go, &g32).ok() || !s16.generate(buf, go, &g16).ok() || !s8.generate(buf, go, &g8).ok()) {
        std::fprintf(stderr, "generate failed\n");
        return 1;
      }
      auto rel = [&](const std::vector<float>& x) {
        double num = 0, den = 0;
        for (size_t i = 0; i < x.size(); ++i) {
          num += (static_cast<double>(x[i]) - g32.first_logits[i]) * (static_cast<double>(x[i]) - g32.first_logits[i]);
          den += static_cast<double>(g32.first_logits[i]) * g32.first_logits[i];
        }
        return std::sqrt(num / den);
      };
      logit_bf16.v.push_back(rel(g16.first_logits));
      logit_i8.v.push_back(rel(g8.first_logits));
      argmax_same_i8 += g8.generated_ids == g32.generated_ids ? 1 : 0;
      ++n_logits;
    }
  }
  const msa::MemoryStats st = banks[2]->stats();
  std::printf("\nPart 3: %s (%lld documents, %lld tokens, %lld router layers), %lld questions x %zu router layers\n",
              a.model.c_str(), static_cast<long long>(st.n_documents), static_cast<long long>(st.n_tokens),
              static_cast<long long>(c.msa.router_layers.size()), static_cast<long long>(a.model_queries),
              c.msa.router_layers.size());
  std::printf("| pair | mean top-16 overlap | identical top-16 sets |\n|---|---|---|\n");
  std::printf("| int8 vs bf16 | %.2f%% | %.1f%% |\n", i8_vs_bf16.mean(), i8_vs_bf16.exact());
  std::printf("| bf16 vs f32 | %.2f%% | %.1f%% |\n", bf16_vs_f32.mean(), bf16_vs_f32.exact());
  std::printf("\nfirst-step logits vs f32 pages (%lld questions): relative L2 median / max: bf16 %.2e / %.2e, "
              "int8 %.2e / %.2e; int8 greedy first token = f32's in %lld/%lld\n",
              static_cast<long long>(n_logits), logit_bf16.pct(0.5), logit_bf16.pct(1.0), logit_i8.pct(0.5),
              logit_i8.pct(1.0), static_cast<long long>(argmax_same_i8), static_cast<long long>(n_logits));
  std::printf("\nbank bytes per token (measured, stats): ");
  for (int t = 0; t < 3; ++t) {
    const msa::MemoryStats b = banks[t]->stats();
    std::printf("%s %.1f (routing %.1f + content %.1f)%s", msa::page_dtype_name(types[t]),
                static_cast<double>(b.routing_bytes + b.content_bytes) / static_cast<double>(b.n_tokens),
                static_cast<double>(b.routing_bytes) / static_cast<double>(b.n_tokens),
                static_cast<double>(b.content_bytes) / static_cast<double>(b.n_tokens), t < 2 ? "; " : "\n");
  }
  print_bytes_per_token(a.model.c_str(), static_cast<int64_t>(c.msa.router_layers.size()), c.num_key_value_heads,
                        c.head_dim, c.msa.pooling_kernel_size);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (int rc = synthetic(a)) return rc;
  if (!a.model.empty()) return with_model(a);
  return 0;
}
