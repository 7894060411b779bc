// GPU test of the CUDA forward ops (cuda/ops_gemm.h, ops_elementwise.h, ops_attention.h) against their CPU
// twins (CpuBackend, compute_rope_table), then timings at MSA-4B shapes (Qwen3-4B: hidden 2560, 32 q heads,
// 8 kv heads, head_dim 128, intermediate 9728) and one decoder layer at T = 1 and T = 512.
// Without a CUDA device: prints "SKIP: no CUDA device" and exits 77. Any mismatch or error: a FAIL line,
// exit 1. Never waits on anything but the CUDA stream.
#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "cuda_status.h"
#include "device.h"
#include "ops_attention.h"
#include "ops_elementwise.h"
#include "ops_fixtures.h"
#include "ops_gemm.h"
#include "resources.h"

namespace {

using msa::DType;
using msa::Status;
using msa::StatusCode;
using msa::TensorView;
namespace mc = msa::cuda;

int g_failures = 0;
int g_checks = 0;

// A CUDA runtime error in the test's own calls (allocation, copies) is fatal: print and exit.
void ck(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess) {
    std::printf("FAIL: %s (line %d): %s (%s)\n", what, line, cudaGetErrorName(e), cudaGetErrorString(e));
    std::fflush(stdout);
    std::exit(1);
  }
}
#define CK(call) ck((call), #call, __LINE__)

// An op's Status must be ok; records a failure otherwise. Returns whether it was ok.
bool expect_ok(const Status& s, const std::string& what) {
  if (s.ok()) return true;
  ++g_failures;
  std::printf("FAIL: %s returned %s\n", what.c_str(), s.to_string().c_str());
  return false;
}

