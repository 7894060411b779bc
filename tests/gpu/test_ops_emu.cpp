// The forward-pass CUDA kernels (cuda/ops_elementwise_kernels.cuh, ops_attention_kernels.cuh: convert,
// embedding, rmsnorm, rope table + rotation, swiglu, add, attention with its key-split combine, mean
// pooling) compiled as host C++ and run under the CPU emulation of CUDA thread blocks of emu/block_emulator.h
// (fibers per thread, __syncthreads / __syncwarp / warp shuffles as barriers, shared memory poisoned), against
// msa::CpuBackend and compute_rope_table with the tolerances of test_ops_forward.cpp, on a subset of its shapes
// small enough for CI (no GPU needed). Launch plans (grids, query tiles, key splits, shared memory) come from
// the same functions as the device path (elt_grid / row_threads / plan_attention / plan_mean_pool), for a
// device with 132 SMs and 227 KiB of opt-in shared memory (H100 / H200). The cuBLAS GEMMs are not covered.
#define MSA_KERNEL_EMULATION 1

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "emu/block_emulator.h"

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "ops_attention_kernels.cuh"
#include "ops_fixtures.h"
#include "ops_elementwise_kernels.cuh"

namespace {

using msa::DType;
using msa::StatusCode;
namespace kern = msa::cuda::kern;

constexpr int kSms = 132;
constexpr size_t kSmemOptin = 232448;

int g_failures = 0, g_checks = 0;

std::mt19937 g_rng(4242);
std::vector<float> uniform(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g_rng);
  return v;
}
int64_t uniform_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng); }

// |emu - cpu| <= atol + rtol |cpu| for every element (NaN fails); one line per check.
void expect_near(const char* op, const std::string& shape, const std::vector<float>& emu,
                 const std::vector<float>& cpu, double atol, double rtol) {
  ++g_checks;
  int64_t bad = emu.size() == cpu.size() ? 0 : -1;
  double worst = 0.0;
  for (size_t i = 0; bad >= 0 && i < cpu.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(emu[i]) - cpu[i]);
    if (!(diff <= atol + rtol * std::fabs(cpu[i]))) ++bad;
    worst = std::isnan(diff) ? NAN : std::max(worst, diff);
  }
  if (bad != 0) ++g_failures;
  std::printf("%-4s %-15s %-46s max_abs %.2e%s\n", bad ? "FAIL" : "ok", op, shape.c_str(), worst,
              bad ? (" (" + std::to_string(bad) + " elements out of tolerance)").c_str() : "");
}

void expect_true(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%-4s %s\n", ok ? "ok" : "FAIL", what.c_str());
}

std::string shape_str(const char* f, long long a, long long b = -1, long long c = -1) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

// A float weight of `dt` with values uniform in [lo, hi): its bytes and the CPU view of them.
using Weight = ops_fixtures::HostWeight;
Weight weight(DType dt, std::vector<int64_t> shape, float lo, float hi) {
  const std::vector<float> f = uniform(static_cast<size_t>(ops_fixtures::numel(shape)), lo, hi);
  return ops_fixtures::host_weight(dt, std::move(shape), f);
}

// ------------------------------------------------------------------------------ elementwise and row-wise ops

