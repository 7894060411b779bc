// GPU routing-tier benchmark (plain main; docs/PERFORMANCE.md): what the card can move and compute, then the
// routing scan at MSA-4B shapes against that.
//   (a) device copy bandwidth (cudaMemcpy D2D of 1 GiB, GB/s = 2 * bytes / t) and pinned H2D bandwidth;
//   (b) cuBLAS bf16 GEMM 8192^3 (cublasGemmEx, f32 accumulate) in TFLOP/s;
//   (c) routing scan (score + top-16) over synthetic int8 keys at the MSA-4B shape (8 kv heads x 128, 32 q
//       heads, 64 tokens per chunk, documents of 64 chunks) for 1M / 10M / 100M tokens, one router layer,
//       T = 1 and 8 routing tokens (head mean / query max / chunk max, plus head max at T = 8); bf16 keys at
//       1M / 10M. GB/s = key + scale bytes / scan time; fraction of the measured D2D rate;
//   (c') after each scan size: appending one document (64 chunks) to the resident index and document set, as
//       an add does, against re-uploading the whole index at the measured pinned H2D rate;
//   (d) page gather: 16 documents x 4096 tokens of int8 pages (K + V + scales) from pinned host pages: pack +
//       one H2D + decode to f32, against pinned H2D of the same size and the large-copy peak.
// Timing: cudaEvent on the stream (host wall for score + top-k, which ends in a synchronising download),
// warm-up runs, median of N. Prints one table at the end. Exit status 1 if any CUDA call failed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_status.h"
#include "device.h"
#include "page_gather.h"
#include "resources.h"
#include "routing_index.h"
#include "routing_score.h"
#include "topk.h"