template <typename T>
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t n) { resize(n); }
  explicit DevBuf(const std::vector<T>& h) {
    resize(h.size());
    upload(h);
  }
  ~DevBuf() {
    if (p_) cudaFree(p_);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void resize(size_t n) {
    if (p_) CK(cudaFree(p_));
    p_ = nullptr;
    n_ = n;
    CK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
  }
  void upload(const std::vector<T>& h) {
    if (h.size() > n_) {
      std::printf("FAIL: upload of %zu elements into %zu\n", h.size(), n_);
      std::exit(1);
    }
    CK(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download(size_t n) const {
    std::vector<T> h(n);
    CK(cudaMemcpy(h.data(), p_, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  std::vector<T> download() const { return download(n_); }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

std::mt19937& rng() {
  static std::mt19937 r(12345);
  return r;
}

std::vector<float> rand_vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng());
  return v;
}

int64_t rand_int(int64_t lo, int64_t hi) {  // inclusive
  std::uniform_int_distribution<int64_t> d(lo, hi);
  return d(rng());
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = msa::f32_to_bf16(v[i]);
  return o;
}
// The f32 values a bf16/f16 array stands for.
std::vector<float> widen(DType dt, const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = dt == DType::kBF16 ? msa::bf16_to_f32(v[i]) : msa::f16_to_f32(v[i]);
  return o;
}

using ops_fixtures::HostWeight;

HostWeight make_weight(DType dt, std::vector<int64_t> shape, float lo = -1.0f, float hi = 1.0f) {
  const std::vector<float> f = rand_vec(static_cast<size_t>(ops_fixtures::numel(shape)), lo, hi);
  return ops_fixtures::host_weight(dt, std::move(shape), f);
}

// Comparison: element i passes when |g - c| <= atol + rtol * |c| (NaN never passes). Prints one line.
struct CmpResult {
  double max_abs = 0.0;
  double max_rel = 0.0;  // over elements with |c| >= 1e-3 * max |c|
  int64_t n_bad = 0;
  int64_t n_exact = 0;
  int64_t n = 0;
};

CmpResult compare(const float* g, const float* c, size_t n, double atol, double rtol) {
  CmpResult r;
  r.n = static_cast<int64_t>(n);
  double cmax = 0.0;
  for (size_t i = 0; i < n; ++i) cmax = std::max(cmax, std::fabs(static_cast<double>(c[i])));
  for (size_t i = 0; i < n; ++i) {
    const double gv = g[i], cv = c[i];
    const double diff = std::fabs(gv - cv);
    if (gv == cv) ++r.n_exact;
    if (!(diff <= atol + rtol * std::fabs(cv))) ++r.n_bad;  // also catches NaN
    if (std::isnan(gv) || std::isnan(cv)) {
      r.max_abs = NAN;
      continue;
    }
    r.max_abs = std::max(r.max_abs, diff);
    if (std::fabs(cv) >= 1e-3 * cmax && cv != 0.0) r.max_rel = std::max(r.max_rel, diff / std::fabs(cv));
  }
  return r;
}

void report(const char* op, const std::string& shape, const CmpResult& r, const std::string& tol) {
  ++g_checks;
  const bool ok = r.n_bad == 0;
  if (!ok) ++g_failures;
  std::printf("%-4s %-14s %-44s max_abs %.2e max_rel %.2e exact %5.1f%%  tol %s%s\n", ok ? "ok" : "FAIL", op,
              shape.c_str(), r.max_abs, r.max_rel, r.n ? 100.0 * static_cast<double>(r.n_exact) / r.n : 100.0,
              tol.c_str(), ok ? "" : (" (" + std::to_string(r.n_bad) + " elements out of tolerance)").c_str());
}

void check(const char* op, const std::string& shape, const std::vector<float>& g, const std::vector<float>& c,
           double atol, double rtol) {
  if (g.size() != c.size()) {
    ++g_failures;
    std::printf("FAIL %s %s: size %zu vs %zu\n", op, shape.c_str(), g.size(), c.size());
    return;
  }
  char tol[64];
  std::snprintf(tol, sizeof tol, "atol %.0e rtol %.0e", atol, rtol);
  report(op, shape, compare(g.data(), c.data(), g.size(), atol, rtol), tol);
}

void expect_code(const Status& s, StatusCode code, const std::string& what) {
  ++g_checks;
  if (s.code() == code) {
    std::printf("ok   %-14s %s -> %s\n", "error", what.c_str(), s.to_string().c_str());
  } else {
    ++g_failures;
    std::printf("FAIL %-14s %s: expected %s, got %s\n", "error", what.c_str(), msa::status_code_name(code),
                s.to_string().c_str());
  }
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ------------------------------------------------------------------------------------------ correctness

void test_convert(mc::CudaResources& res) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    const size_t n = 100003;
    HostWeight w = make_weight(dt, {static_cast<int64_t>(n)}, -3.0f, 3.0f);
    std::vector<float> ref(n);
    msa::convert_to_f32(dt, w.bytes.data(), ref.data(), n);
    DevBuf<uint8_t> dw(w.bytes);
    DevBuf<float> out(n);
    if (!expect_ok(mc::convert_to_f32(res, dw.get(), dt, static_cast<int64_t>(n), out.get()), "convert_to_f32") ||
        !expect_ok(res.synchronize(), "convert_to_f32 sync"))
      continue;
    check("convert_to_f32", fmt("%s n=%zu", msa::dtype_name(dt), n), out.download(), ref, 0.0, 0.0);
  }
}

void test_embedding(mc::CudaResources& res, msa::CpuBackend& cpu) {
  struct Case {
    DType dt;
    int64_t vocab, dim, n;
  };
  for (const Case& c : {Case{DType::kBF16, 1000, 64, 1}, Case{DType::kBF16, 5000, 2560, 300},
                        Case{DType::kF32, 777, 100, 17}, Case{DType::kF16, 300, 129, 64}}) {
    HostWeight table = make_weight(c.dt, {c.vocab, c.dim});
    std::vector<int32_t> ids(static_cast<size_t>(c.n));
    for (int32_t& id : ids) id = static_cast<int32_t>(rand_int(0, c.vocab - 1));
    ids[0] = static_cast<int32_t>(c.vocab - 1);
    std::vector<float> ref(static_cast<size_t>(c.n * c.dim));
    if (!expect_ok(cpu.embedding(table.view(), ids.data(), c.n, ref.data()), "cpu embedding")) continue;
    DevBuf<uint8_t> dt(table.bytes);
    DevBuf<int32_t> did(ids);
    DevBuf<float> out(ref.size());
    if (!expect_ok(mc::embedding(res, dt.get(), c.dt, c.vocab, c.dim, did.get(), c.n, out.get()), "embedding")) {
      continue;
    }
    check("embedding", fmt("%s [%" PRId64 ",%" PRId64 "] n=%" PRId64, msa::dtype_name(c.dt), c.vocab, c.dim, c.n),
          out.download(), ref, 0.0, 0.0);
    // A bad id (negative, then == vocab) must be kInvalidArgument.
    for (int32_t bad : {-1, static_cast<int32_t>(c.vocab)}) {
      std::vector<int32_t> ids2 = ids;
      ids2[static_cast<size_t>(c.n / 2)] = bad;
      did.upload(ids2);
      expect_code(mc::embedding(res, dt.get(), c.dt, c.vocab, c.dim, did.get(), c.n, out.get()),
                  StatusCode::kInvalidArgument, fmt("embedding id %d of vocab %" PRId64, bad, c.vocab));
    }
  }
}

void test_rmsnorm(mc::CudaResources& res, msa::CpuBackend& cpu) {
  struct Case {
    DType dt;
    int64_t rows, dim;
    bool alias;
  };
  for (const Case& c : {Case{DType::kBF16, 1, 2560, false}, Case{DType::kBF16, 300, 2560, true},
                        Case{DType::kBF16, 512 * 8, 128, true}, Case{DType::kF32, 7, 1000, false},
                        Case{DType::kF16, 33, 64, false}, Case{DType::kBF16, 5, 32, false},
                        Case{DType::kF32, 3, 3000, true}}) {
    HostWeight w = make_weight(c.dt, {c.dim}, 0.5f, 1.5f);
    std::vector<float> x = rand_vec(static_cast<size_t>(c.rows * c.dim), -4.0f, 4.0f);
    std::vector<float> ref(x.size());
    const float eps = 1e-6f;
    if (!expect_ok(cpu.rmsnorm(x.data(), c.rows, c.dim, w.view(), eps, ref.data()), "cpu rmsnorm")) continue;
    DevBuf<uint8_t> dw(w.bytes);
    DevBuf<float> dx(x);
    DevBuf<float> dy(x.size());
    float* y = c.alias ? dx.get() : dy.get();
    if (!expect_ok(mc::rmsnorm(res, dx.get(), c.rows, c.dim, dw.get(), c.dt, eps, y), "rmsnorm") ||
        !expect_ok(res.synchronize(), "rmsnorm sync"))
      continue;
    check("rmsnorm",
          fmt("%s rows=%" PRId64 " dim=%" PRId64 "%s", msa::dtype_name(c.dt), c.rows, c.dim, c.alias ? " in-place" : ""),
          c.alias ? dx.download() : dy.download(), ref, 1e-6, 2e-6);
  }
}

void test_rope(mc::CudaResources& res, msa::CpuBackend& cpu) {
  struct Case {
    int64_t n_tokens, n_heads, head_dim;
    double theta;
    int32_t max_pos;
  };
  for (const Case& c : {Case{1, 32, 128, 1e6, 4096}, Case{300, 8, 128, 1e6, 40000}, Case{64, 4, 64, 1e4, 131071},
                        Case{17, 2, 32, 1e6, 100}}) {
    std::vector<int32_t> pos(static_cast<size_t>(c.n_tokens));
    for (int32_t& p : pos) p = static_cast<int32_t>(rand_int(0, c.max_pos));
    pos[0] = 0;
    const int64_t half = c.head_dim / 2;
    std::vector<float> cos_ref(static_cast<size_t>(c.n_tokens * half)), sin_ref(cos_ref.size());
    msa::compute_rope_table(pos.data(), c.n_tokens, c.head_dim, c.theta, cos_ref.data(), sin_ref.data());
    DevBuf<int32_t> dpos(pos);
    DevBuf<float> dcos(cos_ref.size()), dsin(cos_ref.size());
    const std::string shape = fmt("T=%" PRId64 " d=%" PRId64 " theta=%.0e pos<=%d", c.n_tokens, c.head_dim,
                                  c.theta, c.max_pos);
    if (!expect_ok(mc::rope_table(res, dpos.get(), c.n_tokens, c.head_dim, c.theta, dcos.get(), dsin.get()),
                   "rope_table") ||
        !expect_ok(res.synchronize(), "rope_table sync"))
      continue;
    // Same f32 inv_freq and angle, cos/sin in double on both sides: expected bit-identical; the tolerance only
    // allows the last-ulp differences of the device's double pow/cos.
    check("rope_table.cos", shape, dcos.download(), cos_ref, 1e-6, 0.0);
    check("rope_table.sin", shape, dsin.download(), sin_ref, 1e-6, 0.0);

    // Apply (to the CPU table, so this checks the rotation alone).
    std::vector<float> x = rand_vec(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), -3.0f, 3.0f);
    DevBuf<float> dx(x);
    dcos.upload(cos_ref);
    dsin.upload(sin_ref);
    // The CPU rotates with its table of compute_rope_table, the same values as cos_ref / sin_ref.
    if (!expect_ok(cpu.rope(x.data(), c.n_tokens, c.n_heads, c.head_dim, pos.data(), c.theta), "cpu rope")) continue;
    if (!expect_ok(mc::rope(res, dx.get(), c.n_tokens, c.n_heads, c.head_dim, dcos.get(), dsin.get()), "rope") ||
        !expect_ok(res.synchronize(), "rope sync"))
      continue;
    // Same two products and one sum per value, no FMA contraction on either side: expected bit-identical (the
    // "exact" column); the tolerance is one f32 ulp of |x| <= 4.3.
    check("rope", fmt("T=%" PRId64 " heads=%" PRId64 " d=%" PRId64, c.n_tokens, c.n_heads, c.head_dim),
          dx.download(), x, 5e-7, 0.0);
  }
  DevBuf<float> dummy(8);
  expect_code(mc::rope_table(res, nullptr, 4, 7, 1e6, dummy.get(), dummy.get()), StatusCode::kShape,
              "rope_table odd head_dim");
}

void test_swiglu_add(mc::CudaResources& res, msa::CpuBackend& cpu) {
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{512 * 9728 + 3}}) {
    std::vector<float> gate = rand_vec(static_cast<size_t>(n), -20.0f, 20.0f), up = rand_vec(static_cast<size_t>(n));
    std::vector<float> ref(gate.size()), ref_add(gate.size());
    cpu.swiglu(gate.data(), up.data(), ref.data(), n);
    cpu.add(gate.data(), up.data(), ref_add.data(), n);
    DevBuf<float> dg(gate), du(up), dout(gate.size());
    if (!expect_ok(mc::add(res, dg.get(), du.get(), dout.get(), n), "add") ||
        !expect_ok(res.synchronize(), "add sync"))
      continue;
    check("add", fmt("n=%" PRId64, n), dout.download(), ref_add, 0.0, 0.0);
    // in place into gate, as the forward does
    if (!expect_ok(mc::swiglu(res, dg.get(), du.get(), dg.get(), n), "swiglu") ||
        !expect_ok(res.synchronize(), "swiglu sync"))
      continue;
    // expf on the device is within 2 ulp, glibc's within 1: a few ulp apart at most.
    check("swiglu", fmt("n=%" PRId64 " (in place)", n), dg.download(), ref, 1e-30, 2e-6);
  }
}

