// CPU backend ops against naive double-precision references on random inputs: every weight dtype, T == 1 (GEMV)
// and T > 1 (GEMM), odd sizes, the scalar path and the AVX2 path (when this CPU has it), and both paths
// against each other.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

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
  // The backends to test: scalar always, AVX2 when this CPU runs it.
  std::vector<CpuBackend*> all() {
    std::vector<CpuBackend*> v{&scalar};
    if (avx2.isa() == CpuIsa::kAvx2) v.push_back(&avx2);
    return v;
  }
};

Backends& backends() {
  static Backends b;
  static bool reported = false;
  if (!reported) {
    reported = true;
    if (b.avx2.isa() != CpuIsa::kAvx2) WARN("this CPU lacks avx2/fma/f16c: only the scalar kernels are tested");
  }
  return b;
}

const char* dtype_label(DType dt) { return dtype_name(dt); }

}  // namespace

TEST_CASE("CPU backend picks its ISA", "[backend]") {
  Backends& b = backends();
  REQUIRE(b.scalar.isa() == CpuIsa::kScalar);
  REQUIRE(std::string(b.scalar.name()) == "cpu-scalar");
  REQUIRE((b.avx2.isa() == CpuIsa::kAvx2) == CpuBackend::cpu_has_avx2());
  REQUIRE(default_backend() != nullptr);
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
  const int64_t d = 16, half = d / 2, n = 5, heads = 3;
  const int32_t pos[n] = {0, 1, 7, 300, 262143};
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
  std::vector<float> x = random_vec(rng, static_cast<size_t>(n * heads * d));
  for (CpuBackend* be : b.all()) {
    std::vector<float> y = x;
    be->rope(y.data(), n, heads, d, c.data(), s.data());
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
  }
}

TEST_CASE("swiglu, add, softmax, mean_pool match double references", "[backend]") {
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

    const int64_t rows = 5, cols = 203;
    std::vector<float> sm = random_vec(rng, rows * cols, -20.0f, 20.0f);
    std::vector<float> ref_in = sm;
    be->softmax(sm.data(), rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      double mx = -1e300, sum = 0;
      for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, static_cast<double>(ref_in[r * cols + i]));
      for (int64_t i = 0; i < cols; ++i) sum += std::exp(ref_in[r * cols + i] - mx);
      for (int64_t i = 0; i < cols; ++i) {
        const double ref = std::exp(ref_in[r * cols + i] - mx) / sum;
        REQUIRE(std::fabs(sm[r * cols + i] - ref) <= 1e-6 * ref + 1e-9);
      }
    }

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
