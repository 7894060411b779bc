// The CUDA backend (cuda/cuda_backend.h) against the CPU backend, through the Backend interface only: every op
// runs on random inputs on both (alloc / upload / op / download), results compared with per-op tolerances;
// routing (upload_routing_index + route) on f32 / bf16 / int8 indexes with tombstones, exact score ties and
// documents without chunks, every reduction: scores within tolerance, the same top-k where the k-th gap exceeds
// the tolerance; a resident index grown by update_routing_index routes like one uploaded whole. Plus memory
// (staging, copies), error codes, and ops from several threads at once.
// Without a CUDA device, create_cuda_backend must return kNoDevice: then "SKIP: no CUDA device", exit 77. Any
// mismatch or error: a FAIL line, exit 1.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "cuda_backend.h"
#include "memory/page_codec.h"
#include "ops_fixtures.h"

namespace {

using msa::Backend;
using msa::DeviceBuffer;
using msa::DType;
using msa::PageDType;
using msa::Status;
using msa::StatusCode;
using msa::TensorView;

int g_failures = 0, g_checks = 0;

std::mt19937 g_rng(20240611);
std::vector<float> uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g_rng);
  return v;
}
int64_t uniform_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng); }

std::string fmt(const char* f, long long a = 0, long long b = 0, long long c = 0, long long d = 0) {
  char buf[200];
  std::snprintf(buf, sizeof buf, f, a, b, c, d);
  return buf;
}

void expect_true(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) ++g_failures;
  if (!ok) std::printf("FAIL %s\n", what.c_str());
}

bool expect_ok(const Status& s, const std::string& what) {
  ++g_checks;
  if (s.ok()) return true;
  ++g_failures;
  std::printf("FAIL %s: %s\n", what.c_str(), s.to_string().c_str());
  return false;
}

void expect_code(const Status& s, StatusCode code, const std::string& what) {
  ++g_checks;
  if (s.code() == code) return;
  ++g_failures;
  std::printf("FAIL %s: expected %s, got %s\n", what.c_str(), msa::status_code_name(code), s.to_string().c_str());
}

// |gpu - cpu| <= atol + rtol |cpu| per element (NaN fails unless both are NaN; equal infinities pass).
void expect_near(const char* op, const std::string& shape, const std::vector<float>& gpu,
                 const std::vector<float>& cpu, double atol, double rtol) {
  ++g_checks;
  int64_t bad = gpu.size() == cpu.size() ? 0 : -1;
  double worst = 0.0;
  for (size_t i = 0; bad >= 0 && i < cpu.size(); ++i) {
    if (gpu[i] == cpu[i] || (std::isnan(gpu[i]) && std::isnan(cpu[i]))) continue;
    const double diff = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
    if (!(diff <= atol + rtol * std::fabs(cpu[i]))) ++bad;
    worst = std::isnan(diff) ? NAN : std::max(worst, diff);
  }
  if (bad != 0) ++g_failures;
  std::printf("%-4s %-14s %-48s max_abs %.2e%s\n", bad ? "FAIL" : "ok", op, shape.c_str(), worst,
              bad ? (" (" + std::to_string(bad) + " elements out of tolerance)").c_str() : "");
}

// ------------------------------------------------------------------------------------------------ plumbing

// Host vector -> fresh backend buffer (aborts the test run on a transfer error: nothing else can be checked).
template <typename T>
DeviceBuffer up(Backend& be, const std::vector<T>& h) {
  DeviceBuffer b;
  const Status s = msa::upload_vector(&be, h.data(), h.size(), &b);
  if (!s.ok()) {
    std::printf("FAIL upload on %s: %s\n", be.name(), s.to_string().c_str());
    std::exit(1);
  }
  return b;
}
template <typename T>
DeviceBuffer zeros(Backend& be, size_t n) {
  return up(be, std::vector<T>(std::max<size_t>(n, 1)));
}
template <typename T>
std::vector<T> down(Backend& be, const DeviceBuffer& b, size_t n) {
  std::vector<T> h;
  const Status s = msa::download_vector(&be, b.data(), n, &h);
  if (!s.ok()) {
    std::printf("FAIL download on %s: %s\n", be.name(), s.to_string().c_str());
    std::exit(1);
  }
  return h;
}

// A float weight of `dt` with values uniform in [lo, hi) (ops_fixtures.h), its f32 values, and its prepared form
// on a backend.
using ops_fixtures::HostWeight;
HostWeight make_weight(DType dt, std::vector<int64_t> shape, float lo, float hi) {
  const std::vector<float> f = uniform(static_cast<size_t>(ops_fixtures::numel(shape)), lo, hi);
  return ops_fixtures::host_weight(dt, std::move(shape), f);
}
std::vector<float> widened(const HostWeight& w) {
  std::vector<float> f(static_cast<size_t>(ops_fixtures::numel(w.shape)));
  msa::convert_to_f32(w.dtype, w.bytes.data(), f.data(), f.size());
  return f;
}
struct Prepared {
  TensorView view;
  DeviceBuffer storage;
};
Prepared prepare(Backend& be, const HostWeight& w) {
  Prepared p;
  const Status s = be.prepare_weight(w.view(), &p.view, &p.storage);
  if (!s.ok()) {
    std::printf("FAIL prepare_weight on %s: %s\n", be.name(), s.to_string().c_str());
    std::exit(1);
  }
  return p;
}

// Runs `f` on both backends; f returns the op's result (downloaded) and its Status.
struct Run {
  Status st;
  std::vector<float> out;
};
using OpFn = std::function<Run(Backend&)>;
struct Both {
  Run cpu, gpu;
};
Both run_both(Backend& cpu, Backend& gpu, const OpFn& f, const std::string& what) {
  Both b{f(cpu), f(gpu)};
  expect_ok(b.cpu.st, "cpu " + what);
  expect_ok(b.gpu.st, "cuda " + what);
  return b;
}

// ------------------------------------------------------------------------------------------------ memory