void test_convert_embedding(msa::CpuBackend& cpu) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    const int64_t n = 3001;
    const Weight w = weight(dt, {n}, -3.0f, 3.0f);
    std::vector<float> ref(static_cast<size_t>(n)), out(ref.size(), NAN);
    msa::convert_to_f32(dt, w.bytes.data(), ref.data(), static_cast<size_t>(n));
    msa_emu::launch(kern::elt_grid(n), kern::kEltThreads, 0,
                    [&] { kern::convert_kernel(w.bytes.data(), static_cast<int>(dt), n, out.data()); });
    expect_near("convert_to_f32", std::string(msa::dtype_name(dt)) + " n=3001", out, ref, 0.0, 0.0);
  }
  struct Case {
    DType dt;
    int64_t vocab, dim, n;
  };
  for (const Case& c : {Case{DType::kBF16, 1000, 64, 1}, Case{DType::kF32, 777, 100, 17},
                        Case{DType::kF16, 300, 129, 9}}) {
    const Weight table = weight(c.dt, {c.vocab, c.dim}, -1.0f, 1.0f);
    std::vector<int32_t> ids(static_cast<size_t>(c.n));
    for (int32_t& id : ids) id = static_cast<int32_t>(uniform_int(0, c.vocab - 1));
    ids[0] = static_cast<int32_t>(c.vocab - 1);
    std::vector<float> ref(static_cast<size_t>(c.n * c.dim));
    if (!cpu.embedding(table.view(), ids.data(), c.n, ref.data()).ok()) {
      expect_true(false, "cpu embedding");
      continue;
    }
    for (int32_t bad_id : {0, -1, static_cast<int32_t>(c.vocab)}) {  // 0: no bad id
      std::vector<int32_t> ids2 = ids;
      const size_t at = static_cast<size_t>(c.n / 2);
      if (bad_id != 0) ids2[at] = bad_id;
      std::vector<float> out(ref.size(), NAN);
      unsigned long long first_bad = ~0ULL;
      msa_emu::launch(static_cast<unsigned>(c.n), static_cast<unsigned>(kern::row_threads(c.dim)), 0, [&] {
        kern::embedding_kernel(table.bytes.data(), static_cast<int>(c.dt), c.vocab, c.dim, ids2.data(), out.data(),
                               &first_bad);
      });
      const std::string shape = std::string(msa::dtype_name(c.dt)) +
                                shape_str(" [%lld,%lld] n=%lld", c.vocab, c.dim, c.n);
      if (bad_id == 0) {
        expect_true(first_bad == ~0ULL, "embedding " + shape + ": no bad id flagged");
        expect_near("embedding", shape, out, ref, 0.0, 0.0);
      } else {
        std::vector<float> want = ref;  // the bad row zeroed
        std::fill(want.begin() + static_cast<int64_t>(at) * c.dim, want.begin() + static_cast<int64_t>(at + 1) * c.dim,
                  0.0f);
        expect_true(first_bad == at, "embedding " + shape + shape_str(": id %lld flagged at index %lld", bad_id,
                                                                      static_cast<long long>(first_bad)));
        if (c.n > 1) expect_near("embedding", shape + " bad row zeroed", out, want, 0.0, 0.0);
      }
    }
  }
}

void test_rmsnorm(msa::CpuBackend& cpu) {
  struct Case {
    DType dt;
    int64_t rows, dim;
    bool alias;
  };
  for (const Case& c : {Case{DType::kBF16, 1, 2560, false}, Case{DType::kBF16, 12, 128, true},
                        Case{DType::kF32, 7, 1000, false}, Case{DType::kF16, 5, 64, false},
                        Case{DType::kBF16, 5, 32, false}, Case{DType::kF32, 3, 3000, true},
                        Case{DType::kF32, 2, 7, false}}) {
    const Weight w = weight(c.dt, {c.dim}, 0.5f, 1.5f);
    std::vector<float> x = uniform(static_cast<size_t>(c.rows * c.dim), -4.0f, 4.0f), ref(x.size());
    const float eps = 1e-6f;
    if (!cpu.rmsnorm(x.data(), c.rows, c.dim, w.view(), eps, ref.data()).ok()) {
      expect_true(false, "cpu rmsnorm");
      continue;
    }
    std::vector<float> y(x.size(), NAN);
    float* out = c.alias ? x.data() : y.data();
    msa_emu::launch(static_cast<unsigned>(c.rows), static_cast<unsigned>(kern::row_threads(c.dim)), 0, [&] {
      kern::rmsnorm_kernel(x.data(), c.dim, w.bytes.data(), static_cast<int>(c.dt), eps, out);
    });
    expect_near("rmsnorm",
                std::string(msa::dtype_name(c.dt)) + shape_str(" rows=%lld dim=%lld", c.rows, c.dim) +
                    (c.alias ? " in-place" : ""),
                c.alias ? x : y, ref, 1e-6, 2e-6);
  }
}

