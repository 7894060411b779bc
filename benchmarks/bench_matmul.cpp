// Matmul on MSA-4B shapes (Qwen3-4B: hidden 2560, q 4096, intermediate 9728) with bf16 weights.
//
//   BM_Gemv/<in>/<out>/<threads>       T = 1 (decode). Counters: GB/s of weight bytes, and vs_read_floor =
//                                      that rate / the rate of a plain parallel read of the same bytes on the
//                                      same threads (measured in the same benchmark, before the timing loop).
//   BM_ReadFloor/<in>/<out>/<threads>  the floor itself: the threads sum the weight bytes as 64-bit words.
//   BM_Memcpy/<in>/<out>               memcpy of the weight bytes, one thread (reads + writes).
//   BM_Gemm/<in>/<out>/<T>/<threads>   T = 64 / 512 (prefill). Counters: GFLOP/s (2·T·in·out per call) and
//                                      vs_eigen = that rate / Eigen's on the same shape (measured in the same
//                                      benchmark, best of 3 products).
//   BM_EigenGemm/<in>/<out>/<T>        the peer: Eigen::MatrixXf product on weights pre-converted to f32. Eigen is
//                                      single-threaded here (it parallelises only under OpenMP) and compiled with
//                                      the project's flags, i.e. for baseline x86-64 (SSE2), as the library must
//                                      be; compare with threads:1. (The same product built with -mavx2 -mfma
//                                      ran 1.6-2.1x faster on the development machine.)
//
// The weights of one shape are replicated until they span >= 192 MiB and the GEMV/read/memcpy benchmarks
// cycle through the copies, so every call streams from DRAM as with a real 8 GB checkpoint (one copy of
// 2560x4096 bf16 = 20 MiB would otherwise sit in L3). Run: build/<dir>/benchmarks/bench_matmul
// [--benchmark_filter=Gemv]. The label names the kernels used (cpu-avx2 / cpu-scalar).
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/buffer.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace {

using msa::CpuBackend;
using msa::CpuBackendOptions;
using msa::DType;
using msa::TensorView;
using msa::ThreadPool;

constexpr size_t kStreamBytes = size_t{192} << 20;

// bf16 weights of one shape, replicated for streaming, plus an f32 copy for Eigen (made on demand).
struct Weights {
  int64_t in = 0, out = 0;
  std::vector<msa::AlignedBuffer> copies;
  std::vector<TensorView> views;
  size_t bytes() const { return static_cast<size_t>(in * out) * 2; }
};

Weights& weights(int64_t in, int64_t out) {
  static std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Weights>> cache;
  auto& slot = cache[{in, out}];
  if (!slot) {
    slot = std::make_unique<Weights>();
    Weights& w = *slot;
    w.in = in;
    w.out = out;
    const size_t n = static_cast<size_t>(in * out);
    const size_t n_copies = std::max<size_t>(1, (kStreamBytes + w.bytes() - 1) / w.bytes());
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(in)));
    for (size_t c = 0; c < n_copies; ++c) {
      w.copies.emplace_back(w.bytes());
      uint16_t* p = reinterpret_cast<uint16_t*>(w.copies.back().data());
      if (c == 0) {
        for (size_t i = 0; i < n; ++i) p[i] = msa::f32_to_bf16(dist(rng));
      } else {
        std::memcpy(p, w.copies[0].data(), w.bytes());
      }
      TensorView v;
      v.dtype = DType::kBF16;
      v.data = p;
      v.shape = {out, in};
      w.views.push_back(v);
    }
  }
  return *slot;
}

ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

std::vector<float> random_x(int64_t n) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// Parallel read of every byte of `w` (as 64-bit words); returns a checksum so nothing is optimised away.
uint64_t read_all(ThreadPool& tp, const msa::AlignedBuffer& buf) {
  const uint64_t* p = reinterpret_cast<const uint64_t*>(buf.data());
  const int64_t n = static_cast<int64_t>(buf.size() / 8);
  std::vector<uint64_t> partial(static_cast<size_t>(tp.size()) * 8, 0);
  std::atomic<int> slot{0};
  tp.parallel_for(n, n / (4 * tp.size()) + 1, [&](int64_t b, int64_t e) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = b;
    for (; i + 4 <= e; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    for (; i < e; ++i) s0 += p[i];
    const int k = slot.fetch_add(1) % static_cast<int>(partial.size());
    partial[static_cast<size_t>(k)] += s0 + s1 + s2 + s3;
  });
  uint64_t t = 0;
  for (uint64_t v : partial) t += v;
  return t;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ------------------------------------------------------------------------------------------------ T = 1

void BM_Gemv(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  Weights& w = weights(in, out);
  CpuBackend be(CpuBackendOptions{&pool(threads), msa::CpuIsa::kAuto});
  const std::vector<float> x = random_x(in);
  std::vector<float> y(static_cast<size_t>(out));

  // The floor: best rate of a plain parallel read over all copies.
  double floor_rate = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t sum = 0;
    for (const auto& c : w.copies) sum += read_all(pool(threads), c);
    benchmark::DoNotOptimize(sum);
    floor_rate = std::max(floor_rate, static_cast<double>(w.bytes() * w.copies.size()) / seconds_since(t0));
  }

  size_t c = 0;
  for (auto _ : state) {
    if (!be.matmul(x.data(), 1, w.views[c], y.data()).ok()) state.SkipWithError("matmul failed");
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    c = (c + 1) % w.views.size();
  }
  const double bytes = static_cast<double>(w.bytes()) * static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["floor_GB/s"] = floor_rate / 1e9;
  // As a rate: (time the floor needs for these bytes) / (time we took) = our rate / the floor's rate.
  state.counters["vs_read_floor"] = benchmark::Counter(bytes / floor_rate, benchmark::Counter::kIsRate);
  state.SetLabel(be.name());
}