void test_memory(Backend& gpu) {
  expect_true(std::string(gpu.name()) == "cuda", std::string("name() is \"cuda\", got ") + gpu.name());
  std::printf("device: %s\n", gpu.device_description().c_str());
  expect_true(!gpu.device_description().empty(), "device_description() is not empty");
  const std::vector<float> h = uniform(10000);
  DeviceBuffer a, b, st;
  expect_ok(gpu.alloc(h.size() * 4, &a), "alloc");
  expect_ok(gpu.alloc(h.size() * 4, &b), "alloc");
  expect_true(reinterpret_cast<uintptr_t>(a.data()) % 64 == 0, "device buffers are 64-byte aligned");
  expect_ok(gpu.alloc_staging(h.size() * 4, &st), "alloc_staging");
  expect_true(st.staging() && !a.staging(), "staging flags");
  DeviceBuffer empty;
  expect_ok(gpu.alloc(0, &empty), "alloc(0)");
  expect_true(empty.empty(), "alloc(0) gives an empty buffer");
  // host (pageable) -> a -> b -> staging (pinned) -> c -> host; staging reused right after an upload from it.
  std::memcpy(st.data(), h.data(), h.size() * 4);
  DeviceBuffer c;
  expect_ok(gpu.alloc(h.size() * 4, &c), "alloc");
  expect_ok(gpu.upload(a.data(), h.data(), h.size() * 4), "upload pageable");
  expect_ok(gpu.copy(b.data(), a.data(), h.size() * 4), "copy");
  expect_ok(gpu.upload(c.data(), st.data(), h.size() * 4), "upload pinned");
  std::memset(st.data(), 0, h.size() * 4);  // upload() returned: the copy must not see this
  std::vector<float> back(h.size()), back_c(h.size());
  expect_ok(gpu.download(back.data(), b.data(), h.size() * 4), "download");
  expect_ok(gpu.download(back_c.data(), c.data(), h.size() * 4), "download");
  expect_ok(gpu.download(st.data(), b.data(), h.size() * 4), "download to staging");
  expect_true(back == h && back_c == h && std::memcmp(st.data(), h.data(), h.size() * 4) == 0,
              "upload / copy / download round trips (pageable and pinned)");
  expect_ok(gpu.upload(a.data(), nullptr, 0), "upload of 0 bytes");
  expect_ok(gpu.synchronize(), "synchronize");
  DeviceBuffer huge;
  expect_code(gpu.alloc(size_t{1} << 60, &huge), StatusCode::kOutOfMemory, "alloc(2^60) -> kOutOfMemory");
  expect_ok(gpu.synchronize(), "synchronize after a failed alloc");
  std::printf("ok   memory (alloc, staging, upload, download, copy)\n");
}

// ------------------------------------------------------------------------------------------------ forward ops

void test_matmul(Backend& cpu, Backend& gpu) {
  struct Case {
    int64_t t, out, in;
  };
  for (DType dt : {DType::kBF16, DType::kF32, DType::kF16}) {
    for (const Case& c : {Case{1, 64, 160}, Case{9, 96, 200}, Case{33, 257, 130}, Case{4, 512, 2560}}) {
      const HostWeight w = make_weight(dt, {c.out, c.in}, -0.1f, 0.1f);
      const std::vector<float> x = uniform(static_cast<size_t>(c.t * c.in), -2.0f, 2.0f);
      Both r = run_both(cpu, gpu, [&](Backend& be) {
        Prepared p = prepare(be, w);
        DeviceBuffer dx = up(be, x), dy = zeros<float>(be, static_cast<size_t>(c.t * c.out));
        Run run;
        run.st = be.matmul(dx.as<float>(), c.t, p.view, dy.as<float>());
        run.out = down<float>(be, dy, static_cast<size_t>(c.t * c.out));
        return run;
      }, "matmul");
      // Bound sum_i |x_i w_i| per output; bf16 rounds x to bf16 (2^-9 per product) plus f32 sums, f32 / f16
      // weights (f16 widened to f32) differ by the summation order only.
      const std::vector<float> wf = widened(w);
      const double tol = dt == DType::kBF16 ? 2.5e-3 : 5e-5;
      int64_t bad = 0;
      double worst = 0.0;
      for (int64_t t = 0; t < c.t; ++t) {
        for (int64_t o = 0; o < c.out; ++o) {
          double bound = 0.0;
          for (int64_t i = 0; i < c.in; ++i) {
            bound += std::fabs(static_cast<double>(x[static_cast<size_t>(t * c.in + i)]) * wf[static_cast<size_t>(o * c.in + i)]);
          }
          const size_t e = static_cast<size_t>(t * c.out + o);
          const double diff = std::fabs(static_cast<double>(r.gpu.out[e]) - r.cpu.out[e]);
          worst = std::max(worst, diff / (bound + 1e-30));
          if (!(diff <= tol * bound + 1e-30)) ++bad;
        }
      }
      ++g_checks;
      if (bad) ++g_failures;
      std::printf("%-4s %-14s %-48s max |err|/sum|xw| %.2e (tol %.1e)\n", bad ? "FAIL" : "ok", "matmul",
                  (std::string(msa::dtype_name(dt)) + fmt(" T=%lld out=%lld in=%lld", c.t, c.out, c.in)).c_str(),
                  worst, tol);
    }
  }
  // Errors: the same codes as the CPU.
  for (Backend* be : {&cpu, &gpu}) {
    const HostWeight w1 = make_weight(DType::kBF16, {64}, -1.0f, 1.0f);
    const HostWeight w2 = make_weight(DType::kBF16, {8, 8}, -1.0f, 1.0f);
    Prepared p1 = prepare(*be, w1), p2 = prepare(*be, w2);
    DeviceBuffer dx = zeros<float>(*be, 64), dy = zeros<float>(*be, 64);
    const std::string n = be->name();
    expect_code(be->matmul(dx.as<float>(), 1, p1.view, dy.as<float>()), StatusCode::kShape, n + " matmul 1-D weight");
    expect_code(be->matmul(dx.as<float>(), 0, p2.view, dy.as<float>()), StatusCode::kShape, n + " matmul n_rows 0");
    TensorView i32 = p2.view;
    i32.dtype = DType::kI32;
    expect_code(be->matmul(dx.as<float>(), 1, i32, dy.as<float>()), StatusCode::kDtype, n + " matmul i32 weight");
    HostWeight wi;
    wi.dtype = DType::kI32;
    wi.shape = {2, 2};
    wi.bytes.resize(16);
    TensorView out;
    DeviceBuffer storage;
    expect_code(be->prepare_weight(wi.view(), &out, &storage), StatusCode::kDtype, n + " prepare_weight i32");
  }
}

