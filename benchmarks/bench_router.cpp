// Router scoring on an MSA-4B router layer: 64 routing tokens, 32 query heads, 8 kv heads, head_dim 128
// (width 1024), 10k-200k chunks (16 chunks per document, i.e. 1,024-token documents at pooling 64).
//
//   BM_Score/<chunks>/<threads>   head mean / query max / chunk max (the GQA-collapsed path). Counters:
//                                 GFLOP/s (2·T·n_kv·hd·C per call, wall clock), eigen_GFLOP/s = the peer's rate on
//                                 the same shape and thread count, measured in the same benchmark before the timing
//                                 loop (best of 3), and vs_eigen = ours / peer. Also per CPU-second of the whole
//                                 process (all threads): cpu_GFLOP/s, eigen_cpu_GFLOP/s and vs_eigen_cpu — on a
//                                 shared, loaded machine the wall-clock rates mostly measure the scheduler, these
//                                 measure the code.
//   BM_EigenScore/<chunks>/<threads>
//                                 the peer alone: Eigen f32 GEMM [T, 1024] x [1024, C] that materialises the
//                                 [T, C] scores (no reductions at all, so it does strictly less work than ours).
//                                 Eigen parallelises only under OpenMP, so for n threads the chunk range is cut
//                                 into n contiguous parts, one Eigen product per std::thread.
//   BM_ScoreVariant/<variant>/<chunks>/<threads>
//                                 the other reduction paths at 50k chunks: 0 = head max (exact per head, 4x the
//                                 FLOPs: 2·T·n_heads·hd·C), 1 = query last, 2 = query mean (both one row after the
//                                 collapse, so memory-bound: see GB/s of key bytes).
//
// The peer is compiled for AVX2+FMA (a target pragma around Eigen in this file only, with the ISA macros Eigen
// keys on) so that it uses the same instruction set as our kernel; built like the rest of the project (baseline
// x86-64) Eigen would run SSE2 code at about half that speed and flatter the ratio. On a CPU without AVX2/FMA
// the peer is skipped and our scalar kernels run.
//
// Run: build/<dir>/benchmarks/bench_router [--benchmark_filter=BM_Score/]. The ISA is printed as the label.
#include <benchmark/benchmark.h>

// Every standard header Eigen uses is included here, before the AVX2 region below, so that no standard-library
// inline function is defined (and possibly emitted, then picked by the linker for the whole program) with AVX2.
#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <ctime>
#include <chrono>
#include <cfloat>
#include <climits>
#include <cmath>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iosfwd>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/cpu/routing_scan.h"
#include "backend/cpu/score_kernels.h"
#include "backend/routing_types.h"
#include "core/thread_pool.h"

namespace bench_peer {
// [t, w] x [c, w]^T -> s [t, c] (row-major), one thread. Defined in the AVX2 region at the end of the file.
void eigen_scores(const float* q, int64_t t, int64_t w, const float* k, int64_t c, float* s, int64_t lds);
const char* eigen_isa();
}  // namespace bench_peer

namespace {

constexpr int64_t kTokens = 64, kHeads = 32, kKvHeads = 8, kHeadDim = 128;
constexpr int64_t kWidth = kKvHeads * kHeadDim;
constexpr int64_t kChunksPerDoc = 16;
constexpr int64_t kMaxChunks = 200000;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU time of the whole process (every thread, the pool's workers and the peer's threads included).
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Fast deterministic fill in [-1, 1) (a 200k x 1024 index is 800 MB; a normal distribution would take seconds).
void fill(std::vector<float>* v, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& f : *v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    f = static_cast<float>(static_cast<int32_t>(x >> 32)) * (1.0f / 2147483648.0f);
  }
}

// One f32 index of kMaxChunks chunks (host arrays); smaller sizes view a prefix of it (its first C/16 documents).
struct HostIndex {
  std::vector<float> keys;         // [kMaxChunks, kWidth]
  std::vector<int32_t> chunk_doc;  // [kMaxChunks]
};

const HostIndex& full_index() {
  static const HostIndex index = [] {
    HostIndex r;
    r.keys.resize(static_cast<size_t>(kMaxChunks * kWidth));
    fill(&r.keys, 1);
    r.chunk_doc.resize(static_cast<size_t>(kMaxChunks));
    for (int64_t c = 0; c < kMaxChunks; ++c) {
      r.chunk_doc[static_cast<size_t>(c)] = static_cast<int32_t>(c / kChunksPerDoc);
    }
    return r;
  }();
  return index;
}