void test_mean_pool(mc::CudaResources& res, msa::CpuBackend& cpu) {
  struct Case {
    int64_t rows, dim, chunk;
  };
  for (const Case& c : {Case{1, 128, 64}, Case{63, 1024, 64}, Case{64, 1024, 64}, Case{65, 1024, 64},
                        Case{300, 128, 16}, Case{10, 300, 1}, Case{7, 2560, 100}}) {
    std::vector<float> x = rand_vec(static_cast<size_t>(c.rows * c.dim), -5.0f, 5.0f);
    const int64_t n_chunks = (c.rows + c.chunk - 1) / c.chunk;
    std::vector<float> ref(static_cast<size_t>(n_chunks * c.dim));
    cpu.mean_pool(x.data(), c.rows, c.dim, c.chunk, ref.data());
    DevBuf<float> dx(x), dout(ref.size());
    if (!expect_ok(mc::mean_pool(res, dx.get(), c.rows, c.dim, c.chunk, dout.get()), "mean_pool") ||
        !expect_ok(res.synchronize(), "mean_pool sync"))
      continue;
    // Same sequential f32 sum and division: bit-identical.
    check("mean_pool", fmt("rows=%" PRId64 " dim=%" PRId64 " chunk=%" PRId64, c.rows, c.dim, c.chunk),
          dout.download(), ref, 0.0, 0.0);
  }
}

// Bound check for GEMMs: |g - c| <= tol * sum_i |x_i w_i| (the exact error bound of rounding each product's
// inputs by a relative tol, plus f32 summation), with the bound computed by the CPU on |x| and |W|.
void check_gemm(const char* op, const std::string& shape, const std::vector<float>& g, const std::vector<float>& c,
                const std::vector<float>& bound, double tol) {
  ++g_checks;
  double max_ratio = 0.0, max_abs = 0.0;
  int64_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(g[i]) - c[i]);
    const double ratio = diff / (static_cast<double>(bound[i]) + 1e-30);
    if (!(diff <= tol * bound[i] + 1e-30)) ++bad;
    if (!std::isnan(diff)) {
      max_ratio = std::max(max_ratio, ratio);
      max_abs = std::max(max_abs, diff);
    } else {
      max_ratio = NAN;
    }
  }
  if (bad) ++g_failures;
  std::printf("%-4s %-14s %-44s max_abs %.2e max |err|/sum|xw| %.2e  tol %.1e%s\n", bad ? "FAIL" : "ok", op,
              shape.c_str(), max_abs, max_ratio, tol,
              bad ? (" (" + std::to_string(bad) + " elements out of tolerance)").c_str() : "");
}