void test_rope(msa::CpuBackend& cpu) {
  struct Case {
    int64_t n_tokens, n_heads, head_dim;
    double theta;
    int32_t max_pos;
  };
  for (const Case& c : {Case{1, 32, 128, 1e6, 4096}, Case{40, 4, 64, 1e4, 131071}, Case{17, 2, 32, 1e6, 100}}) {
    std::vector<int32_t> pos(static_cast<size_t>(c.n_tokens));
    for (int32_t& p : pos) p = static_cast<int32_t>(uniform_int(0, c.max_pos));
    pos[0] = 0;
    const int64_t half = c.head_dim / 2, n_tab = c.n_tokens * half;
    std::vector<float> cos_ref(static_cast<size_t>(n_tab)), sin_ref(cos_ref.size());
    msa::compute_rope_table(pos.data(), c.n_tokens, c.head_dim, c.theta, cos_ref.data(), sin_ref.data());
    std::vector<float> cos_e(cos_ref.size(), NAN), sin_e(cos_ref.size(), NAN);
    msa_emu::launch(kern::elt_grid(n_tab), kern::kEltThreads, 0, [&] {
      kern::rope_table_kernel(pos.data(), c.n_tokens, c.head_dim, static_cast<float>(c.theta), cos_e.data(),
                              sin_e.data());
    });
    const std::string shape = shape_str("T=%lld d=%lld pos<=%lld", c.n_tokens, c.head_dim, c.max_pos);
    expect_near("rope_table.cos", shape, cos_e, cos_ref, 1e-6, 0.0);
    expect_near("rope_table.sin", shape, sin_e, sin_ref, 1e-6, 0.0);
    // Rotation with the emulated tables vs the CPU's rotation with compute_rope_table's.
    std::vector<float> x = uniform(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), -3.0f, 3.0f), xe = x;
    if (!cpu.rope(x.data(), c.n_tokens, c.n_heads, c.head_dim, pos.data(), c.theta).ok()) {  // compute_rope_table's
      expect_true(false, "cpu rope");
      continue;
    }
    const int64_t n = c.n_tokens * c.n_heads * half;
    msa_emu::launch(kern::elt_grid(n), kern::kEltThreads, 0, [&] {
      kern::rope_kernel(xe.data(), c.n_tokens, c.n_heads, c.head_dim, cos_e.data(), sin_e.data());
    });
    expect_near("rope", shape_str("T=%lld heads=%lld d=%lld", c.n_tokens, c.n_heads, c.head_dim), xe, x, 5e-7, 0.0);
  }
}

void test_swiglu_add(msa::CpuBackend& cpu) {
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{5003}}) {
    std::vector<float> gate = uniform(static_cast<size_t>(n), -20.0f, 20.0f), up = uniform(gate.size(), -1.0f, 1.0f);
    std::vector<float> ref(gate.size()), ref_add(gate.size()), sum(gate.size(), NAN);
    cpu.swiglu(gate.data(), up.data(), ref.data(), n);
    cpu.add(gate.data(), up.data(), ref_add.data(), n);
    msa_emu::launch(kern::elt_grid(n), kern::kEltThreads, 0,
                    [&] { kern::add_kernel(gate.data(), up.data(), sum.data(), n); });
    expect_near("add", shape_str("n=%lld", n), sum, ref_add, 0.0, 0.0);
    msa_emu::launch(kern::elt_grid(n), kern::kEltThreads, 0,
                    [&] { kern::swiglu_kernel(gate.data(), up.data(), gate.data(), n); });  // in place
    expect_near("swiglu", shape_str("n=%lld (in place)", n), gate, ref, 1e-30, 2e-6);
  }
}