void test_rmsnorm(Backend& cpu, Backend& gpu) {
  struct Case {
    DType dt;
    int64_t rows, dim;
    bool alias;
  };
  for (const Case& c : {Case{DType::kBF16, 1, 2560, false}, Case{DType::kBF16, 12, 128, true},
                        Case{DType::kF32, 7, 1000, false}, Case{DType::kF16, 5, 64, true}}) {
    const HostWeight w = make_weight(c.dt, {c.dim}, 0.5f, 1.5f);
    const std::vector<float> x = uniform(static_cast<size_t>(c.rows * c.dim), -4.0f, 4.0f);
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      Prepared p = prepare(be, w);
      DeviceBuffer dx = up(be, x), dy = zeros<float>(be, x.size());
      float* y = c.alias ? dx.as<float>() : dy.as<float>();
      Run run;
      run.st = be.rmsnorm(dx.as<float>(), c.rows, c.dim, p.view, 1e-6f, y);
      run.out = down<float>(be, c.alias ? dx : dy, x.size());
      return run;
    }, "rmsnorm");
    expect_near("rmsnorm", std::string(msa::dtype_name(c.dt)) + fmt(" rows=%lld dim=%lld", c.rows, c.dim) +
                               (c.alias ? " in place" : ""),
                r.gpu.out, r.cpu.out, 1e-6, 2e-6);
  }
  for (Backend* be : {&cpu, &gpu}) {
    Prepared p = prepare(*be, make_weight(DType::kF32, {16}, 0.0f, 1.0f));
    DeviceBuffer dx = zeros<float>(*be, 32);
    expect_code(be->rmsnorm(dx.as<float>(), 1, 32, p.view, 1e-6f, dx.as<float>()), StatusCode::kShape,
                std::string(be->name()) + " rmsnorm weight of 16 for rows of 32");
  }
}

void test_rope(Backend& cpu, Backend& gpu) {
  struct Case {
    int64_t n_tokens, n_heads, head_dim;
    double theta;
    int32_t max_pos;
  };
  // The last case has positions past the CPU's shared table (2^20): it computes a per-call table there.
  for (const Case& c : {Case{1, 32, 128, 1e6, 4096}, Case{40, 4, 64, 1e4, 131071}, Case{17, 2, 32, 1e6, 100},
                        Case{5, 3, 128, 1e6, 3000000}}) {
    std::vector<int32_t> pos(static_cast<size_t>(c.n_tokens));
    for (int32_t& p : pos) p = static_cast<int32_t>(uniform_int(0, c.max_pos));
    pos[0] = 0;
    const std::vector<float> x = uniform(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), -2.0f, 2.0f);
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer dx = up(be, x), dp = up(be, pos);
      Run run;
      run.st = be.rope(dx.as<float>(), c.n_tokens, c.n_heads, c.head_dim, dp.as<int32_t>(), c.theta);
      run.out = down<float>(be, dx, x.size());
      return run;
    }, "rope");
    // The same f32 table (cos / sin of the f32 angle in double on both sides) and the same operations: a few
    // ulps at most (device and host double pow / cos / sin may differ in the last bit of a double).
    expect_near("rope", fmt("T=%lld heads=%lld d=%lld max_pos=%lld", c.n_tokens, c.n_heads, c.head_dim, c.max_pos),
                r.gpu.out, r.cpu.out, 1e-6, 1e-6);
  }
  for (Backend* be : {&cpu, &gpu}) {
    DeviceBuffer dx = zeros<float>(*be, 8);
    DeviceBuffer dp = zeros<int32_t>(*be, 1);
    expect_code(be->rope(dx.as<float>(), 1, 1, 7, dp.as<int32_t>(), 1e4), StatusCode::kInvalidArgument,
                std::string(be->name()) + " rope odd head_dim");
  }
}

void test_elementwise(Backend& cpu, Backend& gpu) {
  for (int64_t n : {1, 1000, 100003}) {
    const std::vector<float> a = uniform(static_cast<size_t>(n), -8.0f, 8.0f), b = uniform(static_cast<size_t>(n));
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer da = up(be, a), db = up(be, b), dout = zeros<float>(be, a.size());
      be.swiglu(da.as<float>(), db.as<float>(), dout.as<float>(), n);
      Run run;
      run.st = be.synchronize();
      run.out = down<float>(be, dout, a.size());
      return run;
    }, "swiglu");
    expect_near("swiglu", fmt("n=%lld", n), r.gpu.out, r.cpu.out, 1e-30, 2e-6);
    r = run_both(cpu, gpu, [&](Backend& be) {  // in place into a
      DeviceBuffer da = up(be, a), db = up(be, b);
      be.add(da.as<float>(), db.as<float>(), da.as<float>(), n);
      Run run;
      run.st = be.synchronize();
      run.out = down<float>(be, da, a.size());
      return run;
    }, "add");
    expect_near("add", fmt("n=%lld (in place)", n), r.gpu.out, r.cpu.out, 0.0, 0.0);
    r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer da = up(be, a);
      be.scale(da.as<float>(), 0.0883883476f, n);
      Run run;
      run.st = be.synchronize();
      run.out = down<float>(be, da, a.size());
      return run;
    }, "scale");
    expect_near("scale", fmt("n=%lld", n), r.gpu.out, r.cpu.out, 0.0, 0.0);
  }
}