void test_gemm(mc::CudaResources& res, msa::CpuBackend& cpu) {
  struct Case {
    int64_t t, out, in;
  };
  for (const Case& c : {Case{1, 64, 32}, Case{3, 100, 77}, Case{8, 256, 128}, Case{9, 130, 300},
                        Case{64, 512, 2560}, Case{200, 1024, 2560}, Case{1, 2560, 9728}, Case{17, 1536, 9728}}) {
    const std::string shape = fmt("T=%" PRId64 " out=%" PRId64 " in=%" PRId64, c.t, c.out, c.in);
    std::vector<float> x = rand_vec(static_cast<size_t>(c.t * c.in), -2.0f, 2.0f);
    HostWeight w = make_weight(DType::kBF16, {c.out, c.in}, -0.1f, 0.1f);
    std::vector<float> ref(static_cast<size_t>(c.t * c.out)), bound(ref.size());
    if (!expect_ok(cpu.matmul(x.data(), c.t, w.view(), ref.data()), "cpu matmul")) continue;
    {
      // sum_i |x_i| |w_i|
      std::vector<float> ax(x.size()), aw(static_cast<size_t>(c.out * c.in));
      for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
      const uint16_t* wb = reinterpret_cast<const uint16_t*>(w.bytes.data());
      for (size_t i = 0; i < aw.size(); ++i) aw[i] = std::fabs(msa::bf16_to_f32(wb[i]));
      TensorView awv;
      awv.dtype = DType::kF32;
      awv.data = aw.data();
      awv.shape = {c.out, c.in};
      if (!expect_ok(cpu.matmul(ax.data(), c.t, awv, bound.data()), "cpu matmul |x||w|")) continue;
    }
    DevBuf<float> dx(x), dy(ref.size()), dwf(static_cast<size_t>(c.out * c.in));
    DevBuf<uint8_t> dw(w.bytes);
    DevBuf<uint16_t> xs(x.size());
    const auto* wdev = reinterpret_cast<const uint16_t*>(dw.get());
    if (expect_ok(mc::matmul_bf16(res, dx.get(), c.t, wdev, c.out, c.in, dy.get(), xs.get()), "matmul_bf16") &&
        expect_ok(res.synchronize(), "matmul_bf16 sync")) {
      // x rounded to bf16: |rel| <= 2^-9 per product, plus f32 accumulation.
      check_gemm("matmul_bf16", shape, dy.download(), ref, bound, 2.5e-3);
    }
    if (expect_ok(mc::convert_to_f32(res, dw.get(), DType::kBF16, c.out * c.in, dwf.get()), "convert W") &&
        expect_ok(mc::matmul_f32(res, dx.get(), c.t, dwf.get(), c.out, c.in, dy.get()), "matmul_f32") &&
        expect_ok(res.synchronize(), "matmul_f32 sync")) {
      // Same f32 products, another summation order (no TF32).
      check_gemm("matmul_f32", shape, dy.download(), ref, bound, 5e-5);
    }
  }
  // An f16 weight through the f32 path (convert once).
  {
    const int64_t t = 12, out = 200, in = 640;
    std::vector<float> x = rand_vec(static_cast<size_t>(t * in));
    HostWeight w = make_weight(DType::kF16, {out, in}, -0.1f, 0.1f);
    std::vector<float> ref(static_cast<size_t>(t * out)), bound(ref.size());
    std::vector<float> ax(x.size()), aw(static_cast<size_t>(out * in));
    for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
    const uint16_t* wh = reinterpret_cast<const uint16_t*>(w.bytes.data());
    for (size_t i = 0; i < aw.size(); ++i) aw[i] = std::fabs(msa::f16_to_f32(wh[i]));
    TensorView awv;
    awv.dtype = DType::kF32;
    awv.data = aw.data();
    awv.shape = {out, in};
    if (expect_ok(cpu.matmul(x.data(), t, w.view(), ref.data()), "cpu matmul f16") &&
        expect_ok(cpu.matmul(ax.data(), t, awv, bound.data()), "cpu matmul |x||w| f16")) {
      DevBuf<float> dx(x), dy(ref.size()), dwf(static_cast<size_t>(out * in));
      DevBuf<uint8_t> dw(w.bytes);
      if (expect_ok(mc::convert_to_f32(res, dw.get(), DType::kF16, out * in, dwf.get()), "convert f16 W") &&
          expect_ok(mc::matmul_f32(res, dx.get(), t, dwf.get(), out, in, dy.get()), "matmul_f32 f16") &&
          expect_ok(res.synchronize(), "matmul_f32 f16 sync")) {
        check_gemm("matmul_f32", fmt("f16 W T=%" PRId64 " out=%" PRId64 " in=%" PRId64, t, out, in), dy.download(),
                   ref, bound, 5e-5);
      }
    }
  }
  DevBuf<float> d(16);
  DevBuf<uint16_t> s(16);
  expect_code(mc::matmul_bf16(res, d.get(), 0, s.get(), 4, 4, d.get() + 8, s.get()), StatusCode::kShape,
              "matmul_bf16 n_rows 0");
  expect_code(mc::matmul_f32(res, nullptr, 1, d.get(), 4, 4, d.get()), StatusCode::kInvalidArgument,
              "matmul_f32 null x");
}

// Attention cases. mode: 0 causal over own rows; 1 full (null windows); 2 packed segments (q_seg/kv_seg,
// windows from each segment's first row, every other query with own_begin 0 so only the segment filter
// restricts it); 3 random windows (empty, negative, past the end); 4 every window empty.
struct AttnCase {
  int64_t hq, hkv, d, n_q, n_prefix, n_cached;
  int mode;
  float qscale;
};

const char* mode_name(int m) {
  switch (m) {
    case 0: return "causal";
    case 1: return "full";
    case 2: return "segments";
    case 3: return "random-win";
    default: return "empty-win";
  }
}

void run_attention_case(mc::CudaResources& res, msa::CpuBackend& cpu, const AttnCase& c) {
  const int64_t n_own = c.n_cached + c.n_q, n_kv = c.n_prefix + n_own;
  const int64_t qw = c.hq * c.d, kvw = c.hkv * c.d;
  std::vector<float> q = rand_vec(static_cast<size_t>(c.n_q * qw), -c.qscale, c.qscale);
  std::vector<float> k = rand_vec(static_cast<size_t>(n_kv * kvw)), v = rand_vec(static_cast<size_t>(n_kv * kvw));
  ops_fixtures::AttentionMasks masks = ops_fixtures::make_attention_masks(c.n_q, c.n_cached, c.mode, rand_int);
  std::vector<int64_t>& ob = masks.own_begin;
  std::vector<int64_t>& oe = masks.own_end;
  std::vector<int32_t>& q_seg = masks.q_seg;
  std::vector<int32_t>& kv_seg = masks.kv_seg;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));
  msa::AttentionArgs a;
  a.n_q = c.n_q;
  a.n_kv = n_kv;
  a.n_prefix = c.n_prefix;
  a.n_heads = c.hq;
  a.n_kv_heads = c.hkv;
  a.head_dim = c.d;
  a.scale = scale;
  std::vector<float> ref(q.size());
  msa::AttentionArgs ca = a;
  ca.q = q.data();
  ca.k = k.data();
  ca.v = v.data();
  ca.out = ref.data();
  const bool windows = c.mode != 1;
  const bool segs = c.mode == 2;
  ca.own_begin = windows ? ob.data() : nullptr;
  ca.own_end = windows ? oe.data() : nullptr;
  ca.q_seg = segs ? q_seg.data() : nullptr;
  ca.kv_seg = segs ? kv_seg.data() : nullptr;
  if (!expect_ok(cpu.attention(ca), "cpu attention")) return;

  DevBuf<float> dq(q), dk(k), dv(v), dout(q.size());
  DevBuf<int64_t> dob(ob), doe(oe);
  DevBuf<int32_t> dqs(q_seg), dks(kv_seg);
  CK(cudaMemset(dout.get(), 0x7f, q.size() * sizeof(float)));  // garbage (huge values) where nothing is written
  msa::AttentionArgs ga = a;
  ga.q = dq.get();
  ga.k = dk.get();
  ga.v = dv.get();
  ga.out = dout.get();
  ga.own_begin = windows ? dob.get() : nullptr;
  ga.own_end = windows ? doe.get() : nullptr;
  ga.q_seg = segs ? dqs.get() : nullptr;
  ga.kv_seg = segs ? dks.get() : nullptr;
  const std::string shape = fmt("h%" PRId64 "/%" PRId64 " d%" PRId64 " q%" PRId64 " pre%" PRId64 " own%" PRId64 " %s",
                                c.hq, c.hkv, c.d, c.n_q, c.n_prefix, n_own, mode_name(c.mode));
  if (!expect_ok(mc::attention(res, ga), "attention " + shape) || !expect_ok(res.synchronize(), "attention sync")) {
    return;
  }
  // Outputs are convex combinations of V rows (|v| <= 1): the f32 online softmax differs from the CPU's
  // two-pass one by rounding only, ~1e-6. One wrongly masked key out of n moves an output by ~1/n.
  const bool all_empty = c.mode == 4 && c.n_prefix == 0;
  check("attention", shape, dout.download(), ref, all_empty ? 0.0 : 2e-5, all_empty ? 0.0 : 1e-4);
}