// The first `chunks` chunks (and their documents) of the full index, without a copy.
msa::RoutingIndexView index_of(int64_t chunks) {
  const HostIndex& full = full_index();
  msa::RoutingIndexView v;
  v.dtype = msa::PageDType::kF32;
  v.n_chunks = chunks;
  v.n_kv_heads = kKvHeads;
  v.head_dim = kHeadDim;
  v.keys = full.keys.data();
  v.chunk_doc = full.chunk_doc.data();
  v.n_documents = chunks / kChunksPerDoc;  // scoring needs no ids (only the top-k does)
  return v;
}

const std::vector<float>& query_rows() {
  static const std::vector<float> q = [] {
    std::vector<float> v(static_cast<size_t>(kTokens * kHeads * kHeadDim));
    fill(&v, 2);
    for (float& x : v) x *= 0.08838835f;  // head_dim^-0.5, as the engine prepares router queries
    return v;
  }();
  return q;
}

msa::ThreadPool& pool(int n) {
  static std::map<int, std::unique_ptr<msa::ThreadPool>> pools;
  auto& p = pools[n];
  if (!p) p = std::make_unique<msa::ThreadPool>(n);
  return *p;
}

bool have_avx2() { return msa::scan::avx2_score_kernels_supported(); }

// The collapsed query rows the peer multiplies: per token, the sum of each kv group's 4 query heads.
std::vector<float> collapsed_rows() {
  const std::vector<float>& q = query_rows();
  const int64_t hpg = kHeads / kKvHeads;
  std::vector<float> rows(static_cast<size_t>(kTokens * kWidth), 0.0f);
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t d = 0; d < kHeadDim; ++d) {
        rows[static_cast<size_t>(t * kWidth + (h / hpg) * kHeadDim + d)] +=
            q[static_cast<size_t>((t * kHeads + h) * kHeadDim + d)];
      }
    }
  }
  return rows;
}

// The peer on `threads` threads: contiguous chunk ranges, one Eigen product each, into one [T, C] matrix.
void eigen_peer(const std::vector<float>& rows, const msa::RoutingIndexView& index, int threads,
                std::vector<float>* s) {
  const int64_t c = index.n_chunks;
  s->resize(static_cast<size_t>(kTokens * c));
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    const int64_t c0 = c * i / threads, c1 = c * (i + 1) / threads;
    ts.emplace_back([&, c0, c1] {
      bench_peer::eigen_scores(rows.data(), kTokens, kWidth, index.keys + c0 * kWidth, c1 - c0,
                               s->data() + c0, c);
    });
  }
  for (auto& t : ts) t.join();
}

msa::RouterQuery make_query() {
  msa::RouterQuery q;
  q.q = query_rows().data();
  q.n_tokens = kTokens;
  q.n_heads = kHeads;
  q.n_kv_heads = kKvHeads;
  q.head_dim = kHeadDim;
  return q;
}

void BM_Score(benchmark::State& state) {
  const int64_t chunks = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const msa::RoutingIndexView index = index_of(chunks);
  const double flop = 2.0 * kTokens * kWidth * static_cast<double>(chunks);

  double peer_rate = 0, peer_cpu_rate = 0;
  if (have_avx2()) {
    const std::vector<float> rows = collapsed_rows();
    std::vector<float> s;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = process_cpu_seconds();
      eigen_peer(rows, index, threads, &s);
      benchmark::DoNotOptimize(s.data());
      peer_rate = std::max(peer_rate, flop / seconds_since(t0));
      peer_cpu_rate = std::max(peer_cpu_rate, flop / (process_cpu_seconds() - c0));
    }
  }

  msa::ScanOptions opt;
  opt.pool = &pool(threads);
  const msa::RouterReductions red{msa::HeadReduce::kMean, msa::QueryReduce::kMax, msa::ChunkReduce::kMax};
  const msa::RouterQuery q = make_query();
  std::vector<float> scores;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    if (!msa::score_documents(q, index, red, &scores, opt).ok()) state.SkipWithError("scoring failed");
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  const double cpu_rate = flop * static_cast<double>(state.iterations()) / (process_cpu_seconds() - cpu0);
  const double total = flop * static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(total / 1e9, benchmark::Counter::kIsRate);
  state.counters["cpu_GFLOP/s"] = cpu_rate / 1e9;
  if (peer_rate > 0) {
    state.counters["eigen_GFLOP/s"] = peer_rate / 1e9;
    state.counters["vs_eigen"] = benchmark::Counter(total / peer_rate, benchmark::Counter::kIsRate);
    state.counters["eigen_cpu_GFLOP/s"] = peer_cpu_rate / 1e9;
    state.counters["vs_eigen_cpu"] = cpu_rate / peer_cpu_rate;
  }
  state.SetLabel(have_avx2() ? "avx2" : "scalar");
}