void test_embedding_gather(Backend& cpu, Backend& gpu) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    const int64_t vocab = 1000, dim = 96, n = 17;
    const HostWeight table = make_weight(dt, {vocab, dim}, -1.0f, 1.0f);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int32_t& id : ids) id = static_cast<int32_t>(uniform_int(0, vocab - 1));
    ids[0] = static_cast<int32_t>(vocab - 1);
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      Prepared p = prepare(be, table);
      DeviceBuffer di = up(be, ids), dout = zeros<float>(be, static_cast<size_t>(n * dim));
      Run run;
      run.st = be.embedding(p.view, di.as<int32_t>(), n, dout.as<float>());
      run.out = down<float>(be, dout, static_cast<size_t>(n * dim));
      return run;
    }, "embedding");
    expect_near("embedding", std::string(msa::dtype_name(dt)) + fmt(" [%lld,%lld] n=%lld", vocab, dim, n), r.gpu.out,
                r.cpu.out, 0.0, 0.0);
    for (Backend* be : {&cpu, &gpu}) {
      std::vector<int32_t> bad = ids;
      bad[5] = static_cast<int32_t>(vocab);
      Prepared p = prepare(*be, table);
      DeviceBuffer di = up(*be, bad), dout = zeros<float>(*be, static_cast<size_t>(n * dim));
      expect_code(be->embedding(p.view, di.as<int32_t>(), n, dout.as<float>()), StatusCode::kInvalidArgument,
                  std::string(be->name()) + " embedding id == vocab");
    }
  }
  struct GCase {
    int64_t n_src, width, n;
  };
  for (const GCase& c : {GCase{10, 1, 4}, GCase{37, 129, 12}, GCase{5, 151936, 3}}) {
    const std::vector<float> src = uniform(static_cast<size_t>(c.n_src * c.width));
    std::vector<int32_t> rows(static_cast<size_t>(c.n));
    for (int32_t& v : rows) v = static_cast<int32_t>(uniform_int(0, c.n_src - 1));
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer ds = up(be, src), dr = up(be, rows), dout = zeros<float>(be, static_cast<size_t>(c.n * c.width));
      Run run;
      run.st = be.gather_rows(ds.as<float>(), c.n_src, c.width, dr.as<int32_t>(), c.n, dout.as<float>());
      run.out = down<float>(be, dout, static_cast<size_t>(c.n * c.width));
      return run;
    }, "gather_rows");
    expect_near("gather_rows", fmt("src %lld x %lld, n=%lld", c.n_src, c.width, c.n), r.gpu.out, r.cpu.out, 0.0, 0.0);
    for (Backend* be : {&cpu, &gpu}) {
      for (int32_t b : {-1, static_cast<int32_t>(c.n_src)}) {
        std::vector<int32_t> bad = rows;
        bad.back() = b;
        DeviceBuffer ds = up(*be, src), dr = up(*be, bad), dout = zeros<float>(*be, static_cast<size_t>(c.n * c.width));
        expect_code(be->gather_rows(ds.as<float>(), c.n_src, c.width, dr.as<int32_t>(), c.n, dout.as<float>()),
                    StatusCode::kInvalidArgument, std::string(be->name()) + fmt(" gather_rows row %lld", b));
      }
    }
  }
}

void test_attention(Backend& cpu, Backend& gpu) {
  struct Case {
    int64_t hq, hkv, d, n_q, n_prefix, n_cached;
    int mode;  // ops_fixtures::make_attention_masks; 1: no windows; 2: with segments
  };
  for (const Case& c : {Case{8, 2, 64, 1, 30, 200, 0}, Case{4, 4, 128, 37, 10, 0, 0}, Case{4, 2, 80, 13, 9, 3, 3},
                        Case{4, 2, 64, 64, 20, 0, 2}, Case{2, 1, 32, 9, 0, 5, 1}, Case{4, 2, 16, 6, 0, 0, 4},
                        Case{32, 8, 128, 1, 400, 600, 0}}) {
    const int64_t n_own = c.n_cached + c.n_q, n_kv = c.n_prefix + n_own;
    const std::vector<float> q = uniform(static_cast<size_t>(c.n_q * c.hq * c.d), -2.0f, 2.0f);
    const std::vector<float> k = uniform(static_cast<size_t>(n_kv * c.hkv * c.d), -2.0f, 2.0f);
    const std::vector<float> v = uniform(static_cast<size_t>(n_kv * c.hkv * c.d));
    const ops_fixtures::AttentionMasks m =
        ops_fixtures::make_attention_masks(c.n_q, c.n_cached, c.mode, [](int64_t lo, int64_t hi) { return uniform_int(lo, hi); });
    const bool windows = c.mode != 1, segs = c.mode == 2;
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer dq = up(be, q), dk = up(be, k), dv = up(be, v), dout = up(be, std::vector<float>(q.size(), 7.0f));
      DeviceBuffer dob = up(be, m.own_begin), doe = up(be, m.own_end), dqs = up(be, m.q_seg), dks = up(be, m.kv_seg);
      msa::AttentionArgs a;
      a.q = dq.as<float>();
      a.k = dk.as<float>();
      a.v = dv.as<float>();
      a.out = dout.as<float>();
      a.n_q = c.n_q;
      a.n_kv = n_kv;
      a.n_prefix = c.n_prefix;
      a.n_heads = c.hq;
      a.n_kv_heads = c.hkv;
      a.head_dim = c.d;
      a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));
      a.own_begin = windows ? dob.as<int64_t>() : nullptr;
      a.own_end = windows ? doe.as<int64_t>() : nullptr;
      a.q_seg = segs ? dqs.as<int32_t>() : nullptr;
      a.kv_seg = segs ? dks.as<int32_t>() : nullptr;
      Run run;
      run.st = be.attention(a);
      run.out = down<float>(be, dout, q.size());
      return run;
    }, "attention");
    expect_near("attention",
                fmt("h%lld/%lld d%lld q%lld", c.hq, c.hkv, c.d, c.n_q) + fmt(" pre%lld own%lld mode %lld", c.n_prefix,
                                                                             n_own, c.mode),
                r.gpu.out, r.cpu.out, 2e-5, 1e-4);
  }
  for (Backend* be : {&cpu, &gpu}) {
    DeviceBuffer d = zeros<float>(*be, 64);
    msa::AttentionArgs a;
    a.q = a.k = a.v = d.as<float>();
    a.out = d.as<float>() + 32;
    a.n_q = a.n_kv = 1;
    a.n_heads = 6;
    a.n_kv_heads = 4;
    a.head_dim = 4;
    expect_code(be->attention(a), StatusCode::kShape, std::string(be->name()) + " attention 6 heads over 4 kv heads");
  }
}

