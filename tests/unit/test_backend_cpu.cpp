// CPU backend ops against naive double-precision references on random inputs: every weight dtype, T == 1 (GEMV)
// and T > 1 (GEMM), odd sizes, the scalar path and the AVX2 path (when this CPU has it), and both paths
// against each other. The device-memory side of the Backend interface (alloc, transfers, gather_rows, scale,
// l2_normalize, decode_pages, resident routing indexes and route) runs through upload/download on both CPU
// backends and on the registry's backend (MSA_BACKEND: cpu-guarded in the guarded tier, whose memory is
// inaccessible outside its own ops).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/routing_scan.h"
#include "backend/registry.h"
#include "backend/routing_types.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "memory/page_codec.h"

using namespace msa;

namespace {

std::vector<float> random_vec(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A weight tensor in one dtype plus the exact f32 values it holds (the reference works on those, so only
// accumulation error is measured).
struct TestWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  TensorView view;
};

TestWeight make_weight(std::mt19937& rng, DType dt, std::vector<int64_t> shape, float lo = -1.0f, float hi = 1.0f) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  TestWeight w;
  std::vector<float> raw = random_vec(rng, static_cast<size_t>(n), lo, hi);
  w.values.resize(raw.size());
  w.bytes.resize(raw.size() * dtype_size(dt));
  for (size_t i = 0; i < raw.size(); ++i) {
    if (dt == DType::kBF16) {
      uint16_t h = f32_to_bf16(raw[i]);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.values[i] = bf16_to_f32(h);
    } else if (dt == DType::kF16) {
      uint16_t h = f32_to_f16(raw[i]);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.values[i] = f16_to_f32(h);
    } else {
      std::memcpy(w.bytes.data() + 4 * i, &raw[i], 4);
      w.values[i] = raw[i];
    }
  }
  w.view.dtype = dt;
  w.view.data = w.bytes.data();
  w.view.shape = std::move(shape);
  return w;
}

struct Backends {
  ThreadPool pool{3};  // more threads than this machine's cores: exercises the splitting
  CpuBackend scalar{CpuBackendOptions{&pool, CpuIsa::kScalar}};
  CpuBackend avx2{CpuBackendOptions{&pool, CpuIsa::kAvx2}};
  std::unique_ptr<Backend> registry;  // create_backend(BackendParams()): MSA_BACKEND, else "cpu"
  // The backends to test: scalar always, AVX2 when this CPU runs it.
  std::vector<CpuBackend*> all() {
    std::vector<CpuBackend*> v{&scalar};
    if (avx2.isa() == CpuIsa::kAvx2) v.push_back(&avx2);
    return v;
  }
  // For tests that go through device memory (upload, op, download): all() and the registry's backend.
  std::vector<Backend*> devices() {
    const std::vector<CpuBackend*> cpus = all();
    std::vector<Backend*> v(cpus.begin(), cpus.end());
    v.push_back(registry.get());
    return v;
  }
};

Backends& backends() {
  static Backends b;
  static bool reported = false;
  if (!reported) {
    reported = true;
    if (b.avx2.isa() != CpuIsa::kAvx2) WARN("this CPU lacks avx2/fma/f16c: only the scalar kernels are tested");
    const Status s = create_backend(BackendParams(), &b.registry);
    INFO(s.to_string());
    REQUIRE(s.ok());
  }
  return b;
}

// The CPU routing scan's ISA behind a backend's route(): the CpuBackend's own, or the default for the guarded
// test backend (a CpuBackend with default options inside). Other backends: none (false).
bool scan_isa_of(Backend* be, CpuIsa* isa) {
  if (auto* cpu = dynamic_cast<CpuBackend*>(be)) {
    *isa = cpu->isa();
    return true;
  }
  if (std::string(be->name()) == "cpu-guarded") {
    *isa = CpuIsa::kAuto;
    return true;
  }
  return false;
}

// Host vector -> a fresh buffer of backend memory, and back.
template <typename T>
DeviceBuffer to_device(Backend* be, const std::vector<T>& host) {
  DeviceBuffer buf;
  const Status s = upload_vector(be, host.data(), host.size(), &buf);
  INFO(be->name() << ": " << s.to_string());
  REQUIRE(s.ok());
  return buf;
}
template <typename T>
std::vector<T> to_host(Backend* be, const void* device, size_t n) {
  std::vector<T> host;
  const Status s = download_vector(be, device, n, &host);
  INFO(be->name() << ": " << s.to_string());
  REQUIRE(s.ok());
  return host;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const char* dtype_label(DType dt) { return dtype_name(dt); }

}  // namespace

TEST_CASE("CPU backend picks its ISA", "[backend]") {
  Backends& b = backends();
  REQUIRE(b.scalar.isa() == CpuIsa::kScalar);
  REQUIRE(std::string(b.scalar.name()) == "cpu-scalar");
  REQUIRE((b.avx2.isa() == CpuIsa::kAvx2) == CpuBackend::cpu_has_avx2());
  REQUIRE(std::string(b.avx2.name()) == (CpuBackend::cpu_has_avx2() ? "cpu-avx2" : "cpu-scalar"));
  REQUIRE(b.scalar.thread_pool() == &b.pool);
  CpuBackend plain;
  REQUIRE(plain.thread_pool() == &ThreadPool::global());
  REQUIRE(b.registry != nullptr);
}

TEST_CASE("the registry creates backends by name", "[backend]") {
  const std::vector<std::string> names = backend_names();
  REQUIRE(names.size() >= 2);
  CHECK(names[0] == "cpu");
  CHECK(names[1] == "cpu-scalar");
  const char* env = std::getenv("MSA_BACKEND");
  CHECK(default_backend_name() == (env != nullptr && env[0] != '\0' ? std::string(env) : std::string("cpu")));

  ThreadPool pool(2);
  std::unique_ptr<Backend> be;
  BackendParams p;
  p.name = "cpu";
  p.pool = &pool;
  REQUIRE(create_backend(p, &be).ok());
  REQUIRE(be != nullptr);
  CHECK(std::string(be->name()) == (CpuBackend::cpu_has_avx2() ? "cpu-avx2" : "cpu-scalar"));
  CHECK(be->thread_pool() == &pool);
  p.name = "cpu-scalar";
  REQUIRE(create_backend(p, &be).ok());
  CHECK(std::string(be->name()) == "cpu-scalar");
  REQUIRE(dynamic_cast<CpuBackend*>(be.get()) != nullptr);
  CHECK(dynamic_cast<CpuBackend*>(be.get())->isa() == CpuIsa::kScalar);
  for (const std::string& n : names) {
    if (n == "cuda") continue;  // needs a device
    p.name = n;
    const Status s = create_backend(p, &be);
    INFO(n << ": " << s.to_string());
    REQUIRE(s.ok());
    CHECK(!be->device_description().empty());
  }
  p.name = "no-such-backend";
  const Status unknown = create_backend(p, &be);
  CHECK(unknown.code() == StatusCode::kUnsupported);
  CHECK(unknown.message().find("cpu-scalar") != std::string::npos);  // lists what the build has
  CHECK(be == nullptr);
  p.name = "cpu";
  p.device = -1;
  CHECK(create_backend(p, &be).code() == StatusCode::kInvalidArgument);
  CHECK(create_backend(BackendParams(), nullptr).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("one CPU feature detector agrees with the compiler's and serves backend and router", "[backend]") {
  const CpuFeatures& f = cpu_features();
  __builtin_cpu_init();
  CHECK(f.avx2 == (__builtin_cpu_supports("avx2") != 0));
  CHECK(f.fma == (__builtin_cpu_supports("fma") != 0));
  CHECK(CpuBackend::cpu_has_avx2() == (f.avx2 && f.fma && f.f16c));
  CHECK(&cpu_features() == &f);  // detected once
}

TEST_CASE("matmul matches a double reference for every dtype, T and odd sizes", "[backend][matmul]") {
  Backends& b = backends();
  std::mt19937 rng(1234);
  const DType dtypes[] = {DType::kBF16, DType::kF16, DType::kF32};
  const int64_t ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 64};
  const int64_t outs[] = {1, 3, 16, 17, 64, 100, 130};
  const int64_t ins[] = {1, 7, 8, 15, 16, 33, 257, 300};
  double worst = 0.0;
  for (DType dt : dtypes) {
    for (int64_t n_out : outs) {
      for (int64_t k : ins) {
        TestWeight w = make_weight(rng, dt, {n_out, k});
        for (int64_t t : ts) {
          std::vector<float> x = random_vec(rng, static_cast<size_t>(t * k));
          std::vector<double> ref(static_cast<size_t>(t * n_out)), mag(ref.size());
          for (int64_t r = 0; r < t; ++r) {
            for (int64_t o = 0; o < n_out; ++o) {
              double s = 0, m = 0;
              for (int64_t i = 0; i < k; ++i) {
                const double p = static_cast<double>(x[static_cast<size_t>(r * k + i)]) * w.values[static_cast<size_t>(o * k + i)];
                s += p;
                m += std::fabs(p);
              }
              ref[static_cast<size_t>(r * n_out + o)] = s;
              mag[static_cast<size_t>(r * n_out + o)] = m;
            }
          }
          std::vector<std::vector<float>> results;
          for (CpuBackend* be : b.all()) {
            std::vector<float> y(static_cast<size_t>(t * n_out), std::nanf(""));
            REQUIRE(be->matmul(x.data(), t, w.view, y.data()).ok());
            for (size_t i = 0; i < y.size(); ++i) {
              const double err = std::fabs(y[i] - ref[i]);
              const double tol = 1e-6 * mag[i] + 1e-30;
              worst = std::max(worst, err / (mag[i] + 1e-30));
              if (!(err <= tol)) {
                FAIL_CHECK(be->name() << " " << dtype_label(dt) << " T=" << t << " out=" << n_out << " in=" << k
                                      << " idx " << i << ": " << y[i] << " vs " << ref[i]);
                return;
              }
            }
            results.push_back(std::move(y));
          }
          if (results.size() == 2) {  // scalar vs AVX2: equal up to summation order
            for (size_t i = 0; i < results[0].size(); ++i) {
              REQUIRE(std::fabs(results[0][i] - results[1][i]) <= 2e-6 * mag[i] + 1e-30);
            }
          }
        }
      }
    }
  }
  std::printf("matmul: worst |err| / sum|x*w| = %.3g\n", worst);
}

TEST_CASE("matmul splits large problems over threads", "[backend][matmul]") {
  Backends& b = backends();
  std::mt19937 rng(99);
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    const int64_t n_out = 1000, k = 520;
    TestWeight w = make_weight(rng, dt, {n_out, k});
    for (int64_t t : {int64_t{1}, int64_t{9}, int64_t{70}}) {
      std::vector<float> x = random_vec(rng, static_cast<size_t>(t * k));
      for (CpuBackend* be : b.all()) {
        std::vector<float> y(static_cast<size_t>(t * n_out), std::nanf(""));
        REQUIRE(be->matmul(x.data(), t, w.view, y.data()).ok());
        for (int64_t r = 0; r < t; r += 4) {
          for (int64_t o = 0; o < n_out; o += 7) {
            double s = 0, m = 0;
            for (int64_t i = 0; i < k; ++i) {
              const double p = static_cast<double>(x[static_cast<size_t>(r * k + i)]) * w.values[static_cast<size_t>(o * k + i)];
              s += p;
              m += std::fabs(p);
            }
            REQUIRE(std::fabs(y[static_cast<size_t>(r * n_out + o)] - s) <= 1e-6 * m);
          }
        }
      }
    }
  }
}

TEST_CASE("matmul rows above the GEMV threshold do not depend on the batch", "[backend][matmul]") {
  // The encoder relies on this: a document's pooled memory must not depend on what it was packed with. For
  // T > 8 (the gemm kernels) every output element is computed by the same operations whatever T, the row's
  // index or the thread split.
  Backends& b = backends();
  std::mt19937 rng(17);
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    const int64_t n_out = 200, k = 600;
    TestWeight w = make_weight(rng, dt, {n_out, k});
    const std::vector<float> big = random_vec(rng, static_cast<size_t>(70 * k));
    for (CpuBackend* be : b.all()) {
      std::vector<float> y_big(static_cast<size_t>(70 * n_out));
      REQUIRE(be->matmul(big.data(), 70, w.view, y_big.data()).ok());
      for (int64_t t : {int64_t{9}, int64_t{13}, int64_t{64}}) {
        for (int64_t start : {int64_t{0}, int64_t{5}, int64_t{70} - t}) {
          std::vector<float> y(static_cast<size_t>(t * n_out));
          REQUIRE(be->matmul(big.data() + start * k, t, w.view, y.data()).ok());
          REQUIRE(std::memcmp(y.data(), y_big.data() + start * n_out, y.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("matmul rejects bad weights", "[backend][matmul]") {
  Backends& b = backends();
  std::vector<float> x(8, 1.0f), y(8);
  TensorView w;
  REQUIRE(b.scalar.matmul(x.data(), 1, w, y.data()).code() == StatusCode::kShape);
  std::vector<int32_t> ints(8);
  w.dtype = DType::kI32;
  w.data = ints.data();
  w.shape = {1, 8};
  REQUIRE(b.scalar.matmul(x.data(), 1, w, y.data()).code() == StatusCode::kDtype);
  w.dtype = DType::kF32;
  REQUIRE(b.scalar.matmul(x.data(), 0, w, y.data()).code() == StatusCode::kShape);
}

TEST_CASE("rmsnorm matches a double reference", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(5);
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (int64_t dim : {int64_t{1}, int64_t{13}, int64_t{128}, int64_t{2560}}) {
      const int64_t rows = 7;
      TestWeight w = make_weight(rng, dt, {dim}, 0.5f, 1.5f);
      std::vector<float> x = random_vec(rng, static_cast<size_t>(rows * dim), -3.0f, 3.0f);
      for (CpuBackend* be : b.all()) {
        std::vector<float> y(x.size());
        REQUIRE(be->rmsnorm(x.data(), rows, dim, w.view, 1e-6f, y.data()).ok());
        std::vector<float> inplace = x;
        REQUIRE(be->rmsnorm(inplace.data(), rows, dim, w.view, 1e-6f, inplace.data()).ok());
        for (int64_t r = 0; r < rows; ++r) {
          double ss = 0;
          for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[static_cast<size_t>(r * dim + i)]) * x[static_cast<size_t>(r * dim + i)];
          const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + 1e-6);
          for (int64_t i = 0; i < dim; ++i) {
            const size_t j = static_cast<size_t>(r * dim + i);
            const double ref = x[j] * inv * w.values[static_cast<size_t>(i)];
            REQUIRE(std::fabs(y[j] - ref) <= 1e-6 * (std::fabs(ref) + 1e-3));
            REQUIRE(inplace[j] == y[j]);
          }
        }
      }
    }
  }
  TestWeight w = make_weight(rng, DType::kF32, {8});
  std::vector<float> x(16);
  REQUIRE(b.scalar.rmsnorm(x.data(), 2, 7, w.view, 1e-6f, x.data()).code() == StatusCode::kShape);
}

TEST_CASE("RoPE table follows transformers' f32 recipe and rope rotates half", "[backend]") {
  Backends& b = backends();
  const int64_t d = 16, half = d / 2, n = 6, heads = 3;
  // Positions out of order, repeated, and one past the CPU backend's shared table (a per-call table there).
  const int32_t pos[n] = {0, 1, 7, 300, 262143, (1 << 20) + 5};
  const double theta = 5e6;
  std::vector<float> c(static_cast<size_t>(n * half)), s(c.size());
  compute_rope_table(pos, n, d, theta, c.data(), s.data());
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      // f32: exponent 2i/d, base^exponent, reciprocal, times position (each step rounded to f32).
      const float inv = 1.0f / static_cast<float>(std::pow(static_cast<double>(static_cast<float>(theta)),
                                                           static_cast<double>(static_cast<float>(2 * i) / static_cast<float>(d))));
      const float angle = inv * static_cast<float>(pos[t]);
      REQUIRE(c[static_cast<size_t>(t * half + i)] == static_cast<float>(std::cos(static_cast<double>(angle))));
      REQUIRE(s[static_cast<size_t>(t * half + i)] == static_cast<float>(std::sin(static_cast<double>(angle))));
    }
  }
  REQUIRE(c[0] == 1.0f);
  REQUIRE(s[0] == 0.0f);
  std::mt19937 rng(7);
  const std::vector<float> x = random_vec(rng, static_cast<size_t>(n * heads * d));
  const std::vector<int32_t> positions(pos, pos + n);
  // rope(positions, theta) applies exactly that table: every backend, in one call or token by token.
  for (Backend* be : b.devices()) {
    INFO(be->name());
    DeviceBuffer dx = to_device(be, x);
    DeviceBuffer dpos = to_device(be, positions);
    REQUIRE(be->rope(dx.as<float>(), n, heads, d, dpos.as<int32_t>(), theta).ok());
    const std::vector<float> y = to_host<float>(be, dx.data(), x.size());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        const float* xv = x.data() + (t * heads + h) * d;
        const float* yv = y.data() + (t * heads + h) * d;
        for (int64_t i = 0; i < half; ++i) {
          const double cc = c[static_cast<size_t>(t * half + i)], ss = s[static_cast<size_t>(t * half + i)];
          REQUIRE(std::fabs(yv[i] - (xv[i] * cc - xv[i + half] * ss)) <= 1e-6);
          REQUIRE(std::fabs(yv[i + half] - (xv[i + half] * cc + xv[i] * ss)) <= 1e-6);
        }
      }
    }
    // A token's result does not depend on the other tokens of the call (the shared table vs a per-call one).
    DeviceBuffer one = to_device(be, x);
    for (int64_t t = 0; t < n; ++t) {
      REQUIRE(be->rope(one.as<float>() + t * heads * d, 1, heads, d, dpos.as<int32_t>() + t, theta).ok());
    }
    REQUIRE(same_bits(to_host<float>(be, one.data(), x.size()), y));
    // Position 0 is the identity; another theta gives another rotation.
    DeviceBuffer other = to_device(be, x);
    REQUIRE(be->rope(other.as<float>(), n, heads, d, dpos.as<int32_t>(), 1e4).ok());
    const std::vector<float> y2 = to_host<float>(be, other.data(), x.size());
    REQUIRE(std::equal(y2.begin(), y2.begin() + heads * d, x.begin()));
    REQUIRE(!same_bits(y2, y));
    // Errors: odd head_dim, negative position.
    REQUIRE(be->rope(dx.as<float>(), 1, 1, 15, dpos.as<int32_t>(), theta).code() == StatusCode::kInvalidArgument);
    const std::vector<int32_t> neg = {-1};
    DeviceBuffer dneg = to_device(be, neg);
    REQUIRE(be->rope(dx.as<float>(), 1, heads, d, dneg.as<int32_t>(), theta).code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("swiglu, add, mean_pool match double references", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(11);
  const int64_t n = 1037;
  std::vector<float> g = random_vec(rng, n, -8.0f, 8.0f), u = random_vec(rng, n, -2.0f, 2.0f);
  for (CpuBackend* be : b.all()) {
    std::vector<float> out(n);
    be->swiglu(g.data(), u.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
      REQUIRE(std::fabs(out[i] - ref) <= 1e-6 * (std::fabs(ref) + 1e-6));
    }
    be->add(g.data(), u.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == g[i] + u[i]);

    // 11 rows of 9 in chunks of 4: two full chunks and a partial one of 3 rows.
    const int64_t prow = 11, dim = 9, chunk = 4;
    std::vector<float> px = random_vec(rng, prow * dim);
    std::vector<float> pooled(3 * dim);
    be->mean_pool(px.data(), prow, dim, chunk, pooled.data());
    for (int64_t c = 0; c < 3; ++c) {
      const int64_t r0 = c * chunk, r1 = std::min(prow, r0 + chunk);
      for (int64_t i = 0; i < dim; ++i) {
        double s = 0;
        for (int64_t r = r0; r < r1; ++r) s += px[r * dim + i];
        REQUIRE(std::fabs(pooled[c * dim + i] - s / static_cast<double>(r1 - r0)) <= 1e-6);
      }
    }
  }
}

TEST_CASE("embedding gathers rows of any float dtype and checks ids", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(3);
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    TestWeight table = make_weight(rng, dt, {50, 19});
    const int32_t ids[] = {0, 49, 7, 7};
    for (CpuBackend* be : b.all()) {
      std::vector<float> out(4 * 19);
      REQUIRE(be->embedding(table.view, ids, 4, out.data()).ok());
      for (int t = 0; t < 4; ++t) {
        for (int i = 0; i < 19; ++i) REQUIRE(out[static_cast<size_t>(t * 19 + i)] == table.values[static_cast<size_t>(ids[t] * 19 + i)]);
      }
      const int32_t bad[] = {3, 50};
      REQUIRE(be->embedding(table.view, bad, 2, out.data()).code() == StatusCode::kInvalidArgument);
      const int32_t neg[] = {-1};
      REQUIRE(be->embedding(table.view, neg, 1, out.data()).code() == StatusCode::kInvalidArgument);
    }
  }
}

namespace {

// Double-precision attention with the AttentionArgs visibility rules.
std::vector<double> attention_reference(const AttentionArgs& a) {
  const int64_t qw = a.n_heads * a.head_dim, kvw = a.n_kv_heads * a.head_dim, group = a.n_heads / a.n_kv_heads;
  const int64_t n_own = a.n_kv - a.n_prefix;
  std::vector<double> out(static_cast<size_t>(a.n_q * qw), 0.0);
  for (int64_t i = 0; i < a.n_q; ++i) {
    std::vector<int64_t> keys;
    for (int64_t j = 0; j < a.n_prefix; ++j) keys.push_back(j);
    const int64_t b = a.own_begin ? a.own_begin[i] : 0, e = a.own_end ? a.own_end[i] : n_own;
    for (int64_t r = b; r < e; ++r) {
      if (a.q_seg && a.kv_seg && a.kv_seg[r] != a.q_seg[i]) continue;
      keys.push_back(a.n_prefix + r);
    }
    for (int64_t h = 0; h < a.n_heads; ++h) {
      const int64_t g = h / group;
      std::vector<double> s;
      double mx = -1e300;
      for (int64_t j : keys) {
        double dot = 0;
        for (int64_t t = 0; t < a.head_dim; ++t) dot += static_cast<double>(a.q[i * qw + h * a.head_dim + t]) * a.k[j * kvw + g * a.head_dim + t];
        s.push_back(dot * a.scale);
        mx = std::max(mx, s.back());
      }
      double sum = 0;
      for (double& v : s) sum += (v = std::exp(v - mx));
      for (size_t jj = 0; jj < keys.size(); ++jj) {
        for (int64_t t = 0; t < a.head_dim; ++t) {
          out[static_cast<size_t>(i * qw + h * a.head_dim + t)] += s[jj] / sum * a.v[keys[jj] * kvw + g * a.head_dim + t];
        }
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("attention matches a double reference: prefix, causal ranges, segments, GQA", "[backend][attention]") {
  Backends& b = backends();
  std::mt19937 rng(21);
  struct Case {
    int64_t heads, kv_heads, d, n_q, n_prefix, n_cached;
    bool segments, causal;
  };
  const Case cases[] = {
      {4, 2, 16, 1, 0, 9, false, true},  {4, 2, 16, 7, 3, 5, false, true}, {6, 1, 8, 9, 0, 0, true, true},
      {8, 8, 12, 5, 2, 4, true, false},  {4, 4, 33, 3, 5, 0, false, false}, {6, 3, 128, 2, 4, 40, false, true},
  };
  for (const Case& cs : cases) {
    const int64_t n_kv = cs.n_prefix + cs.n_cached + cs.n_q;
    std::vector<float> q = random_vec(rng, static_cast<size_t>(cs.n_q * cs.heads * cs.d), -2.0f, 2.0f);
    std::vector<float> k = random_vec(rng, static_cast<size_t>(n_kv * cs.kv_heads * cs.d), -2.0f, 2.0f);
    std::vector<float> v = random_vec(rng, static_cast<size_t>(n_kv * cs.kv_heads * cs.d));
    std::vector<int64_t> begin(static_cast<size_t>(cs.n_q), 0), end(static_cast<size_t>(cs.n_q));
    std::vector<int32_t> qseg(static_cast<size_t>(cs.n_q)), kvseg(static_cast<size_t>(cs.n_cached + cs.n_q));
    for (size_t r = 0; r < kvseg.size(); ++r) kvseg[r] = static_cast<int32_t>(r % 3 == 0 ? 1 : 2);
    for (int64_t i = 0; i < cs.n_q; ++i) {
      end[static_cast<size_t>(i)] = cs.causal ? cs.n_cached + i + 1 : cs.n_cached + cs.n_q;
      qseg[static_cast<size_t>(i)] = kvseg[static_cast<size_t>(cs.n_cached + i)];
    }
    AttentionArgs args;
    args.q = q.data();
    args.k = k.data();
    args.v = v.data();
    args.n_q = cs.n_q;
    args.n_kv = n_kv;
    args.n_prefix = cs.n_prefix;
    args.n_heads = cs.heads;
    args.n_kv_heads = cs.kv_heads;
    args.head_dim = cs.d;
    args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(cs.d)));
    args.own_begin = begin.data();
    args.own_end = end.data();
    if (cs.segments) {
      args.q_seg = qseg.data();
      args.kv_seg = kvseg.data();
    }
    const std::vector<double> ref = attention_reference(args);
    for (CpuBackend* be : b.all()) {
      std::vector<float> out(ref.size(), std::nanf(""));
      args.out = out.data();
      REQUIRE(be->attention(args).ok());
      for (size_t i = 0; i < ref.size(); ++i) REQUIRE(std::fabs(out[i] - ref[i]) <= 2e-6);
    }
  }
  // A query that sees nothing gets zeros.
  std::vector<float> q(8, 1.0f), k(8, 1.0f), v(8, 1.0f), out(8, 5.0f);
  const int64_t b0 = 0, e0 = 0;
  AttentionArgs none;
  none.q = q.data();
  none.k = k.data();
  none.v = v.data();
  none.out = out.data();
  none.n_q = 1;
  none.n_kv = 1;
  none.n_heads = 1;
  none.n_kv_heads = 1;
  none.head_dim = 8;
  none.own_begin = &b0;
  none.own_end = &e0;
  REQUIRE(b.scalar.attention(none).ok());
  for (float o : out) REQUIRE(o == 0.0f);
  none.n_kv_heads = 3;
  REQUIRE(b.scalar.attention(none).code() == StatusCode::kShape);
}

// ------------------------------------------------------------------------------------------------ device memory

TEST_CASE("backend memory: alloc, staging, upload, download, copy, ensure", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(31);
  for (Backend* be : b.devices()) {
    INFO(be->name());
    DeviceBuffer empty;
    REQUIRE(be->alloc(0, &empty).ok());
    REQUIRE(empty.empty());
    REQUIRE(empty.bytes() == 0);
    REQUIRE(be->alloc(16, nullptr).code() == StatusCode::kInvalidArgument);
    // bytes == 0 transfers are no-ops, even without pointers.
    REQUIRE(be->upload(nullptr, nullptr, 0).ok());
    REQUIRE(be->download(nullptr, nullptr, 0).ok());
    REQUIRE(be->copy(nullptr, nullptr, 0).ok());

    const size_t n = 1001;
    const std::vector<float> host = random_vec(rng, n);
    DeviceBuffer a;
    REQUIRE(be->alloc(n * sizeof(float), &a).ok());
    REQUIRE(!a.empty());
    REQUIRE(a.bytes() == n * sizeof(float));
    REQUIRE(a.backend() == be);
    REQUIRE(!a.staging());
    REQUIRE(reinterpret_cast<uintptr_t>(a.data()) % 64 == 0);
    REQUIRE(be->upload(a.data(), host.data(), n * sizeof(float)).ok());
    REQUIRE(same_bits(to_host<float>(be, a.data(), n), host));

    // Device -> device, into the middle of another buffer; the rest of it is kept.
    DeviceBuffer c;
    REQUIRE(be->alloc(2 * n * sizeof(float), &c).ok());
    const std::vector<float> zeros(2 * n, 0.0f);
    REQUIRE(be->upload(c.data(), zeros.data(), 2 * n * sizeof(float)).ok());
    REQUIRE(be->copy(c.as<float>() + 100, a.as<float>() + 1, (n - 1) * sizeof(float)).ok());
    REQUIRE(be->synchronize().ok());
    const std::vector<float> got = to_host<float>(be, c.data(), 2 * n);
    for (size_t i = 0; i < 2 * n; ++i) {
      const float want = i >= 100 && i < 100 + n - 1 ? host[i - 99] : 0.0f;
      REQUIRE(got[i] == want);
    }
    // A partial download.
    std::vector<float> part(10);
    REQUIRE(be->download(part.data(), a.as<float>() + 500, 10 * sizeof(float)).ok());
    REQUIRE(std::equal(part.begin(), part.end(), host.begin() + 500));

    // ensure: grows to at least the size asked for (contents not kept), never shrinks.
    DeviceBuffer g;
    REQUIRE(be->ensure(&g, 0).ok());
    REQUIRE(g.empty());
    REQUIRE(be->ensure(&g, 100).ok());
    REQUIRE(g.bytes() >= 100);
    REQUIRE(g.backend() == be);
    void* const p100 = g.data();
    const size_t b100 = g.bytes();
    REQUIRE(be->ensure(&g, 40).ok());
    REQUIRE(g.data() == p100);
    REQUIRE(g.bytes() == b100);
    REQUIRE(be->ensure(&g, 5000).ok());
    REQUIRE(g.bytes() >= 5000);
    REQUIRE(be->upload(g.data(), host.data(), 1000 * sizeof(float)).ok());
    REQUIRE(to_host<float>(be, g.data(), 1000) == std::vector<float>(host.begin(), host.begin() + 1000));
    // A buffer of another backend is replaced by one of this backend.
    CpuBackend other;
    DeviceBuffer foreign;
    REQUIRE(other.alloc(4096, &foreign).ok());
    REQUIRE(be->ensure(&foreign, 64).ok());
    REQUIRE(foreign.backend() == be);
    REQUIRE(foreign.bytes() >= 64);

    // upload_vector / download_vector of other element types.
    const std::vector<int32_t> ids = {5, -3, 1 << 30, 0};
    DeviceBuffer di = to_device(be, ids);
    REQUIRE(to_host<int32_t>(be, di.data(), ids.size()) == ids);
    const std::vector<uint64_t> big = {~uint64_t{0}, 1, uint64_t{1} << 40};
    DeviceBuffer du = to_device(be, big);
    REQUIRE(to_host<uint64_t>(be, du.data(), big.size()) == big);

    // Staging memory is host memory: written directly, then uploaded.
    DeviceBuffer st;
    REQUIRE(be->alloc_staging(n * sizeof(float), &st).ok());
    REQUIRE(st.staging());
    REQUIRE(st.backend() == be);
    REQUIRE(st.bytes() == n * sizeof(float));
    for (size_t i = 0; i < n; ++i) st.as<float>()[i] = static_cast<float>(i) * 0.5f;
    REQUIRE(be->upload(a.data(), st.data(), n * sizeof(float)).ok());
    std::fill(st.as<float>(), st.as<float>() + n, -1.0f);
    REQUIRE(be->download(st.data(), a.data(), n * sizeof(float)).ok());
    for (size_t i = 0; i < n; ++i) REQUIRE(st.as<float>()[i] == static_cast<float>(i) * 0.5f);
    REQUIRE(be->alloc_staging(8, nullptr).code() == StatusCode::kInvalidArgument);
    // upload_staged: ops after it see the data; the staging buffer is reused only after a download.
    DeviceBuffer b2;
    REQUIRE(be->alloc(n * sizeof(float), &b2).ok());
    for (size_t i = 0; i < n; ++i) st.as<float>()[i] = static_cast<float>(i) + 0.25f;
    REQUIRE(be->upload_staged(b2.data(), st.data(), n * sizeof(float)).ok());
    be->scale(b2.as<float>(), 2.0f, static_cast<int64_t>(n));
    REQUIRE(be->download(st.data(), b2.data(), n * sizeof(float)).ok());
    for (size_t i = 0; i < n; ++i) REQUIRE(st.as<float>()[i] == (static_cast<float>(i) + 0.25f) * 2.0f);
    REQUIRE(be->upload_staged(b2.data(), st.data(), 0).ok());
    REQUIRE(be->upload_staged(nullptr, st.data(), 4).code() == StatusCode::kInvalidArgument);

    // Moves carry the allocation; reset frees it.
    DeviceBuffer moved(std::move(a));
    REQUIRE(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    REQUIRE(a.bytes() == 0);
    REQUIRE(moved.bytes() == n * sizeof(float));
    REQUIRE(moved.backend() == be);
    DeviceBuffer assigned;
    assigned = std::move(moved);
    REQUIRE(moved.empty());  // NOLINT(bugprone-use-after-move)
    REQUIRE(to_host<float>(be, assigned.data(), 3) == std::vector<float>{0.0f, 0.5f, 1.0f});
    assigned.reset();
    REQUIRE(assigned.empty());
    REQUIRE(assigned.backend() == nullptr);
  }
}

TEST_CASE("gather_rows copies the listed rows and checks them", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(32);
  const int64_t n_src = 37, width = 19;
  const std::vector<float> src = random_vec(rng, static_cast<size_t>(n_src * width));
  // Repeats, out of order, first and last; long enough to be split over threads.
  std::vector<int32_t> rows = {36, 0, 5, 5, 17, 36};
  for (int i = 0; i < 3000; ++i) rows.push_back(static_cast<int32_t>((i * 11) % n_src));
  const int64_t n = static_cast<int64_t>(rows.size());
  for (Backend* be : b.devices()) {
    INFO(be->name());
    DeviceBuffer dsrc = to_device(be, src);
    DeviceBuffer drows = to_device(be, rows);
    DeviceBuffer dst;
    REQUIRE(be->alloc(static_cast<size_t>(n * width) * sizeof(float), &dst).ok());
    REQUIRE(be->gather_rows(dsrc.as<float>(), n_src, width, drows.as<int32_t>(), n, dst.as<float>()).ok());
    const std::vector<float> got = to_host<float>(be, dst.data(), static_cast<size_t>(n * width));
    for (int64_t i = 0; i < n; ++i) {
      const float* want = src.data() + static_cast<int64_t>(rows[static_cast<size_t>(i)]) * width;
      REQUIRE(std::memcmp(got.data() + i * width, want, static_cast<size_t>(width) * sizeof(float)) == 0);
    }
    REQUIRE(be->gather_rows(dsrc.as<float>(), n_src, width, drows.as<int32_t>(), 0, dst.as<float>()).ok());
    for (int32_t bad : {static_cast<int32_t>(n_src), -1}) {
      const std::vector<int32_t> bad_rows = {1, bad};
      DeviceBuffer dbad = to_device(be, bad_rows);
      REQUIRE(be->gather_rows(dsrc.as<float>(), n_src, width, dbad.as<int32_t>(), 2, dst.as<float>()).code() ==
              StatusCode::kInvalidArgument);
    }
  }
}

TEST_CASE("scale multiplies in f32; l2_normalize follows the routing numerics bit for bit", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(33);
  const int64_t n = 70001;  // split over threads
  const std::vector<float> x = random_vec(rng, static_cast<size_t>(n), -100.0f, 100.0f);
  // Vectors of 128 (a head) with an all-zero one and a tiny one (norm below 1e-12: divided by 1e-12).
  const int64_t n_vec = 301, dim = 128;
  std::vector<float> v = random_vec(rng, static_cast<size_t>(n_vec * dim), -3.0f, 3.0f);
  std::fill(v.begin() + 7 * dim, v.begin() + 8 * dim, 0.0f);
  for (int64_t i = 0; i < dim; ++i) v[static_cast<size_t>(9 * dim + i)] = i % 2 ? 1e-15f : -3e-16f;
  std::vector<float> want_norm = v;
  for (int64_t r = 0; r < n_vec; ++r) {
    float* p = want_norm.data() + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    const float denom = std::max(static_cast<float>(std::sqrt(ss)), 1e-12f);
    for (int64_t i = 0; i < dim; ++i) p[i] = p[i] / denom;
  }
  // The CPU twin (routing_scan.h) is the same function.
  std::vector<float> twin = v;
  l2_normalize_heads(twin.data(), n_vec, dim);
  REQUIRE(same_bits(twin, want_norm));
  for (int64_t i = 0; i < dim; ++i) REQUIRE(want_norm[static_cast<size_t>(7 * dim + i)] == 0.0f);

  for (Backend* be : b.devices()) {
    INFO(be->name());
    DeviceBuffer dx = to_device(be, x);
    be->scale(dx.as<float>(), -0.37f, n);
    const std::vector<float> scaled = to_host<float>(be, dx.data(), x.size());
    for (int64_t i = 0; i < n; ++i) REQUIRE(scaled[static_cast<size_t>(i)] == x[static_cast<size_t>(i)] * -0.37f);
    be->scale(dx.as<float>(), 2.0f, 3);  // only the first n elements
    const std::vector<float> head = to_host<float>(be, dx.data(), 4);
    REQUIRE(head[0] == scaled[0] * 2.0f);
    REQUIRE(head[2] == scaled[2] * 2.0f);
    REQUIRE(head[3] == scaled[3]);

    DeviceBuffer dv = to_device(be, v);
    be->l2_normalize(dv.as<float>(), n_vec, dim);
    REQUIRE(same_bits(to_host<float>(be, dv.data(), v.size()), want_norm));
    // Per vector: normalising a sub-range gives the same bits.
    DeviceBuffer dv2 = to_device(be, v);
    be->l2_normalize(dv2.as<float>() + 5 * dim, 3, dim);
    const std::vector<float> part = to_host<float>(be, dv2.data(), v.size());
    REQUIRE(std::memcmp(part.data() + 5 * dim, want_norm.data() + 5 * dim, 3 * dim * sizeof(float)) == 0);
    REQUIRE(std::memcmp(part.data(), v.data(), 5 * dim * sizeof(float)) == 0);
    REQUIRE(std::memcmp(part.data() + 8 * dim, v.data() + 8 * dim, (n_vec - 8) * dim * sizeof(float)) == 0);
  }
}

TEST_CASE("decode_pages equals page_codec's decode_rows bit for bit", "[backend]") {
  Backends& b = backends();
  std::mt19937 rng(34);
  const int64_t n_heads = 4, head_dim = 24, width = n_heads * head_dim;
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    for (int64_t n_rows : {int64_t{1}, int64_t{7}, int64_t{700}}) {
      std::vector<float> src = random_vec(rng, static_cast<size_t>(n_rows * width), -5.0f, 5.0f);
      std::fill(src.begin(), src.begin() + head_dim, 0.0f);  // an all-zero head (int8 scale 0)
      src[static_cast<size_t>(head_dim)] = 1e30f;            // one large value
      std::vector<uint8_t> bytes(static_cast<size_t>(n_rows) * page_row_bytes(dt, width));
      std::vector<float> scales(static_cast<size_t>(n_rows * page_row_scales(dt, n_heads)));
      encode_rows(dt, src.data(), n_rows, n_heads, head_dim, bytes.data(), scales.empty() ? nullptr : scales.data());
      std::vector<float> want(static_cast<size_t>(n_rows * width));
      decode_rows(dt, bytes.data(), scales.empty() ? nullptr : scales.data(), n_rows, n_heads, head_dim, want.data());
      if (dt == PageDType::kF32) REQUIRE(same_bits(want, src));
      for (Backend* be : b.devices()) {
        INFO(be->name() << " " << page_dtype_name(dt) << " rows " << n_rows);
        DeviceBuffer drows = to_device(be, bytes);
        DeviceBuffer dscales;
        if (!scales.empty()) dscales = to_device(be, scales);
        DeviceBuffer out;
        REQUIRE(be->alloc(want.size() * sizeof(float), &out).ok());
        REQUIRE(be->decode_pages(dt, drows.as<uint8_t>(), dscales.as<float>(), n_rows, n_heads, head_dim,
                                 out.as<float>())
                    .ok());
        REQUIRE(same_bits(to_host<float>(be, out.data(), want.size()), want));
        if (dt == PageDType::kInt8) {
          REQUIRE(be->decode_pages(dt, drows.as<uint8_t>(), nullptr, n_rows, n_heads, head_dim, out.as<float>())
                      .code() == StatusCode::kInvalidArgument);
        }
      }
    }
  }
  for (Backend* be : b.devices()) {
    INFO(be->name());
    DeviceBuffer out;
    REQUIRE(be->alloc(64, &out).ok());
    REQUIRE(be->decode_pages(PageDType::kBF16, nullptr, nullptr, 0, n_heads, head_dim, out.as<float>()).ok());
    REQUIRE(be->decode_pages(static_cast<PageDType>(7), nullptr, nullptr, 0, n_heads, head_dim, out.as<float>())
                .code() == StatusCode::kInvalidArgument);
    REQUIRE(be->decode_pages(PageDType::kF32, nullptr, nullptr, 0, 0, head_dim, out.as<float>()).code() ==
            StatusCode::kInvalidArgument);
    REQUIRE(be->decode_pages(PageDType::kF32, nullptr, nullptr, -1, n_heads, head_dim, out.as<float>()).code() ==
            StatusCode::kInvalidArgument);
  }
}

// ------------------------------------------------------------------------------------------------ routing

namespace {

// A routing index in host memory: documents of 0..4 chunks (some without any), shuffled distinct ids, every
// fifth document tombstoned; keys ~ N(0, 1) stored in `dtype`.
struct HostRoutingIndex {
  std::vector<float> keys;
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  std::vector<int32_t> chunk_doc;
  std::vector<uint64_t> ids;
  std::vector<uint8_t> removed;
  RoutingIndexView view;
};

std::unique_ptr<HostRoutingIndex> make_routing_index(PageDType dtype, int64_t n_docs, int64_t n_kv_heads,
                                                     int64_t head_dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> chunks(0, 4);
  std::normal_distribution<float> val(0.0f, 1.0f);
  auto h = std::make_unique<HostRoutingIndex>();
  for (int64_t d = 0; d < n_docs; ++d) {
    const int n = chunks(rng);
    for (int i = 0; i < n; ++i) h->chunk_doc.push_back(static_cast<int32_t>(d));
    h->ids.push_back(static_cast<uint64_t>((d * 7919) % 1009) + 1);
    h->removed.push_back(d % 5 == 3 ? 1 : 0);
  }
  const int64_t n_chunks = static_cast<int64_t>(h->chunk_doc.size());
  const int64_t width = n_kv_heads * head_dim;
  std::vector<float> f32(static_cast<size_t>(n_chunks * width));
  for (float& x : f32) x = val(rng);
  RoutingIndexView& v = h->view;
  v.dtype = dtype;
  v.n_chunks = n_chunks;
  v.n_kv_heads = n_kv_heads;
  v.head_dim = head_dim;
  if (dtype == PageDType::kF32) {
    h->keys = f32;
    v.keys = h->keys.data();
  } else {
    h->packed.resize(static_cast<size_t>(n_chunks) * page_row_bytes(dtype, width));
    h->scales.resize(static_cast<size_t>(n_chunks * page_row_scales(dtype, n_kv_heads)));
    encode_rows(dtype, f32.data(), n_chunks, n_kv_heads, head_dim, h->packed.data(),
                h->scales.empty() ? nullptr : h->scales.data());
    v.packed = h->packed.data();
    v.scales = h->scales.empty() ? nullptr : h->scales.data();
  }
  v.chunk_doc = h->chunk_doc.data();
  v.n_documents = n_docs;
  v.doc_ids = h->ids.data();
  v.removed = h->removed.data();
  return h;
}

// An index no backend made.
class ForeignIndex final : public ResidentRoutingIndex {
 public:
  int64_t n_chunks() const override { return 0; }
  int64_t n_documents() const override { return 0; }
  int64_t device_bytes() const override { return 0; }
};

}  // namespace

TEST_CASE("route equals score_documents + select_top_k on the resident index", "[backend][router]") {
  Backends& b = backends();
  const int64_t T = 5, H = 8, G = 2, D = 16;
  std::mt19937 rng(35);
  std::normal_distribution<float> val(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(T * H * D));
  for (float& x : q) x = val(rng);
  RouterQuery host_q;
  host_q.q = q.data();
  host_q.n_tokens = T;
  host_q.n_heads = H;
  host_q.n_kv_heads = G;
  host_q.head_dim = D;
  uint32_t seed = 40;
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    const auto index = make_routing_index(dt, 150, G, D, seed++);
    const int64_t n_live = std::count(index->removed.begin(), index->removed.end(), 0);
    for (Backend* be : b.devices()) {
      INFO(be->name() << ", " << page_dtype_name(dt));
      CpuIsa isa = CpuIsa::kAuto;
      if (!scan_isa_of(be, &isa)) {
        WARN(be->name() << ": not a CPU backend, route not compared with the CPU scan");
        continue;
      }
      std::unique_ptr<ResidentRoutingIndex> resident;
      REQUIRE(be->upload_routing_index(index->view, &resident).ok());
      REQUIRE(resident != nullptr);
      REQUIRE(resident->n_chunks() == index->view.n_chunks);
      REQUIRE(resident->n_documents() == 150);
      REQUIRE(resident->device_bytes() >= 0);
      if (dynamic_cast<CpuBackend*>(be) != nullptr) REQUIRE(resident->device_bytes() == 0);  // zero-copy
      DeviceBuffer dq = to_device(be, q);
      RouteRequest req;
      req.query = host_q;
      req.query.q = dq.as<float>();
      for (HeadReduce hr : {HeadReduce::kMean, HeadReduce::kMax}) {
        for (QueryReduce qr : {QueryReduce::kMax, QueryReduce::kMean, QueryReduce::kLast}) {
          for (ChunkReduce cr : {ChunkReduce::kMax, ChunkReduce::kMean}) {
            req.reductions = RouterReductions{hr, qr, cr};
            ScanOptions so;
            so.isa = isa;
            std::vector<float> scores;
            REQUIRE(score_documents(host_q, index->view, req.reductions, &scores, so).ok());
            for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{1000}}) {
              INFO("head " << static_cast<int>(hr) << " query " << static_cast<int>(qr) << " chunk "
                           << static_cast<int>(cr) << " k " << k);
              std::vector<ScoredDocument> want;
              REQUIRE(select_top_k(scores, index->view, k, &want).ok());
              REQUIRE(want.size() == static_cast<size_t>(std::min(k, n_live)));
              req.k = k;
              req.want_scores = k == 7;
              RouteSelection sel;
              const Status s = be->route(req, *resident, &sel);
              INFO(s.to_string());
              REQUIRE(s.ok());
              REQUIRE(sel.top.size() == want.size());
              for (size_t i = 0; i < want.size(); ++i) {
                REQUIRE(sel.top[i].index == want[i].index);
                REQUIRE(sel.top[i].id == want[i].id);
                REQUIRE(std::memcmp(&sel.top[i].score, &want[i].score, sizeof(float)) == 0);
                REQUIRE(index->removed[static_cast<size_t>(sel.top[i].index)] == 0);
              }
              if (req.want_scores) {
                REQUIRE(same_bits(sel.scores, scores));
              } else {
                REQUIRE(sel.scores.empty());
              }
            }
          }
        }
      }
      // Errors: k <= 0, no output, a query of another head shape, an index that is not this backend's.
      RouteSelection sel;
      req.k = 0;
      REQUIRE(be->route(req, *resident, &sel).code() == StatusCode::kInvalidArgument);
      req.k = 3;
      REQUIRE(be->route(req, *resident, nullptr).code() == StatusCode::kInvalidArgument);
      RouteRequest wrong = req;
      wrong.query.head_dim = D / 2;
      REQUIRE(be->route(wrong, *resident, &sel).code() == StatusCode::kInvalidArgument);
      const ForeignIndex foreign;
      REQUIRE(be->route(req, foreign, &sel).code() == StatusCode::kInvalidArgument);
      REQUIRE(be->route(req, *resident, &sel).ok());
    }
  }
  // An inconsistent view is refused.
  for (Backend* be : b.devices()) {
    INFO(be->name());
    const auto index = make_routing_index(PageDType::kF32, 10, G, D, 99);
    std::unique_ptr<ResidentRoutingIndex> resident;
    RoutingIndexView bad = index->view;
    bad.n_kv_heads = 0;
    REQUIRE(be->upload_routing_index(bad, &resident).code() == StatusCode::kInvalidArgument);
    // Negative sizes: refused before anything is copied or sized from them (check_routing_view).
    for (int field = 0; field < 2; ++field) {
      bad = index->view;
      (field == 0 ? bad.n_documents : bad.n_chunks) = -1;
      REQUIRE(be->upload_routing_index(bad, &resident).code() == StatusCode::kInvalidArgument);
    }
    REQUIRE(be->upload_routing_index(index->view, nullptr).code() == StatusCode::kInvalidArgument);
    // An empty index: every live document scores -inf, the top-k is by id.
    RoutingIndexView none = index->view;
    none.n_chunks = 0;
    none.keys = nullptr;
    none.chunk_doc = nullptr;
    REQUIRE(be->upload_routing_index(none, &resident).ok());
    RouteRequest req;
    req.query = host_q;
    DeviceBuffer dq = to_device(be, q);
    req.query.q = dq.as<float>();
    req.k = 2;
    req.want_scores = true;
    RouteSelection sel;
    CpuIsa isa;
    if (!scan_isa_of(be, &isa)) continue;
    REQUIRE(be->route(req, *resident, &sel).ok());
    REQUIRE(sel.scores == std::vector<float>(10, -std::numeric_limits<float>::infinity()));
    REQUIRE(sel.top.size() == 2);
    std::vector<uint64_t> live_ids;
    for (size_t d = 0; d < 10; ++d) {
      if (!index->removed[d]) live_ids.push_back(index->ids[d]);
    }
    std::sort(live_ids.begin(), live_ids.end());
    REQUIRE(sel.top[0].id == live_ids[0]);
    REQUIRE(sel.top[1].id == live_ids[1]);
  }
}

// The guarded backend's promise, checked in a child process: its device memory is readable and writable inside
// its own ops (upload / download round-trip) and faults (SIGSEGV) when host code touches it directly. Without
// this the guarded tier could not fail.
constexpr int kFaulted = 42;  // exit status of a child whose access faulted (SIGSEGV handler)

TEST_CASE("cpu-guarded: host access to device memory faults, backend access works", "[backend]") {
  BackendParams bp;
  bp.name = "cpu-guarded";
  std::unique_ptr<Backend> be;
  const Status s = create_backend(bp, &be);
  if (s.code() == StatusCode::kUnsupported) {
    WARN("cpu-guarded is not in this build (MSA_GUARDED_BACKEND off): " << s.to_string());
    return;
  }
  REQUIRE(s.ok());
  DeviceBuffer buf;
  REQUIRE(be->alloc(4096, &buf).ok());
  const std::vector<float> in(1024, 1.5f);
  std::vector<float> out(1024, 0.0f);
  REQUIRE(be->upload(buf.data(), in.data(), 4096).ok());
  be->scale(buf.as<float>(), 2.0f, 1024);
  REQUIRE(be->download(out.data(), buf.data(), 4096).ok());
  CHECK(out[0] == 3.0f);
  CHECK(out[1023] == 3.0f);
  for (int write = 0; write < 2; ++write) {
    INFO((write ? "write" : "read"));
    std::fflush(nullptr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Our own handler, so that neither Catch2's nor a sanitizer's reports the (expected) fault in the child.
      struct sigaction sa;
      std::memset(&sa, 0, sizeof sa);
      sa.sa_handler = [](int) { _exit(kFaulted); };
      sigaction(SIGSEGV, &sa, nullptr);
      volatile float* p = buf.as<float>();
      if (write) {
        p[3] = 1.0f;
      } else {
        const float v = p[3];
        (void)v;
      }
      _exit(0);  // reached only if the access did not fault
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == kFaulted);
  }
}