void test_mean_pool(msa::CpuBackend& cpu) {
  struct Case {
    int64_t rows, dim, chunk;
  };
  for (const Case& c : {Case{1, 128, 64}, Case{65, 300, 64}, Case{10, 33, 1}, Case{7, 600, 3}}) {
    const std::vector<float> x = uniform(static_cast<size_t>(c.rows * c.dim), -5.0f, 5.0f);
    const kern::MeanPoolPlan plan = kern::plan_mean_pool(c.rows, c.dim, c.chunk);
    std::vector<float> ref(static_cast<size_t>(plan.n_chunks * c.dim)), out(ref.size(), NAN);
    cpu.mean_pool(x.data(), c.rows, c.dim, c.chunk, ref.data());
    msa_emu::launch(msa_emu::Dim3{static_cast<unsigned>(plan.n_chunks), static_cast<unsigned>(plan.gy), 1},
                    static_cast<unsigned>(plan.threads), 0,
                    [&] { kern::mean_pool_kernel(x.data(), c.rows, c.dim, c.chunk, out.data()); });
    expect_near("mean_pool", shape_str("rows=%lld dim=%lld chunk=%lld", c.rows, c.dim, c.chunk), out, ref, 0.0, 0.0);
  }
}

// ------------------------------------------------------------------------------------------------- attention

// msa::cuda::attention through the emulator: the same plan, parameters and launches as ops_attention.cu.
msa::Status emu_attention(const msa::AttentionArgs& a, int* n_splits) {
  kern::AttnPlan plan;
  std::vector<float> workspace(size_t{1} << 20, NAN);  // 4 MiB of scratch for the split path, poisoned
  const msa::Status st = kern::plan_attention(a, kSmemOptin, kSms, workspace.size() * sizeof(float), &plan);
  *n_splits = plan.n_splits;
  if (!st.ok() || plan.n_blocks == 0) return st;
  const kern::AttnParams p = kern::attention_params(a, plan, workspace.data());
  msa_emu::launch(msa_emu::Dim3{static_cast<unsigned>(plan.n_blocks), static_cast<unsigned>(plan.n_splits), 1},
                  kern::kAttnThreads, plan.lay.bytes, [&] { kern::attention_kernel(p); });
  if (plan.n_splits > 1) {
    const int64_t n_rows_all = a.n_q * a.n_heads;
    msa_emu::launch(static_cast<unsigned>(n_rows_all), static_cast<unsigned>(plan.combine_threads), 0, [&] {
      kern::attention_combine_kernel(p.part_o, p.part_m, p.part_l, plan.n_splits, n_rows_all, p.d, a.out);
    });
  }
  return st;
}

// mode: 0 causal over own rows; 1 full (null windows); 2 packed segments; 3 random windows (empty, negative,
// past the end); 4 every window empty (as in test_ops_forward.cpp).
struct AttnCase {
  int64_t hq, hkv, d, n_q, n_prefix, n_cached;
  int mode;
  float qscale;
};

void run_attention(msa::CpuBackend& cpu, const AttnCase& c) {
  static const char* const kModes[] = {"causal", "full", "segments", "random-win", "empty-win"};
  const int64_t n_own = c.n_cached + c.n_q, n_kv = c.n_prefix + n_own;
  const std::vector<float> q = uniform(static_cast<size_t>(c.n_q * c.hq * c.d), -c.qscale, c.qscale);
  const std::vector<float> k = uniform(static_cast<size_t>(n_kv * c.hkv * c.d), -1.0f, 1.0f);
  const std::vector<float> v = uniform(k.size(), -1.0f, 1.0f);
  ops_fixtures::AttentionMasks masks = ops_fixtures::make_attention_masks(c.n_q, c.n_cached, c.mode, uniform_int);
  std::vector<int64_t>& ob = masks.own_begin;
  std::vector<int64_t>& oe = masks.own_end;
  std::vector<int32_t>& q_seg = masks.q_seg;
  std::vector<int32_t>& kv_seg = masks.kv_seg;
  msa::AttentionArgs a;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.n_q = c.n_q;
  a.n_kv = n_kv;
  a.n_prefix = c.n_prefix;
  a.n_heads = c.hq;
  a.n_kv_heads = c.hkv;
  a.head_dim = c.d;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));
  if (c.mode != 1) {
    a.own_begin = ob.data();
    a.own_end = oe.data();
  }
  if (c.mode == 2) {
    a.q_seg = q_seg.data();
    a.kv_seg = kv_seg.data();
  }
  std::vector<float> ref(q.size()), out(q.size(), 3e38f);  // garbage (huge values) where nothing is written
  a.out = ref.data();
  if (!cpu.attention(a).ok()) {
    expect_true(false, "cpu attention");
    return;
  }
  a.out = out.data();
  int n_splits = 0;
  const msa::Status st = emu_attention(a, &n_splits);
  char shape[160];
  std::snprintf(shape, sizeof shape, "h%lld/%lld d%lld q%lld pre%lld own%lld %s split %d",
                static_cast<long long>(c.hq), static_cast<long long>(c.hkv), static_cast<long long>(c.d),
                static_cast<long long>(c.n_q), static_cast<long long>(c.n_prefix), static_cast<long long>(n_own),
                kModes[c.mode], n_splits);
  if (!st.ok()) {
    expect_true(false, std::string("attention ") + shape + ": " + st.to_string());
    return;
  }
  const bool all_empty = c.mode == 4 && c.n_prefix == 0;  // every query sees no key: exact zeros
  expect_near("attention", shape, out, ref, all_empty ? 0.0 : 2e-5, all_empty ? 0.0 : 1e-4);
}