void test_pool_norm_decode(Backend& cpu, Backend& gpu) {
  struct PCase {
    int64_t rows, dim, chunk;
  };
  for (const PCase& c : {PCase{64, 128, 64}, PCase{100, 1024, 64}, PCase{5, 7, 2}, PCase{1, 2560, 64}}) {
    const std::vector<float> x = uniform(static_cast<size_t>(c.rows * c.dim), -3.0f, 3.0f);
    const int64_t n_chunks = (c.rows + c.chunk - 1) / c.chunk;
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer dx = up(be, x), dout = zeros<float>(be, static_cast<size_t>(n_chunks * c.dim));
      be.mean_pool(dx.as<float>(), c.rows, c.dim, c.chunk, dout.as<float>());
      Run run;
      run.st = be.synchronize();
      run.out = down<float>(be, dout, static_cast<size_t>(n_chunks * c.dim));
      return run;
    }, "mean_pool");
    expect_near("mean_pool", fmt("rows=%lld dim=%lld chunk=%lld", c.rows, c.dim, c.chunk), r.gpu.out, r.cpu.out, 0.0,
                0.0);
  }
  for (int64_t nv : {1, 33, 2048}) {
    const int64_t dim = 128;
    std::vector<float> x = uniform(static_cast<size_t>(nv * dim), -3.0f, 3.0f);
    std::fill(x.begin(), x.begin() + dim, 0.0f);  // a zero vector
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer dx = up(be, x);
      be.l2_normalize(dx.as<float>(), nv, dim);
      Run run;
      run.st = be.synchronize();
      run.out = down<float>(be, dx, x.size());
      return run;
    }, "l2_normalize");
    expect_near("l2_normalize", fmt("%lld x %lld", nv, dim), r.gpu.out, r.cpu.out, 0.0, 0.0);
  }
  for (PageDType t : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    const int64_t n_rows = 50, n_heads = 8, head_dim = 128, width = n_heads * head_dim;
    const std::vector<float> src = uniform(static_cast<size_t>(n_rows * width), -2.0f, 2.0f);
    std::vector<uint8_t> rows(static_cast<size_t>(n_rows) * msa::page_row_bytes(t, width));
    std::vector<float> scales(static_cast<size_t>(n_rows * n_heads));
    msa::encode_rows(t, src.data(), n_rows, n_heads, head_dim, rows.data(), scales.data());
    Both r = run_both(cpu, gpu, [&](Backend& be) {
      DeviceBuffer dr = up(be, rows), ds = up(be, scales), dout = zeros<float>(be, src.size());
      Run run;
      run.st = be.decode_pages(t, dr.as<uint8_t>(), t == PageDType::kInt8 ? ds.as<float>() : nullptr, n_rows, n_heads,
                               head_dim, dout.as<float>());
      run.out = down<float>(be, dout, src.size());
      return run;
    }, "decode_pages");
    expect_near("decode_pages", std::string(msa::page_dtype_name(t)) + fmt(" %lld rows of %lld x %lld", n_rows,
                                                                          n_heads, head_dim),
                r.gpu.out, r.cpu.out, 0.0, 0.0);
  }
  for (Backend* be : {&cpu, &gpu}) {
    DeviceBuffer d = zeros<float>(*be, 16);
    expect_code(be->decode_pages(PageDType::kInt8, d.as<uint8_t>(), nullptr, 1, 1, 4, d.as<float>() + 4),
                StatusCode::kInvalidArgument, std::string(be->name()) + " decode_pages int8 without scales");
    expect_code(be->decode_pages(static_cast<PageDType>(7), d.as<uint8_t>(), nullptr, 1, 1, 4, d.as<float>() + 4),
                StatusCode::kInvalidArgument, std::string(be->name()) + " decode_pages dtype 7");
  }
}

// ------------------------------------------------------------------------------------------------ routing

// A host routing index: every 7th document repeats the previous one's keys (exact score ties), every 11th is
// tombstoned, every 13th has no chunks (-inf), ids a random permutation of large values.
struct HostIndex {
  PageDType dtype = PageDType::kF32;
  int64_t n_kv_heads = 0, head_dim = 0, n_docs = 0;
  std::vector<float> keys, scales;
  std::vector<uint8_t> packed;
  std::vector<int32_t> chunk_doc;
  std::vector<uint64_t> ids;
  std::vector<uint8_t> removed;
  msa::RoutingIndexView view() const {
    msa::RoutingIndexView v;
    v.dtype = dtype;
    v.n_chunks = static_cast<int64_t>(chunk_doc.size());
    v.n_kv_heads = n_kv_heads;
    v.head_dim = head_dim;
    v.keys = dtype == PageDType::kF32 ? keys.data() : nullptr;
    v.packed = dtype == PageDType::kF32 ? nullptr : packed.data();
    v.scales = dtype == PageDType::kInt8 ? scales.data() : nullptr;
    v.chunk_doc = chunk_doc.data();
    v.n_documents = n_docs;
    v.doc_ids = ids.data();
    v.removed = removed.data();
    return v;
  }
};