namespace {

using msa::Status;

struct Row {
  std::string op, shape;
  double ms = 0;
  double rate = 0;
  std::string unit;
  double frac = -1;  // fraction of the reference peak, < 0: none
  std::string note;
};

std::vector<Row> g_rows;
int g_errors = 0;

bool ok(const Status& st, const char* what) {
  if (st.ok()) return true;
  ++g_errors;
  std::printf("ERROR: %s: %s\n", what, st.message().c_str());
  return false;
}

bool cuda_ok(cudaError_t e, const char* what) { return ok(msa::cuda::cuda_status(e, what), what); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median ms of `runs` executions of fn on stream s (event timed), after `warm` warm-up runs.
double time_events(cudaStream_t s, int warm, int runs, const std::function<bool()>& fn) {
  cudaEvent_t a, b;
  if (!cuda_ok(cudaEventCreate(&a), "cudaEventCreate") || !cuda_ok(cudaEventCreate(&b), "cudaEventCreate")) return -1;
  std::vector<double> t;
  bool good = true;
  for (int i = 0; i < warm && good; ++i) good = fn();
  for (int i = 0; i < runs && good; ++i) {
    good = cuda_ok(cudaEventRecord(a, s), "cudaEventRecord") && fn() && cuda_ok(cudaEventRecord(b, s), "cudaEventRecord") &&
           cuda_ok(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    if (good) good = cuda_ok(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return good ? median(t) : -1;
}

double time_wall(int warm, int runs, const std::function<bool()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < warm; ++i)
    if (!fn()) return -1;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!fn()) return -1;
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

struct Peaks {
  double d2d_gbs = 0;
  double h2d_gbs = 0;
};

void bench_copies(msa::cuda::CudaResources& res, Peaks* pk) {
  cudaStream_t s = res.stream();
  const size_t n = size_t{1} << 30;
  msa::cuda::DeviceBuffer a, b;
  if (!ok(a.reserve(n), "cudaMalloc 1 GiB") || !ok(b.reserve(n), "cudaMalloc 1 GiB")) return;
  if (!cuda_ok(cudaMemsetAsync(a.data(), 1, n, s), "cudaMemset")) return;
  const double ms = time_events(s, 2, 10, [&] {
    return cuda_ok(cudaMemcpyAsync(b.data(), a.data(), n, cudaMemcpyDeviceToDevice, s), "cudaMemcpy D2D");
  });
  if (ms > 0) {
    pk->d2d_gbs = 2.0 * static_cast<double>(n) / (ms * 1e6);
    g_rows.push_back({"copy D2D", "1 GiB", ms, pk->d2d_gbs, "GB/s", 1.0, "reference: 2*bytes/t"});
  }
  const size_t hn = size_t{512} << 20;
  msa::cuda::PinnedBuffer h;
  if (!ok(h.reserve(hn), "cudaHostAlloc 512 MiB")) return;
  std::memset(h.data(), 1, hn);
  const double hms = time_events(s, 2, 10, [&] {
    return cuda_ok(cudaMemcpyAsync(a.data(), h.data(), hn, cudaMemcpyHostToDevice, s), "cudaMemcpy H2D");
  });
  if (hms > 0) {
    pk->h2d_gbs = static_cast<double>(hn) / (hms * 1e6);
    g_rows.push_back({"copy H2D pinned", "512 MiB", hms, pk->h2d_gbs, "GB/s", 1.0, "reference for the gather"});
  }
}

void bench_gemm(msa::cuda::CudaResources& res, const std::string& dev) {
  const int n = 8192;
  const size_t nn = static_cast<size_t>(n) * n;
  msa::cuda::DeviceBuffer a, b, c;
  if (!ok(a.reserve(nn * 2), "cudaMalloc A") || !ok(b.reserve(nn * 2), "cudaMalloc B") ||
      !ok(c.reserve(nn * 4), "cudaMalloc C")) {
    return;
  }
  if (!ok(msa::cuda::fill_random_bf16(a.data(), nn, 1), "fill A") ||
      !ok(msa::cuda::fill_random_bf16(b.data(), nn, 2), "fill B")) {
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  const double ms = time_events(res.stream(), 3, 10, [&] {
    return ok(msa::cuda::cublas_status(cublasGemmEx(res.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.data(),
                                                    CUDA_R_16BF, n, b.data(), CUDA_R_16BF, n, &beta, c.data(),
                                                    CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                       "cublasGemmEx"),
              "cublasGemmEx");
  });
  if (ms > 0) {
    const double tflops = 2.0 * n * static_cast<double>(n) * n / (ms * 1e9);
    // Nominal dense bf16 peak of the SXM Hopper parts (H100 / H200); other cards: no fraction.
    const bool hopper = dev.find("H100") != std::string::npos || dev.find("H200") != std::string::npos;
    g_rows.push_back({"cuBLAS GEMM bf16->f32", "8192^3", ms, tflops, "TFLOP/s", hopper ? tflops / 989.4 : -1,
                      hopper ? "fraction of 989 TFLOP/s nominal dense" : ""});
  }
}

// One synthetic router layer at the MSA-4B shape.
void bench_scan(msa::cuda::CudaResources& res, msa::PageDType dt, int64_t tokens, const Peaks& pk,
                msa::cuda::RoutingScorer& scorer, msa::cuda::TopKSelector& topk) {
  const int64_t H = 32, G = 8, D = 128, P = 64, doc_chunks = 64;
  const int64_t n_chunks = tokens / P;
  const int64_t n_docs = (n_chunks + doc_chunks - 1) / doc_chunks;
  const int64_t width = G * D;
  const size_t rb = msa::page_row_bytes(dt, width);
  const size_t key_bytes = static_cast<size_t>(n_chunks) * (rb + (dt == msa::PageDType::kInt8 ? G * 4 : 0));
  char shape[128];
  std::snprintf(shape, sizeof shape, "%lldM tok %s, %lld chunks, %lld docs", static_cast<long long>(tokens / 1000000),
                msa::page_dtype_name(dt), static_cast<long long>(n_chunks), static_cast<long long>(n_docs));
  size_t free_b = 0, total_b = 0;
  if (!cuda_ok(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo")) return;
  const size_t need = key_bytes + static_cast<size_t>(n_chunks) * 16 + (size_t{256} << 20);
  if (need > free_b) {
    std::printf("skip scan %s: needs %.2f GB, %.2f GB free\n", shape, need / 1e9, free_b / 1e9);
    g_rows.push_back({"routing scan", shape, 0, 0, "", -1, "SKIPPED: not enough device memory"});
    return;
  }
  std::unique_ptr<msa::cuda::DeviceRoutingIndex> idx;
  if (!ok(msa::cuda::DeviceRoutingIndex::create(&res, dt, G, D, n_chunks, &idx), "DeviceRoutingIndex::create")) return;
  // Fill in pieces of <= 64 MiB of keys: generated on the device, appended device-to-device.
  const int64_t piece = std::max<int64_t>(1, (int64_t{64} << 20) / static_cast<int64_t>(rb));
  msa::cuda::DeviceBuffer prow, psc;
  if (!ok(prow.reserve(static_cast<size_t>(piece) * rb), "cudaMalloc piece") ||
      !ok(psc.reserve(static_cast<size_t>(piece * G) * 4), "cudaMalloc piece scales")) {
    return;
  }
  std::vector<int32_t> chunk_doc(static_cast<size_t>(piece));
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t c0 = 0; c0 < n_chunks; c0 += piece) {
    const int64_t n = std::min(piece, n_chunks - c0);
    Status st = dt == msa::PageDType::kInt8
                    ? msa::cuda::fill_random_int8(prow.data(), static_cast<size_t>(n) * rb, 17 + static_cast<uint64_t>(c0))
                    : msa::cuda::fill_random_bf16(prow.data(), static_cast<size_t>(n * width), 17 + static_cast<uint64_t>(c0));
    if (!ok(st, "fill keys")) return;
    if (dt == msa::PageDType::kInt8 &&
        !ok(msa::cuda::fill_random_f32(psc.as<float>(), static_cast<size_t>(n * G), 0.5f / 127, 1.5f / 127,
                                       99 + static_cast<uint64_t>(c0)),
            "fill scales")) {
      return;
    }
    for (int64_t i = 0; i < n; ++i) chunk_doc[static_cast<size_t>(i)] = static_cast<int32_t>((c0 + i) / doc_chunks);
    if (!ok(idx->append_device(prow.data(), psc.as<float>(), chunk_doc.data(), n, n_docs), "append_device")) return;
  }
  const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("built %s (%.1f MB keys+scales) in %.2f s\n", shape, key_bytes / 1e6, build_s);
  std::unique_ptr<msa::cuda::DeviceDocSet> docs;
  if (!ok(msa::cuda::DeviceDocSet::create(&res, &docs), "DeviceDocSet::create")) return;
  std::vector<uint64_t> ids(static_cast<size_t>(n_docs));
  for (int64_t d = 0; d < n_docs; ++d) ids[static_cast<size_t>(d)] = static_cast<uint64_t>(d);
  if (!ok(docs->set(ids.data(), nullptr, n_docs), "DeviceDocSet::set")) return;

  struct Variant {
    int64_t T;
    msa::HeadReduce head;
  };
  std::vector<Variant> variants = {{1, msa::HeadReduce::kMean}, {8, msa::HeadReduce::kMean}};
  if (dt == msa::PageDType::kInt8) variants.push_back({8, msa::HeadReduce::kMax});
  for (const Variant& v : variants) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    std::vector<float> hq(static_cast<size_t>(v.T * H * D));
    for (float& x : hq) x = nd(rng);
    msa::cuda::DeviceBuffer dqb;
    if (!ok(dqb.reserve(hq.size() * 4), "cudaMalloc q") ||
        !cuda_ok(cudaMemcpy(dqb.data(), hq.data(), hq.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy q") ||
        !cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize")) {
      return;
    }
    msa::cuda::DeviceRouterQuery q;
    q.q = dqb.as<float>();
    q.on_device = true;
    q.n_tokens = v.T;
    q.n_heads = H;
    q.n_kv_heads = G;
    q.head_dim = D;
    msa::RouterReductions red;
    red.head = v.head;
    red.query = msa::QueryReduce::kMax;
    red.chunk = msa::ChunkReduce::kMax;
    const double ms = time_events(res.stream(), 3, 20, [&] { return ok(scorer.score(q, *idx, red), "score"); });
    std::vector<msa::ScoredDocument> top;
    const double ms_all = time_wall(2, 10, [&] {
      return ok(scorer.score(q, *idx, red), "score") &&
             ok(topk.select(scorer.doc_scores(), n_docs, *docs, 16, &top), "top-k");
    });
    if (ms <= 0 || ms_all <= 0) return;
    bool finite = top.size() == 16;
    for (const auto& d : top) finite = finite && std::isfinite(d.score);
    if (!finite) {
      ++g_errors;
      std::printf("ERROR: scan %s: top-16 has %zu entries or a non-finite score\n", shape, top.size());
    }
    const double gbs = static_cast<double>(key_bytes) / (ms * 1e6);
    const double flops = 2.0 * static_cast<double>(n_chunks) * v.T *
                         (v.head == msa::HeadReduce::kMax ? H * D : width);
    char sh[200], note[200];
    std::snprintf(sh, sizeof sh, "%s, T=%lld head %s", shape, static_cast<long long>(v.T),
                  v.head == msa::HeadReduce::kMax ? "max" : "mean");
    std::snprintf(note, sizeof note, "%.1f MB; %.1f TFLOP/s f32; score+top16 %.3f ms wall", key_bytes / 1e6,
                  flops / (ms * 1e9), ms_all);
    g_rows.push_back({"routing score", sh, ms, gbs, "GB/s", pk.d2d_gbs > 0 ? gbs / pk.d2d_gbs : -1, note});
  }

  // An add: one more document of doc_chunks chunks appended from host memory to the resident index and its
  // document set (what ResidentBank::sync does through update_routing_index after msa_memory_add), against
  // re-uploading the whole index at the measured pinned H2D rate (what every add cost before). One warm-up add
  // (it grows the index's capacity), then the median of 5.
  std::vector<uint8_t> hrows(static_cast<size_t>(doc_chunks) * rb, 3);
  std::vector<float> hsc(static_cast<size_t>(doc_chunks * G), 1.0f / 127);
  std::vector<int32_t> new_doc(static_cast<size_t>(doc_chunks));
  int64_t docs_now = n_docs;
  const double add_ms = time_wall(1, 5, [&] {
    std::fill(new_doc.begin(), new_doc.end(), static_cast<int32_t>(docs_now));
    ids.push_back(static_cast<uint64_t>(docs_now));
    ++docs_now;
    return ok(idx->append(hrows.data(), hsc.data(), new_doc.data(), doc_chunks, docs_now), "append") &&
           ok(docs->set(ids.data(), nullptr, docs_now), "DeviceDocSet::set");
  });
  if (add_ms > 0 && pk.h2d_gbs > 0) {
    const double full_ms = static_cast<double>(key_bytes) / (pk.h2d_gbs * 1e6);
    char sh[200], note[200];
    std::snprintf(sh, sizeof sh, "%s, +1 doc (%lld chunks)", shape, static_cast<long long>(doc_chunks));
    std::snprintf(note, sizeof note, "vs re-upload of %.1f MB at %.1f GB/s pinned H2D = %.2f ms", key_bytes / 1e6,
                  pk.h2d_gbs, full_ms);
    g_rows.push_back({"routing index add", sh, add_ms, full_ms / add_ms, "x faster", -1, note});
  }
}

void bench_gather(msa::cuda::CudaResources& res, const Peaks& pk, msa::cuda::PageGatherer& gatherer) {
  const int64_t G = 8, D = 128, width = G * D, doc_chunks = 64, n_docs = 256, k = 16;
  const int64_t n_chunks = n_docs * doc_chunks;
  std::vector<uint8_t> kq(static_cast<size_t>(n_chunks * width)), vq(kq.size());
  std::vector<float> ks(static_cast<size_t>(n_chunks * G)), vs(ks.size());
  std::mt19937 rng(3);
  for (auto& x : kq) x = static_cast<uint8_t>(rng());
  for (auto& x : vq) x = static_cast<uint8_t>(rng());
  for (auto& x : ks) x = 0.01f;
  for (auto& x : vs) x = 0.02f;
  msa::cuda::HostPages hp;
  hp.dtype = msa::PageDType::kInt8;
  hp.n_kv_heads = G;
  hp.head_dim = D;
  hp.n_chunks = n_chunks;
  hp.k = kq.data();
  hp.v = vq.data();
  hp.k_scales = ks.data();
  hp.v_scales = vs.data();
  std::unique_ptr<msa::cuda::PinnedPages> pinned;
  if (!ok(msa::cuda::PinnedPages::create(hp, &pinned), "PinnedPages::create")) return;
  std::vector<msa::cuda::PageSpan> spans;
  for (int64_t i = 0; i < k; ++i) spans.push_back({((i * 37) % n_docs) * doc_chunks, doc_chunks});
  std::vector<double> pack, h2d;
  const double wall = time_wall(3, 20, [&] {
    if (!ok(gatherer.gather(pinned->view(), spans, msa::PageDType::kF32), "gather")) return false;
    if (!cuda_ok(cudaStreamSynchronize(res.stream()), "sync")) return false;
    double p = 0, h = 0;
    if (!ok(gatherer.last_timing(&p, &h), "last_timing")) return false;
    pack.push_back(p);
    h2d.push_back(h);
    return true;
  });
  if (wall <= 0) return;
  const double bytes = static_cast<double>(gatherer.staged_bytes());
  // Pinned H2D of the same size alone.
  msa::cuda::PinnedBuffer hb;
  msa::cuda::DeviceBuffer db;
  if (!ok(hb.reserve(gatherer.staged_bytes()), "cudaHostAlloc") || !ok(db.reserve(gatherer.staged_bytes()), "cudaMalloc")) return;
  const double same_ms = time_events(res.copy_stream(), 3, 20, [&] {
    return cuda_ok(cudaMemcpyAsync(db.data(), hb.data(), gatherer.staged_bytes(), cudaMemcpyHostToDevice, res.copy_stream()),
                   "cudaMemcpy H2D");
  });
  const double h2d_ms = median(h2d);
  char shape[160], note[200];
  std::snprintf(shape, sizeof shape, "k=16 x 4096 tok int8, %.2f MB staged", bytes / 1e6);
  const double same_gbs = same_ms > 0 ? bytes / (same_ms * 1e6) : 0;
  std::snprintf(note, sizeof note, "same-size pinned H2D %.1f GB/s; frac vs 512 MiB H2D peak", same_gbs);
  g_rows.push_back({"gather H2D (1 copy)", shape, h2d_ms, bytes / (h2d_ms * 1e6), "GB/s",
                    pk.h2d_gbs > 0 ? bytes / (h2d_ms * 1e6) / pk.h2d_gbs : -1, note});
  std::snprintf(note, sizeof note, "pack %.3f ms + H2D + decode to f32 (%.2f MB out)", median(pack),
                2.0 * static_cast<double>(k * doc_chunks * width) * 4 / 1e6);
  g_rows.push_back({"gather end to end", shape, wall, bytes / (wall * 1e6), "GB/s",
                    pk.h2d_gbs > 0 ? bytes / (wall * 1e6) / pk.h2d_gbs : -1, note});
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;  // 1M / 10M only
  if (msa::cuda::device_count() == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  const std::string dev = msa::cuda::device_name(0);
  std::printf("device 0: %s\n", dev.c_str());
  std::unique_ptr<msa::cuda::CudaResources> res;
  if (!ok(msa::cuda::CudaResources::create(0, nullptr, &res), "CudaResources::create")) return 1;
  std::unique_ptr<msa::cuda::RoutingScorer> scorer;
  std::unique_ptr<msa::cuda::TopKSelector> topk;
  std::unique_ptr<msa::cuda::PageGatherer> gatherer;
  if (!ok(msa::cuda::RoutingScorer::create(res.get(), &scorer), "RoutingScorer::create") ||
      !ok(msa::cuda::TopKSelector::create(res.get(), &topk), "TopKSelector::create") ||
      !ok(msa::cuda::PageGatherer::create(res.get(), &gatherer), "PageGatherer::create")) {
    return 1;
  }
  Peaks pk;
  bench_copies(*res, &pk);
  bench_gemm(*res, dev);
  for (int64_t tok : {int64_t{1000000}, int64_t{10000000}, int64_t{100000000}}) {
    if (quick && tok > 10000000) continue;
    bench_scan(*res, msa::PageDType::kInt8, tok, pk, *scorer, *topk);
  }
  for (int64_t tok : {int64_t{1000000}, int64_t{10000000}}) bench_scan(*res, msa::PageDType::kBF16, tok, pk, *scorer, *topk);
  bench_gather(*res, pk, *gatherer);

  std::printf("\n%-22s | %-52s | %9s | %9s %-7s | %6s | %s\n", "op", "shape", "ms", "rate", "", "peak", "note");
  std::printf("%s\n", std::string(150, '-').c_str());
  for (const Row& r : g_rows) {
    char frac[16] = "";
    if (r.frac >= 0) std::snprintf(frac, sizeof frac, "%.2f", r.frac);
    std::printf("%-22s | %-52s | %9.3f | %9.1f %-7s | %6s | %s\n", r.op.c_str(), r.shape.c_str(), r.ms, r.rate,
                r.unit.c_str(), frac, r.note.c_str());
  }
  std::printf("bench_gpu_routing: %s\n", g_errors == 0 ? "ok" : "ERRORS (see above)");
  return g_errors == 0 ? 0 : 1;
}