void test_attention(msa::CpuBackend& cpu) {
  const AttnCase cases[] = {
      // hq hkv  d   n_q prefix cached mode qscale
      {4, 4, 32, 1, 0, 0, 0, 1.0f},    {4, 4, 32, 5, 17, 0, 0, 1.0f},   {8, 4, 64, 20, 0, 0, 0, 2.0f},
      {8, 2, 128, 1, 300, 40, 0, 1.0f}, {8, 2, 128, 3, 0, 300, 2, 1.0f}, {16, 2, 64, 7, 100, 10, 1, 4.0f},
      {8, 1, 128, 9, 0, 0, 1, 1.0f},   {4, 1, 32, 33, 0, 5, 2, 1.0f},   {8, 8, 32, 30, 0, 20, 3, 1.0f},
      {8, 2, 64, 10, 0, 15, 4, 1.0f},  {8, 2, 64, 10, 25, 15, 4, 1.0f}, {2, 1, 256, 6, 40, 0, 0, 1.0f},
      {4, 2, 80, 13, 9, 3, 3, 1.0f},   {4, 2, 18, 21, 30, 4, 2, 1.0f},  {2, 2, 6, 40, 0, 0, 0, 1.0f},
      {64, 1, 64, 2, 20, 0, 0, 1.0f},  {32, 8, 128, 1, 400, 0, 0, 8.0f},
  };
  for (const AttnCase& c : cases) run_attention(cpu, c);
  // The plan's size checks (the errors of msa::cuda::attention).
  msa::AttentionArgs bad;
  std::vector<float> buf(16);
  bad.q = bad.k = bad.v = buf.data();
  bad.out = buf.data() + 8;
  bad.n_q = 1;
  bad.n_kv = 1;
  bad.n_heads = 6;
  bad.n_kv_heads = 4;
  bad.head_dim = 8;
  kern::AttnPlan plan;
  expect_true(kern::plan_attention(bad, kSmemOptin, kSms, 0, &plan).code() == StatusCode::kShape,
              "attention plan: 6 heads over 4 kv heads -> kShape");
  bad.n_heads = 4;
  bad.head_dim = 512;
  expect_true(kern::plan_attention(bad, kSmemOptin, kSms, 0, &plan).code() == StatusCode::kUnsupported,
              "attention plan: head_dim 512 -> kUnsupported");
}

}  // namespace

int main() {
  msa::CpuBackend cpu;
  test_convert_embedding(cpu);
  test_rmsnorm(cpu);
  test_rope(cpu);
  test_swiglu_add(cpu);
  test_mean_pool(cpu);
  test_attention(cpu);
  if (g_failures > 0) {
    std::printf("test_ops_emu: %d of %d checks FAILED\n", g_failures, g_checks);
    return 1;
  }
  std::printf("test_ops_emu: all %d checks passed\n", g_checks);
  return 0;
}