HostIndex make_index(PageDType dt, int64_t g, int64_t d, int64_t n_docs) {
  HostIndex h;
  h.dtype = dt;
  h.n_kv_heads = g;
  h.head_dim = d;
  h.n_docs = n_docs;
  const int64_t width = g * d;
  std::vector<float> f32;
  std::vector<float> prev;
  for (int64_t doc = 0; doc < n_docs; ++doc) {
    std::vector<float> rows;
    if (doc % 7 == 6) {
      rows = prev;
    } else if (doc % 13 != 12) {
      rows = uniform(static_cast<size_t>(uniform_int(1, 5) * width));
    }
    for (size_t c = 0; c < rows.size() / static_cast<size_t>(width); ++c) h.chunk_doc.push_back(static_cast<int32_t>(doc));
    f32.insert(f32.end(), rows.begin(), rows.end());
    prev = rows;
  }
  // Chunks of a document need not be contiguous: swap a few chunk rows between documents' positions.
  const int64_t n_chunks = static_cast<int64_t>(h.chunk_doc.size());
  for (int s = 0; s < 20 && n_chunks > 1; ++s) {
    const int64_t a = uniform_int(0, n_chunks - 1), b = uniform_int(0, n_chunks - 1);
    std::swap(h.chunk_doc[static_cast<size_t>(a)], h.chunk_doc[static_cast<size_t>(b)]);
    std::swap_ranges(f32.begin() + a * width, f32.begin() + (a + 1) * width, f32.begin() + b * width);
  }
  if (dt == PageDType::kF32) {
    h.keys = f32;
  } else {
    h.packed.resize(static_cast<size_t>(n_chunks) * msa::page_row_bytes(dt, width));
    h.scales.resize(static_cast<size_t>(n_chunks * g));
    msa::encode_rows(dt, f32.data(), n_chunks, g, d, h.packed.data(), h.scales.data());
  }
  h.ids.resize(static_cast<size_t>(n_docs));
  for (int64_t i = 0; i < n_docs; ++i) h.ids[static_cast<size_t>(i)] = 1000003ULL * static_cast<uint64_t>(i) + 17;
  std::shuffle(h.ids.begin(), h.ids.end(), g_rng);
  h.removed.resize(static_cast<size_t>(n_docs));
  for (int64_t i = 0; i < n_docs; ++i) h.removed[static_cast<size_t>(i)] = i % 11 == 10 ? 1 : 0;
  return h;
}

const char* head_name(msa::HeadReduce r) { return r == msa::HeadReduce::kMean ? "mean" : "max"; }
const char* query_name(msa::QueryReduce r) {
  return r == msa::QueryReduce::kMax ? "max" : (r == msa::QueryReduce::kMean ? "mean" : "last");
}
const char* chunk_name(msa::ChunkReduce r) { return r == msa::ChunkReduce::kMean ? "mean" : "max"; }