void test_attention(mc::CudaResources& res, msa::CpuBackend& cpu) {
  const std::vector<AttnCase> cases = {
      // hq hkv  d   n_q prefix cached mode qscale
      {4, 4, 32, 1, 0, 0, 0, 1.0f},       {4, 4, 32, 5, 17, 0, 0, 1.0f},     {8, 4, 64, 64, 0, 0, 0, 2.0f},
      {8, 2, 128, 1, 300, 40, 0, 1.0f},   {32, 8, 128, 200, 300, 0, 0, 1.0f}, {32, 8, 128, 50, 0, 0, 1, 1.0f},
      {16, 2, 64, 7, 100, 10, 1, 4.0f},   {8, 1, 128, 9, 0, 0, 1, 1.0f},     {32, 8, 128, 200, 0, 0, 2, 1.0f},
      {8, 4, 64, 120, 37, 20, 2, 2.0f},   {4, 1, 32, 33, 0, 5, 2, 1.0f},     {8, 8, 128, 60, 0, 20, 3, 1.0f},
      {32, 8, 128, 30, 50, 10, 3, 1.0f},  {8, 2, 64, 10, 0, 15, 4, 1.0f},    {8, 2, 64, 10, 25, 15, 4, 1.0f},
      {2, 1, 256, 20, 40, 0, 0, 1.0f},    {4, 2, 80, 13, 9, 3, 3, 1.0f},     {32, 8, 128, 1, 4096, 100, 0, 1.0f},
      {32, 8, 128, 4, 2000, 60, 2, 1.0f}, {64, 8, 128, 3, 700, 0, 0, 1.0f},  {32, 8, 128, 1, 300, 0, 0, 8.0f},
      {4, 2, 18, 21, 30, 4, 2, 1.0f},     {2, 2, 6, 40, 0, 0, 0, 1.0f},     {6, 3, 96, 70, 270, 0, 3, 1.0f},
      {64, 1, 64, 5, 50, 0, 0, 1.0f},
  };
  for (const AttnCase& c : cases) run_attention_case(res, cpu, c);
  msa::AttentionArgs bad;
  bad.n_q = 1;
  bad.n_kv = 1;
  bad.n_heads = 6;
  bad.n_kv_heads = 4;
  bad.head_dim = 8;
  expect_code(mc::attention(res, bad), StatusCode::kShape, "attention 6 heads over 4 kv heads");
  bad.n_heads = 4;
  bad.head_dim = 512;
  DevBuf<float> d(16);
  bad.q = bad.k = bad.v = d.get();
  bad.out = d.get() + 8;
  expect_code(mc::attention(res, bad), StatusCode::kUnsupported, "attention head_dim 512");
}

// ------------------------------------------------------------------------------------------ timings

class Timer {
 public:
  Timer() {
    CK(cudaEventCreate(&a_));
    CK(cudaEventCreate(&b_));
  }
  ~Timer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  // Median of `reps` timed runs (after 2 warm-up runs) of fn(), in milliseconds; < 0 when fn failed.
  template <typename F>
  double median_ms(mc::CudaResources& res, F&& fn, int reps = 20) {
    for (int i = 0; i < 2; ++i) {
      if (!expect_ok(fn(), "timed op")) return -1.0;
    }
    if (!expect_ok(res.synchronize(), "timed op sync")) return -1.0;
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      CK(cudaEventRecord(a_, res.stream()));
      if (!expect_ok(fn(), "timed op")) return -1.0;
      CK(cudaEventRecord(b_, res.stream()));
      CK(cudaEventSynchronize(b_));
      float ms = 0.0f;
      CK(cudaEventElapsedTime(&ms, a_, b_));
      t.push_back(ms);
    }
    if (!expect_ok(res.synchronize(), "timed op sync")) return -1.0;
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