void BM_EigenScore(benchmark::State& state) {
  if (!have_avx2()) {
    state.SkipWithError("the AVX2+FMA Eigen peer needs a CPU with avx2 and fma");
    return;
  }
  const int64_t chunks = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const msa::RoutingIndexView index = index_of(chunks);
  const std::vector<float> rows = collapsed_rows();
  std::vector<float> s;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    eigen_peer(rows, index, threads, &s);
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  const double total = 2.0 * kTokens * kWidth * static_cast<double>(chunks) * static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(total / 1e9, benchmark::Counter::kIsRate);
  state.counters["cpu_GFLOP/s"] = total / 1e9 / (process_cpu_seconds() - cpu0);
  state.SetLabel(std::string("eigen-f32 ") + bench_peer::eigen_isa());
}

void BM_ScoreVariant(benchmark::State& state) {
  const int variant = static_cast<int>(state.range(0));
  const int64_t chunks = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const msa::RoutingIndexView index = index_of(chunks);
  msa::RouterReductions red{msa::HeadReduce::kMean, msa::QueryReduce::kMax, msa::ChunkReduce::kMax};
  double flop_per_chunk = 0;
  const char* name = "";
  switch (variant) {
    case 0:
      red.head = msa::HeadReduce::kMax;
      flop_per_chunk = 2.0 * kTokens * kHeads * kHeadDim;
      name = "head max";
      break;
    case 1:
      red.query = msa::QueryReduce::kLast;
      flop_per_chunk = 2.0 * kWidth;
      name = "query last";
      break;
    default:
      red.query = msa::QueryReduce::kMean;
      flop_per_chunk = 2.0 * kWidth;
      name = "query mean";
      break;
  }
  msa::ScanOptions opt;
  opt.pool = &pool(threads);
  const msa::RouterQuery q = make_query();
  std::vector<float> scores;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    if (!msa::score_documents(q, index, red, &scores, opt).ok()) {
      state.SkipWithError("scoring failed");
    }
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  const double it = static_cast<double>(state.iterations());
  const double cpu_s = process_cpu_seconds() - cpu0;
  state.counters["cpu_GFLOP/s"] = flop_per_chunk * static_cast<double>(chunks) * it / 1e9 / cpu_s;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flop_per_chunk * static_cast<double>(chunks) * it / 1e9, benchmark::Counter::kIsRate);
  state.counters["keys_GB/s"] = benchmark::Counter(static_cast<double>(chunks * kWidth * 4) * it / 1e9,
                                                   benchmark::Counter::kIsRate);
  state.SetLabel(std::string(name) + (have_avx2() ? ", avx2" : ", scalar"));
}

void score_args(benchmark::internal::Benchmark* b) {
  for (int64_t c : {10000, 50000, 200000}) {
    for (int th : {1, 2}) b->Args({c, th});
  }
}

void variant_args(benchmark::internal::Benchmark* b) {
  for (int v : {0, 1, 2}) {
    for (int th : {1, 2}) b->Args({v, 50000, th});
  }
}

}  // namespace

BENCHMARK(BM_Score)->Apply(score_args)->ArgNames({"chunks", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EigenScore)
    ->Apply(score_args)
    ->ArgNames({"chunks", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScoreVariant)
    ->Apply(variant_args)
    ->ArgNames({"variant", "chunks", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();

// ------------------------------------------------------------------------------------------------ the peer
// Eigen is included only here, inside an AVX2+FMA target region, with the ISA macros it selects its packet
// code by (a target pragma does not define them in C++). Every function defined in the region, Eigen's
// templates included, is compiled for AVX2+FMA; it is only called after have_avx2().
#pragma GCC push_options
#pragma GCC target("avx,avx2,fma")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#include <Eigen/Dense>

namespace bench_peer {

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void eigen_scores(const float* q, int64_t t, int64_t w, const float* k, int64_t c, float* s, int64_t lds) {
  Eigen::Map<const RowMajorF> qm(q, t, w);
  Eigen::Map<const RowMajorF> km(k, c, w);
  Eigen::Map<RowMajorF, 0, Eigen::OuterStride<>> sm(s, t, c, Eigen::OuterStride<>(lds));
  sm.noalias() = qm * km.transpose();
}

const char* eigen_isa() { return Eigen::SimdInstructionSetsInUse(); }

}  // namespace bench_peer

#pragma GCC pop_options