void test_route(Backend& cpu, Backend& gpu) {
  struct Case {
    int64_t t, h, g, d, n_docs, k;
  };
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    for (const Case& c : {Case{5, 8, 2, 64, 300, 16}, Case{1, 4, 4, 32, 50, 64}, Case{40, 16, 4, 128, 1000, 10}}) {
      const HostIndex hi = make_index(dt, c.g, c.d, c.n_docs);
      const std::vector<float> q = uniform(static_cast<size_t>(c.t * c.h * c.d));
      int64_t n_live = 0;
      for (uint8_t r : hi.removed) n_live += r ? 0 : 1;
      std::unique_ptr<msa::ResidentRoutingIndex> ci, gi;
      if (!expect_ok(cpu.upload_routing_index(hi.view(), &ci), "cpu upload_routing_index") ||
          !expect_ok(gpu.upload_routing_index(hi.view(), &gi), "cuda upload_routing_index")) {
        continue;
      }
      expect_true(gi->n_chunks() == static_cast<int64_t>(hi.chunk_doc.size()) && gi->n_documents() == c.n_docs &&
                      gi->device_bytes() > 0,
                  "cuda resident index sizes");
      DeviceBuffer cq = up(cpu, q), gq = up(gpu, q);
      for (msa::HeadReduce hr : {msa::HeadReduce::kMean, msa::HeadReduce::kMax}) {
        for (msa::QueryReduce qr : {msa::QueryReduce::kMax, msa::QueryReduce::kMean, msa::QueryReduce::kLast}) {
          for (msa::ChunkReduce cr : {msa::ChunkReduce::kMax, msa::ChunkReduce::kMean}) {
            msa::RouteRequest req;
            req.query.n_tokens = c.t;
            req.query.n_heads = c.h;
            req.query.n_kv_heads = c.g;
            req.query.head_dim = c.d;
            req.reductions.head = hr;
            req.reductions.query = qr;
            req.reductions.chunk = cr;
            req.k = c.k;
            req.want_scores = true;
            msa::RouteSelection cs, gs;
            req.query.q = cq.as<float>();
            const bool ok_c = expect_ok(cpu.route(req, *ci, &cs), "cpu route");
            req.query.q = gq.as<float>();
            const bool ok_g = expect_ok(gpu.route(req, *gi, &gs), "cuda route");
            if (!ok_c || !ok_g) continue;
            const std::string shape = std::string(msa::page_dtype_name(dt)) +
                                      fmt(" T%lld h%lld/%lld d%lld", c.t, c.h, c.g, c.d) +
                                      fmt(" docs%lld k%lld ", c.n_docs, c.k) + head_name(hr) + "/" + query_name(qr) +
                                      "/" + chunk_name(cr);
            // Scores: |q|, |k| <= 1, dot products of length <= d summed in another order (GQA collapse, int8
            // scale per head product): a few f32 ulps of the magnitude d.
            const double tol = 2e-6 * static_cast<double>(c.d);
            expect_near("route scores", shape, gs.scores, cs.scores, tol, 1e-5);
            // Top-k: k = min(k, live); no tombstone; the same documents in the same order wherever neighbouring
            // CPU scores are further apart than 2 tol; elsewhere (near ties) the GPU's pick must score within
            // 2 tol of the CPU's on the CPU.
            const size_t kk = static_cast<size_t>(std::min(c.k, n_live));
            bool ok = cs.top.size() == kk && gs.top.size() == kk;
            for (size_t i = 0; ok && i < kk; ++i) {
              const msa::ScoredDocument& a = cs.top[i];
              const msa::ScoredDocument& b = gs.top[i];
              ok = !hi.removed[static_cast<size_t>(b.index)] && b.id == hi.ids[static_cast<size_t>(b.index)];
              if (ok && a.index != b.index) {
                const float sa = cs.scores[static_cast<size_t>(a.index)], sb = cs.scores[static_cast<size_t>(b.index)];
                ok = (std::isinf(sa) && sa == sb) || std::fabs(static_cast<double>(sa) - sb) <= 2 * tol + 1e-5 * std::fabs(sa);
              }
            }
            // The k-th gap: the best live document outside the CPU's top-k scores below the k-th by > 2 tol ->
            // the same set.
            if (ok && kk > 0 && kk < static_cast<size_t>(n_live)) {
              std::vector<uint8_t> in_top(static_cast<size_t>(c.n_docs), 0);
              for (const msa::ScoredDocument& s : cs.top) in_top[static_cast<size_t>(s.index)] = 1;
              float next = -INFINITY;
              for (int64_t i = 0; i < c.n_docs; ++i) {
                if (!in_top[static_cast<size_t>(i)] && !hi.removed[static_cast<size_t>(i)]) {
                  next = std::max(next, cs.scores[static_cast<size_t>(i)]);
                }
              }
              const float kth = cs.top.back().score;
              if (std::isfinite(kth) && static_cast<double>(kth) - next > 2 * tol + 1e-5 * std::fabs(kth)) {
                std::vector<int64_t> a, b;
                for (size_t i = 0; i < kk; ++i) {
                  a.push_back(cs.top[i].index);
                  b.push_back(gs.top[i].index);
                }
                std::sort(a.begin(), a.end());
                std::sort(b.begin(), b.end());
                ok = a == b;
              }
            }
            ++g_checks;
            if (!ok) ++g_failures;
            std::printf("%-4s %-14s %s\n", ok ? "ok" : "FAIL", "route top-k", shape.c_str());
            // want_scores = false: no scores, the same top-k.
            req.want_scores = false;
            msa::RouteSelection g2;
            if (expect_ok(gpu.route(req, *gi, &g2), "cuda route without scores")) {
              bool same = g2.scores.empty() && g2.top.size() == gs.top.size();
              for (size_t i = 0; same && i < g2.top.size(); ++i) same = g2.top[i].index == gs.top[i].index;
              expect_true(same, "cuda route without scores: no scores, the same top-k (" + shape + ")");
            }
          }
        }
      }
      // Errors.
      msa::RouteRequest bad;
      bad.query = {gq.as<float>(), c.t, c.h, c.g, c.d};
      msa::RouteSelection out;
      bad.k = 0;
      expect_code(gpu.route(bad, *gi, &out), StatusCode::kInvalidArgument, "cuda route k = 0");
      bad.k = 4;
      bad.query.head_dim = c.d * 2;
      expect_code(gpu.route(bad, *gi, &out), StatusCode::kInvalidArgument, "cuda route with another head_dim");
      bad.query.head_dim = c.d;
      expect_code(gpu.route(bad, *ci, &out), StatusCode::kInvalidArgument, "cuda route over the CPU's index");
    }
  }
  // Inconsistent views.
  HostIndex h = make_index(PageDType::kF32, 2, 8, 20);
  msa::RoutingIndexView v = h.view();
  std::unique_ptr<msa::ResidentRoutingIndex> r;
  v.n_documents = 3;  // chunk_doc entries past it
  expect_code(gpu.upload_routing_index(v, &r), StatusCode::kInvalidArgument, "cuda upload_routing_index chunk_doc >= n");
  v = h.view();
  v.keys = nullptr;
  expect_code(gpu.upload_routing_index(v, &r), StatusCode::kInvalidArgument, "cuda upload_routing_index no keys");
  // An empty index: no documents, no top-k.
  v = h.view();
  v.n_chunks = 0;
  v.n_documents = 0;
  if (expect_ok(gpu.upload_routing_index(v, &r), "cuda upload_routing_index empty")) {
    DeviceBuffer gq = up(gpu, uniform(16 * 8));
    msa::RouteRequest req;
    req.query = {gq.as<float>(), 1, 2, 2, 8};
    req.want_scores = true;
    msa::RouteSelection out;
    expect_ok(gpu.route(req, *r, &out), "cuda route over an empty index");
    expect_true(out.top.empty() && out.scores.empty(), "cuda route over an empty index: nothing selected");
  }
}