 private:
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

void print_time(const char* op, const std::string& shape, double ms, double bytes, double flops) {
  if (ms < 0) {
    std::printf("| %-28s | %-36s | %10s | %-24s |\n", op, shape.c_str(), "error", "");
    return;
  }
  char rate[64];
  if (flops > 0) {
    std::snprintf(rate, sizeof rate, "%.1f TFLOP/s, %.0f GB/s", flops / (ms * 1e-3) / 1e12, bytes / (ms * 1e-3) / 1e9);
  } else {
    std::snprintf(rate, sizeof rate, "%.0f GB/s", bytes / (ms * 1e-3) / 1e9);
  }
  std::printf("| %-28s | %-36s | %7.3f ms | %-24s |\n", op, shape.c_str(), ms, rate);
}

// Fills a device array of n bf16 values with random values in [-scale, scale] (tiling a random block).
void fill_bf16(uint16_t* d, size_t n, float scale) {
  static std::vector<uint16_t> block;
  if (block.empty()) block = to_bf16(rand_vec(size_t{1} << 20, -1.0f, 1.0f));
  std::vector<uint16_t> b(block.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = msa::f32_to_bf16(msa::bf16_to_f32(block[i]) * scale);
  for (size_t off = 0; off < n; off += b.size()) {
    const size_t len = std::min(b.size(), n - off);
    CK(cudaMemcpy(d + off, b.data(), len * sizeof(uint16_t), cudaMemcpyHostToDevice));
  }
}
void fill_f32(float* d, size_t n, float lo, float hi) {
  std::vector<float> b = rand_vec(std::min<size_t>(n, size_t{1} << 20), lo, hi);
  for (size_t off = 0; off < n; off += b.size()) {
    const size_t len = std::min(b.size(), n - off);
    CK(cudaMemcpy(d + off, b.data(), len * sizeof(float), cudaMemcpyHostToDevice));
  }
}

// MSA-4B (Qwen3-4B) sizes.
constexpr int64_t kHidden = 2560, kHq = 32, kHkv = 8, kD = 128, kInter = 9728, kQw = kHq * kD, kKvw = kHkv * kD;

void time_ops(mc::CudaResources& res) {
  std::printf("\nPer-op timings, MSA-4B shapes (median of 20, cudaEvent; bf16 weights, f32 activations)\n");
  std::printf("| %-28s | %-36s | %10s | %-24s |\n", "op", "shape", "time", "rate");
  std::printf("|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(38, '-').c_str(),
              std::string(12, '-').c_str(), std::string(26, '-').c_str());
  Timer timer;
  const int64_t tmax = 512;
  DevBuf<float> x(static_cast<size_t>(tmax * kInter)), y(static_cast<size_t>(tmax * kInter));
  DevBuf<uint16_t> xs(static_cast<size_t>(tmax * kInter));
  fill_f32(x.get(), x.size(), -1.0f, 1.0f);
  struct G {
    const char* name;
    int64_t out, in;
  };
  for (const G& g : {G{"q_proj", kQw, kHidden}, G{"k_proj/v_proj", kKvw, kHidden}, G{"o_proj", kHidden, kQw},
                     G{"gate_proj/up_proj", kInter, kHidden}, G{"down_proj", kHidden, kInter}}) {
    DevBuf<uint16_t> w(static_cast<size_t>(g.out * g.in));
    fill_bf16(w.get(), w.size(), 0.02f);
    DevBuf<float> wf(static_cast<size_t>(g.out * g.in));
    if (!expect_ok(mc::convert_to_f32(res, w.get(), DType::kBF16, g.out * g.in, wf.get()), "convert")) continue;
    for (int64_t t : {int64_t{1}, tmax}) {
      const double flops = 2.0 * static_cast<double>(t * g.out * g.in);
      double ms = timer.median_ms(res, [&] { return mc::matmul_bf16(res, x.get(), t, w.get(), g.out, g.in, y.get(), xs.get()); });
      print_time((std::string("gemm bf16 ") + g.name).c_str(), fmt("T=%" PRId64 " [%" PRId64 "x%" PRId64 "]", t, g.out, g.in),
                 ms, 2.0 * g.out * g.in + 4.0 * t * (g.in + g.out), flops);
      ms = timer.median_ms(res, [&] { return mc::matmul_f32(res, x.get(), t, wf.get(), g.out, g.in, y.get()); });
      print_time((std::string("gemm f32 ") + g.name).c_str(), fmt("T=%" PRId64 " [%" PRId64 "x%" PRId64 "]", t, g.out, g.in),
                 ms, 4.0 * g.out * g.in + 4.0 * t * (g.in + g.out), flops);
    }
  }
  DevBuf<uint16_t> nw(static_cast<size_t>(kHidden));
  fill_bf16(nw.get(), nw.size(), 1.0f);
  for (int64_t t : {int64_t{1}, tmax}) {
    double ms = timer.median_ms(res, [&] { return mc::rmsnorm(res, x.get(), t, kHidden, nw.get(), DType::kBF16, 1e-6f, y.get()); });
    print_time("rmsnorm", fmt("T=%" PRId64 " dim=%" PRId64, t, kHidden), ms, 8.0 * t * kHidden, 0);
  }
  double ms = timer.median_ms(res, [&] { return mc::rmsnorm(res, x.get(), tmax * kHq, kD, nw.get(), DType::kBF16, 1e-6f, y.get()); });
  print_time("rmsnorm (q_norm)", fmt("T=%" PRId64 " x %" PRId64 " heads, d=%" PRId64, tmax, kHq, kD), ms,
             8.0 * tmax * kQw, 0);
  std::vector<int32_t> pos(static_cast<size_t>(tmax));
  for (int64_t i = 0; i < tmax; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(4096 + i);
  DevBuf<int32_t> dpos(pos);
  DevBuf<float> cs(static_cast<size_t>(tmax * kD / 2)), sn(static_cast<size_t>(tmax * kD / 2));
  ms = timer.median_ms(res, [&] { return mc::rope_table(res, dpos.get(), tmax, kD, 1e6, cs.get(), sn.get()); });
  print_time("rope_table", fmt("T=%" PRId64 " d=%" PRId64, tmax, kD), ms, 4.0 * tmax * kD, 0);
  ms = timer.median_ms(res, [&] { return mc::rope(res, x.get(), tmax, kHq, kD, cs.get(), sn.get()); });
  print_time("rope (q)", fmt("T=%" PRId64 " heads=%" PRId64 " d=%" PRId64, tmax, kHq, kD), ms, 8.0 * tmax * kQw, 0);
  ms = timer.median_ms(res, [&] { return mc::swiglu(res, x.get(), y.get(), x.get(), tmax * kInter); });
  print_time("swiglu", fmt("T=%" PRId64 " x %" PRId64, tmax, kInter), ms, 12.0 * tmax * kInter, 0);
  ms = timer.median_ms(res, [&] { return mc::add(res, x.get(), y.get(), x.get(), tmax * kHidden); });
  print_time("add", fmt("T=%" PRId64 " x %" PRId64, tmax, kHidden), ms, 12.0 * tmax * kHidden, 0);
  {
    const int64_t vocab = 151936;
    DevBuf<uint16_t> table(static_cast<size_t>(vocab * kHidden));
    fill_bf16(table.get(), table.size(), 0.02f);
    std::vector<int32_t> ids(static_cast<size_t>(tmax));
    for (int32_t& id : ids) id = static_cast<int32_t>(rand_int(0, vocab - 1));
    DevBuf<int32_t> did(ids);
    ms = timer.median_ms(res, [&] { return mc::embedding(res, table.get(), DType::kBF16, vocab, kHidden, did.get(), tmax, y.get()); });
    print_time("embedding (sync)", fmt("T=%" PRId64 " [%" PRId64 "x%" PRId64 "]", tmax, vocab, kHidden), ms,
               6.0 * tmax * kHidden, 0);
  }
  ms = timer.median_ms(res, [&] { return mc::mean_pool(res, x.get(), tmax, kKvw, 64, y.get()); });
  print_time("mean_pool", fmt("rows=%" PRId64 " dim=%" PRId64 " chunk=64", tmax, kKvw), ms, 4.0 * tmax * kKvw, 0);

  // Attention over a 4096-row prefix: decode (1 query) and a causal 512-token prefill.
  const int64_t prefix = 4096;
  DevBuf<float> k(static_cast<size_t>((prefix + tmax) * kKvw)), v(k.size()), q(static_cast<size_t>(tmax * kQw)),
      o(q.size());
  fill_f32(k.get(), k.size(), -1.0f, 1.0f);
  fill_f32(v.get(), v.size(), -1.0f, 1.0f);
  fill_f32(q.get(), q.size(), -1.0f, 1.0f);
  for (int64_t t : {int64_t{1}, tmax}) {
    std::vector<int64_t> ob(static_cast<size_t>(t), 0), oe(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) oe[static_cast<size_t>(i)] = i + 1;
    DevBuf<int64_t> dob(ob), doe(oe);
    msa::AttentionArgs a;
    a.q = q.get();
    a.k = k.get();
    a.v = v.get();
    a.out = o.get();
    a.n_q = t;
    a.n_kv = prefix + t;
    a.n_prefix = prefix;
    a.n_heads = kHq;
    a.n_kv_heads = kHkv;
    a.head_dim = kD;
    a.scale = static_cast<float>(1.0 / std::sqrt(128.0));
    a.own_begin = dob.get();
    a.own_end = doe.get();
    ms = timer.median_ms(res, [&] { return mc::attention(res, a); });
    const double keys = static_cast<double>(prefix) * t + 0.5 * t * (t + 1);  // visible (query, key) pairs
    print_time("attention", fmt("q=%" PRId64 " prefix=%" PRId64 " causal, 32/8 h", t, prefix), ms,
               8.0 * (prefix + t) * kKvw, 4.0 * keys * kHq * kD);
  }
}

// One decoder layer at MSA-4B size: rmsnorm, q/k/v GEMMs, q/k norms, RoPE, attention over `prefix` rows +
// the causal own rows, o_proj + residual, rmsnorm, gate/up GEMMs, SwiGLU, down GEMM + residual.
struct LayerBuffers {
  DevBuf<uint16_t> wq, wk, wv, wo, wg, wu, wd, n_in, n_post, n_q, n_k;
  DevBuf<float> fq, fk, fv, fo, fg, fu, fd;  // f32 copies (f32 GEMM path)
};

void time_layer(mc::CudaResources& res) {
  const int64_t prefix = 4096, tmax = 512;
  LayerBuffers w;
  auto mk = [](DevBuf<uint16_t>& b, int64_t rows, int64_t cols, float scale) {
    b.resize(static_cast<size_t>(rows * cols));
    fill_bf16(b.get(), b.size(), scale);
  };
  mk(w.wq, kQw, kHidden, 0.02f);
  mk(w.wk, kKvw, kHidden, 0.02f);
  mk(w.wv, kKvw, kHidden, 0.02f);
  mk(w.wo, kHidden, kQw, 0.02f);
  mk(w.wg, kInter, kHidden, 0.02f);
  mk(w.wu, kInter, kHidden, 0.02f);
  mk(w.wd, kHidden, kInter, 0.02f);
  mk(w.n_in, 1, kHidden, 1.0f);
  mk(w.n_post, 1, kHidden, 1.0f);
  mk(w.n_q, 1, kD, 1.0f);
  mk(w.n_k, 1, kD, 1.0f);
  auto widen_w = [&](DevBuf<float>& f, const DevBuf<uint16_t>& b) {
    f.resize(b.size());
    return mc::convert_to_f32(res, b.get(), DType::kBF16, static_cast<int64_t>(b.size()), f.get());
  };
  if (!expect_ok(widen_w(w.fq, w.wq), "widen") || !expect_ok(widen_w(w.fk, w.wk), "widen") ||
      !expect_ok(widen_w(w.fv, w.wv), "widen") || !expect_ok(widen_w(w.fo, w.wo), "widen") ||
      !expect_ok(widen_w(w.fg, w.wg), "widen") || !expect_ok(widen_w(w.fu, w.wu), "widen") ||
      !expect_ok(widen_w(w.fd, w.wd), "widen"))
    return;

  DevBuf<float> x(static_cast<size_t>(tmax * kHidden)), a(x.size()), q(static_cast<size_t>(tmax * kQw)),
      attn(q.size()), proj(x.size()), gate(static_cast<size_t>(tmax * kInter)), up(gate.size());
  DevBuf<float> kc(static_cast<size_t>((prefix + tmax) * kKvw)), vc(kc.size());
  DevBuf<uint16_t> xs(static_cast<size_t>(tmax * kInter));
  DevBuf<float> cs(static_cast<size_t>(tmax * kD / 2)), sn(cs.size());
  fill_f32(kc.get(), kc.size(), -1.0f, 1.0f);
  fill_f32(vc.get(), vc.size(), -1.0f, 1.0f);
  Timer timer;
  std::printf("\nOne decoder layer, MSA-4B shape (hidden 2560, 32/8 heads, d 128, inter 9728), attention over %" PRId64
              " prefix rows + causal own rows; random bf16 weights; median of 20.\n"
              "36-layer figures are an ESTIMATE = 36 x one layer (no embedding, final norm, lm_head, routing).\n",
              prefix);
  std::printf("| %-10s | %-7s | %12s | %16s | %26s |\n", "GEMM path", "T", "layer time", "tokens/s (layer)",
              "tokens/s (36 layers, est.)");
  std::printf("|------------|---------|--------------|------------------|----------------------------|\n");
  for (bool bf16 : {true, false}) {
    for (int64_t t : {int64_t{1}, tmax}) {
      fill_f32(x.get(), static_cast<size_t>(t * kHidden), -1.0f, 1.0f);
      std::vector<int32_t> pos(static_cast<size_t>(t));
      std::vector<int64_t> ob(static_cast<size_t>(t), 0), oe(static_cast<size_t>(t));
      for (int64_t i = 0; i < t; ++i) {
        pos[static_cast<size_t>(i)] = static_cast<int32_t>(prefix + i);
        oe[static_cast<size_t>(i)] = i + 1;
      }
      DevBuf<int32_t> dpos(pos);
      DevBuf<int64_t> dob(ob), doe(oe);
      if (!expect_ok(mc::rope_table(res, dpos.get(), t, kD, 1e6, cs.get(), sn.get()), "rope_table")) return;
      float* kn = kc.get() + prefix * kKvw;  // this step's K/V rows go after the prefix
      float* vn = vc.get() + prefix * kKvw;
      auto gemm = [&](const float* in, const DevBuf<uint16_t>& wb, const DevBuf<float>& wf, int64_t out_dim,
                      int64_t in_dim, float* out) {
        return bf16 ? mc::matmul_bf16(res, in, t, wb.get(), out_dim, in_dim, out, xs.get())
                    : mc::matmul_f32(res, in, t, wf.get(), out_dim, in_dim, out);
      };
      auto layer = [&]() -> Status {
        MSA_RETURN_IF_ERROR(mc::rmsnorm(res, x.get(), t, kHidden, w.n_in.get(), DType::kBF16, 1e-6f, a.get()));
        MSA_RETURN_IF_ERROR(gemm(a.get(), w.wq, w.fq, kQw, kHidden, q.get()));
        MSA_RETURN_IF_ERROR(gemm(a.get(), w.wk, w.fk, kKvw, kHidden, kn));
        MSA_RETURN_IF_ERROR(gemm(a.get(), w.wv, w.fv, kKvw, kHidden, vn));
        MSA_RETURN_IF_ERROR(mc::rmsnorm(res, q.get(), t * kHq, kD, w.n_q.get(), DType::kBF16, 1e-6f, q.get()));
        MSA_RETURN_IF_ERROR(mc::rmsnorm(res, kn, t * kHkv, kD, w.n_k.get(), DType::kBF16, 1e-6f, kn));
        MSA_RETURN_IF_ERROR(mc::rope(res, q.get(), t, kHq, kD, cs.get(), sn.get()));
        MSA_RETURN_IF_ERROR(mc::rope(res, kn, t, kHkv, kD, cs.get(), sn.get()));
        msa::AttentionArgs aa;
        aa.q = q.get();
        aa.k = kc.get();
        aa.v = vc.get();
        aa.out = attn.get();
        aa.n_q = t;
        aa.n_kv = prefix + t;
        aa.n_prefix = prefix;
        aa.n_heads = kHq;
        aa.n_kv_heads = kHkv;
        aa.head_dim = kD;
        aa.scale = static_cast<float>(1.0 / std::sqrt(128.0));
        aa.own_begin = dob.get();
        aa.own_end = doe.get();
        MSA_RETURN_IF_ERROR(mc::attention(res, aa));
        MSA_RETURN_IF_ERROR(gemm(attn.get(), w.wo, w.fo, kHidden, kQw, proj.get()));
        MSA_RETURN_IF_ERROR(mc::add(res, x.get(), proj.get(), x.get(), t * kHidden));
        MSA_RETURN_IF_ERROR(mc::rmsnorm(res, x.get(), t, kHidden, w.n_post.get(), DType::kBF16, 1e-6f, a.get()));
        MSA_RETURN_IF_ERROR(gemm(a.get(), w.wg, w.fg, kInter, kHidden, gate.get()));
        MSA_RETURN_IF_ERROR(gemm(a.get(), w.wu, w.fu, kInter, kHidden, up.get()));
        MSA_RETURN_IF_ERROR(mc::swiglu(res, gate.get(), up.get(), gate.get(), t * kInter));
        MSA_RETURN_IF_ERROR(gemm(gate.get(), w.wd, w.fd, kHidden, kInter, proj.get()));
        return mc::add(res, x.get(), proj.get(), x.get(), t * kHidden);
      };
      const double ms = timer.median_ms(res, layer);
      if (ms < 0) {
        std::printf("| %-10s | %-7" PRId64 " | %12s | %16s | %26s |\n", bf16 ? "bf16" : "f32", t, "error", "", "");
        continue;
      }
      std::printf("| %-10s | %-7" PRId64 " | %9.3f ms | %16.0f | %26.1f |\n", bf16 ? "bf16" : "f32", t, ms,
                  static_cast<double>(t) / (ms * 1e-3), static_cast<double>(t) / (36.0 * ms * 1e-3));
      // The residual stream stays finite (the layer ran on real numbers).
      std::vector<float> hx = x.download(static_cast<size_t>(t * kHidden));
      bool finite = true;
      for (float f : hx) finite = finite && std::isfinite(f);
      if (!finite) {
        ++g_failures;
        std::printf("FAIL: layer output not finite (T=%" PRId64 ")\n", t);
      }
    }
  }
}

}  // namespace

int main() {
  const int n_dev = mc::device_count();
  if (n_dev == 0) {
    std::printf("SKIP: no CUDA device (the CUDA forward ops were compiled; nothing to run)\n");
    return 77;
  }
  std::unique_ptr<mc::CudaResources> res;
  Status s = mc::CudaResources::create(0, nullptr, &res);
  if (s.code() == StatusCode::kNoDevice) {
    std::printf("SKIP: no CUDA device (%s)\n", s.message().c_str());
    return 77;
  }
  if (!s.ok()) {
    std::printf("FAIL: CudaResources::create: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("device 0: %s\n", mc::device_name(0));
  msa::CpuBackend cpu;
  std::printf("CPU reference: %s\n\n", cpu.name());
  std::printf("Correctness against CpuBackend (ok/FAIL, op, shape, max abs error, max rel error, %% bit-identical)\n");
  test_convert(*res);
  test_embedding(*res, cpu);
  test_rmsnorm(*res, cpu);
  test_rope(*res, cpu);
  test_swiglu_add(*res, cpu);
  test_mean_pool(*res, cpu);
  test_gemm(*res, cpu);
  test_attention(*res, cpu);
  std::fflush(stdout);
  const int correctness_failures = g_failures;
  // Timings run even after a mismatch (they are informative); a broken CUDA context makes them fail fast.
  time_ops(*res);
  time_layer(*res);
  if (correctness_failures > 0) std::printf("\n(%d correctness failures above)\n", correctness_failures);
  std::printf("\n%s: %d checks, %d failures\n", g_failures == 0 ? "PASSED" : "FAILED", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