void BM_ReadFloor(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  Weights& w = weights(in, out);
  size_t c = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(read_all(pool(threads), w.copies[c]));
    c = (c + 1) % w.copies.size();
  }
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(w.bytes()) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

void BM_Memcpy(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1);
  Weights& w = weights(in, out);
  msa::AlignedBuffer dst(w.bytes());
  size_t c = 0;
  for (auto _ : state) {
    std::memcpy(dst.data(), w.copies[c].data(), w.bytes());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
    c = (c + 1) % w.copies.size();
  }
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(w.bytes()) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

// ------------------------------------------------------------------------------------------------ T > 1

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct EigenOperands {
  RowMajorF w;  // [out, in], the bf16 values in f32
  RowMajorF x;  // [T, in]
  RowMajorF y;  // [T, out]
};

EigenOperands make_eigen(const Weights& w, const std::vector<float>& x, int64_t t) {
  EigenOperands e;
  e.w.resize(w.out, w.in);
  msa::convert_to_f32(DType::kBF16, w.copies[0].data(), e.w.data(), static_cast<size_t>(w.in * w.out));
  e.x = Eigen::Map<const RowMajorF>(x.data(), t, w.in);
  e.y.resize(t, w.out);
  return e;
}

void BM_Gemm(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), t = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  Weights& w = weights(in, out);
  CpuBackend be(CpuBackendOptions{&pool(threads), msa::CpuIsa::kAuto});
  const std::vector<float> x = random_x(t * in);
  std::vector<float> y(static_cast<size_t>(t * out));
  const double flop = 2.0 * static_cast<double>(t * in * out);

  double eigen_rate = 0;
  {
    EigenOperands e = make_eigen(w, x, t);
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      e.y.noalias() = e.x * e.w.transpose();
      benchmark::DoNotOptimize(e.y.data());
      eigen_rate = std::max(eigen_rate, flop / seconds_since(t0));
    }
  }

  for (auto _ : state) {
    if (!be.matmul(x.data(), t, w.views[0], y.data()).ok()) state.SkipWithError("matmul failed");
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double total = flop * static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(total / 1e9, benchmark::Counter::kIsRate);
  state.counters["eigen_GFLOP/s"] = eigen_rate / 1e9;
  state.counters["vs_eigen"] = benchmark::Counter(total / eigen_rate, benchmark::Counter::kIsRate);  // as above
  state.SetLabel(be.name());
}

void BM_EigenGemm(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), t = state.range(2);
  Weights& w = weights(in, out);
  const std::vector<float> x = random_x(t * in);
  EigenOperands e = make_eigen(w, x, t);
  for (auto _ : state) {
    e.y.noalias() = e.x * e.w.transpose();
    benchmark::DoNotOptimize(e.y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(t * in * out) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
  state.SetLabel("eigen-f32, 1 thread");
}

// MSA-4B projections: q_proj 2560->4096, gate/up 2560->9728, down 9728->2560.
const int64_t kShapes[][2] = {{2560, 4096}, {2560, 9728}, {9728, 2560}};

void gemv_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes)
    for (int th : {1, 2}) b->Args({s[0], s[1], th});
}
void floor_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes)
    for (int th : {1, 2}) b->Args({s[0], s[1], th});
}
void memcpy_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes) b->Args({s[0], s[1]});
}
void gemm_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes)
    for (int64_t t : {64, 512})
      for (int th : {1, 2}) b->Args({s[0], s[1], t, th});
}
void eigen_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes)
    for (int64_t t : {64, 512}) b->Args({s[0], s[1], t});
}

BENCHMARK(BM_Gemv)->Apply(gemv_args)->ArgNames({"in", "out", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReadFloor)->Apply(floor_args)->ArgNames({"in", "out", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Memcpy)->Apply(memcpy_args)->ArgNames({"in", "out"})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gemm)->Apply(gemm_args)->ArgNames({"in", "out", "T", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EigenGemm)->Apply(eigen_args)->ArgNames({"in", "out", "T"})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