// update_routing_index (what ResidentBank::sync does after add / remove): an index uploaded from a prefix of the
// chunks and grown twice (the device arrays reallocate), tombstones changed on the way, routes bit for bit like
// an index uploaded whole. Shrinking views are refused.
void test_route_update(Backend& gpu) {
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    const HostIndex hi = make_index(dt, 4, 64, 400);
    const int64_t n = static_cast<int64_t>(hi.chunk_doc.size());
    const std::vector<uint8_t> none(hi.removed.size(), 0);
    msa::RoutingIndexView v0 = hi.view(), v1 = hi.view();
    v0.n_chunks = n / 10;
    v0.removed = none.data();
    v1.n_chunks = n / 2;
    std::unique_ptr<msa::ResidentRoutingIndex> grown, whole;
    if (!expect_ok(gpu.upload_routing_index(v0, &grown), "cuda upload_routing_index (prefix)") ||
        !expect_ok(gpu.update_routing_index(v1, grown.get()), "cuda update_routing_index (half)") ||
        !expect_ok(gpu.update_routing_index(hi.view(), grown.get()), "cuda update_routing_index (all)") ||
        !expect_ok(gpu.upload_routing_index(hi.view(), &whole), "cuda upload_routing_index (all)")) {
      continue;
    }
    const std::string what = std::string("cuda update_routing_index, ") + msa::page_dtype_name(dt);
    expect_true(grown->n_chunks() == n && grown->n_documents() == hi.n_docs, what + ": sizes");
    expect_code(gpu.update_routing_index(v1, grown.get()), StatusCode::kInvalidArgument, what + ": a shrinking view");
    DeviceBuffer gq = up(gpu, uniform(static_cast<size_t>(3 * 16 * 64)));
    msa::RouteRequest req;
    req.query = {gq.as<float>(), 3, 16, 4, 64};
    req.k = 20;
    req.want_scores = true;
    msa::RouteSelection a, b;
    if (!expect_ok(gpu.route(req, *grown, &a), "cuda route (grown)") ||
        !expect_ok(gpu.route(req, *whole, &b), "cuda route (whole)")) {
      continue;
    }
    bool same = a.scores.size() == b.scores.size() && a.top.size() == b.top.size() &&
                std::memcmp(a.scores.data(), b.scores.data(), a.scores.size() * sizeof(float)) == 0;
    for (size_t i = 0; same && i < a.top.size(); ++i) same = a.top[i].index == b.top[i].index;
    for (const msa::ScoredDocument& d : a.top) same = same && !hi.removed[static_cast<size_t>(d.index)];
    expect_true(same, what + ": routes bit for bit like the index uploaded whole, tombstones applied");
  }
}

// ------------------------------------------------------------------------------------------------ threads

// Several threads, each with its own buffers, run the same op sequence on the GPU at once: every thread's result
// equals the single-thread one bit for bit (one stream; cuBLAS is deterministic on one GPU).
void test_threads(Backend& gpu) {
  const int64_t t = 8, in = 256, out = 192;
  const HostWeight w = make_weight(DType::kBF16, {out, in}, -0.1f, 0.1f);
  const HostWeight nw = make_weight(DType::kBF16, {out}, 0.5f, 1.5f);
  Prepared pw = prepare(gpu, w), pn = prepare(gpu, nw);
  auto seq = [&](const std::vector<float>& x, std::vector<float>* result) -> Status {
    DeviceBuffer dx, dy;
    MSA_RETURN_IF_ERROR(msa::upload_vector(&gpu, x.data(), x.size(), &dx));
    MSA_RETURN_IF_ERROR(gpu.alloc(static_cast<size_t>(t * out) * 4, &dy));
    for (int rep = 0; rep < 20; ++rep) {
      MSA_RETURN_IF_ERROR(gpu.matmul(dx.as<float>(), t, pw.view, dy.as<float>()));
      MSA_RETURN_IF_ERROR(gpu.rmsnorm(dy.as<float>(), t, out, pn.view, 1e-6f, dy.as<float>()));
      gpu.scale(dy.as<float>(), 0.5f, t * out);
      gpu.add(dy.as<float>(), dx.as<float>(), dy.as<float>(), t * out);
    }
    return msa::download_vector(&gpu, dy.data(), static_cast<size_t>(t * out), result);
  };
  const int n_threads = 4;
  std::vector<std::vector<float>> xs, want(n_threads), got(n_threads);
  for (int i = 0; i < n_threads; ++i) xs.push_back(uniform(static_cast<size_t>(t * in)));
  for (int i = 0; i < n_threads; ++i) expect_ok(seq(xs[static_cast<size_t>(i)], &want[static_cast<size_t>(i)]), "single-thread sequence");
  std::vector<Status> st(n_threads);
  std::vector<std::thread> threads;
  for (int i = 0; i < n_threads; ++i) {
    threads.emplace_back([&, i] { st[static_cast<size_t>(i)] = seq(xs[static_cast<size_t>(i)], &got[static_cast<size_t>(i)]); });
  }
  for (std::thread& th : threads) th.join();
  bool same = true;
  for (int i = 0; i < n_threads; ++i) {
    same = expect_ok(st[static_cast<size_t>(i)], "thread sequence") && same &&
           got[static_cast<size_t>(i)] == want[static_cast<size_t>(i)];
  }
  expect_true(same, "4 threads at once give the single-thread results bit for bit");
  std::printf("%-4s threads (4 at once)\n", same ? "ok" : "FAIL");
}

}  // namespace

int main() {
  std::unique_ptr<Backend> gpu;
  const Status s = msa::create_cuda_backend(0, nullptr, &gpu);
  if (s.code() == StatusCode::kNoDevice) {
    std::printf("SKIP: no CUDA device (create_cuda_backend: %s)\n", s.message().c_str());
    return 77;
  }
  if (!s.ok() || gpu == nullptr) {
    std::printf("FAIL: create_cuda_backend: %s\n", s.to_string().c_str());
    return 1;
  }
  std::unique_ptr<Backend> none;
  expect_code(msa::create_cuda_backend(4096, nullptr, &none), StatusCode::kNoDevice, "create_cuda_backend(device 4096)");
  msa::CpuBackend cpu;
  std::printf("CUDA backend against %s\n", cpu.name());
  test_memory(*gpu);
  test_matmul(cpu, *gpu);
  test_rmsnorm(cpu, *gpu);
  test_rope(cpu, *gpu);
  test_elementwise(cpu, *gpu);
  test_embedding_gather(cpu, *gpu);
  test_attention(cpu, *gpu);
  test_pool_norm_decode(cpu, *gpu);
  test_route(cpu, *gpu);
  test_route_update(*gpu);
  test_threads(*gpu);
  expect_ok(gpu->synchronize(), "final synchronize");
  std::printf("\n%s: %d checks, %d failures\n", g_failures == 0 ? "PASSED" : "FAILED", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
