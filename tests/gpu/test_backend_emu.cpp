// The kernels written for the CUDA Backend (cuda/backend_kernels.cuh: scale, gather_rows, l2_normalize, the page
// decode of decode_pages) compiled as host C++ and run under the CPU emulation of CUDA thread blocks
// (emu/block_emulator.h) against their CPU twins (CpuBackend, page_codec's decode_rows), with the launch plans of
// the device path (cuda/ops_backend.cu). All four are bit-identical to the CPU by construction: the checks are
// exact. No GPU needed.
#define MSA_KERNEL_EMULATION 1

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "emu/block_emulator.h"

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend_kernels.cuh"
#include "memory/page_codec.h"

namespace {

namespace kern = msa::cuda::kern;

int g_failures = 0, g_checks = 0;

std::mt19937 g_rng(777);
std::vector<float> uniform(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g_rng);
  return v;
}
int64_t uniform_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng); }

void expect_true(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%-4s %s\n", ok ? "ok" : "FAIL", what.c_str());
}

// Bitwise equality (NaN bits included).
void expect_same(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
  bool same = got.size() == want.size();
  size_t bad = 0;
  for (size_t i = 0; same && i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      same = false;
      bad = i;
    }
  }
  expect_true(same, what + (same ? "" : " (first difference at element " + std::to_string(bad) + ")"));
}

void test_scale(msa::CpuBackend& cpu) {
  for (int64_t n : {1, 255, 257, 5000}) {
    std::vector<float> x = uniform(static_cast<size_t>(n), -10.0f, 10.0f), ref = x;
    const float s = 0.0883883476f;
    cpu.scale(ref.data(), s, n);
    msa_emu::launch(kern::elt_grid(n), kern::kEltThreads, 0, [&] { kern::scale_kernel(x.data(), s, n); });
    expect_same("scale n=" + std::to_string(n), x, ref);
  }
}

void test_gather_rows(msa::CpuBackend& cpu) {
  struct Case {
    int64_t n_src, width, n;
  };
  for (const Case& c : {Case{10, 1, 4}, Case{37, 129, 12}, Case{5, 2560, 3}, Case{300, 16, 300}}) {
    const std::vector<float> src = uniform(static_cast<size_t>(c.n_src * c.width), -1.0f, 1.0f);
    std::vector<int32_t> rows(static_cast<size_t>(c.n));
    for (int32_t& r : rows) r = static_cast<int32_t>(uniform_int(0, c.n_src - 1));
    rows.back() = static_cast<int32_t>(c.n_src - 1);
    std::vector<float> ref(static_cast<size_t>(c.n * c.width));
    expect_true(cpu.gather_rows(src.data(), c.n_src, c.width, rows.data(), c.n, ref.data()).ok(), "cpu gather_rows");
    const std::string shape = "gather_rows src " + std::to_string(c.n_src) + " x " + std::to_string(c.width) +
                              ", n=" + std::to_string(c.n);
    for (int32_t bad_row : {0, -1, static_cast<int32_t>(c.n_src)}) {  // 0: no bad row
      std::vector<int32_t> rows2 = rows;
      const size_t at = static_cast<size_t>(c.n / 2);
      if (bad_row != 0) rows2[at] = bad_row;
      if (bad_row != 0 && at + 1 < rows2.size()) rows2[at + 1] = bad_row;  // the first bad index is reported
      std::vector<float> out(ref.size(), NAN);
      unsigned long long first_bad = ~0ULL;
      msa_emu::launch(kern::gather_rows_grid(c.n), static_cast<unsigned>(kern::row_threads(c.width)), 0, [&] {
        kern::gather_rows_kernel(src.data(), c.n_src, c.width, rows2.data(), c.n, out.data(), &first_bad);
      });
      if (bad_row == 0) {
        expect_true(first_bad == ~0ULL, shape + ": no bad row flagged");
        expect_same(shape, out, ref);
      } else {
        std::vector<float> want = ref;
        for (size_t i = at; i < rows2.size() && rows2[i] == bad_row; ++i) {
          std::fill(want.begin() + static_cast<int64_t>(i) * c.width, want.begin() + static_cast<int64_t>(i + 1) * c.width,
                    0.0f);
        }
        expect_true(first_bad == at, shape + ": row " + std::to_string(bad_row) + " flagged at index " +
                                         std::to_string(static_cast<long long>(first_bad)));
        expect_same(shape + " (bad rows zeroed)", out, want);
        msa::Status st = cpu.gather_rows(src.data(), c.n_src, c.width, rows2.data(), c.n, want.data());
        expect_true(st.code() == msa::StatusCode::kInvalidArgument, shape + ": the CPU rejects it too");
      }
    }
  }
}

void test_l2_normalize(msa::CpuBackend& cpu) {
  struct Case {
    int64_t n_vectors, dim;
  };
  for (const Case& c : {Case{1, 128}, Case{33, 64}, Case{300, 128}, Case{5, 2560}, Case{7, 3}}) {
    std::vector<float> x = uniform(static_cast<size_t>(c.n_vectors * c.dim), -3.0f, 3.0f);
    // A zero vector (denominator 1e-12) and a tiny one.
    std::fill(x.begin(), x.begin() + c.dim, 0.0f);
    if (c.n_vectors > 2) {
      for (int64_t i = 0; i < c.dim; ++i) x[static_cast<size_t>(2 * c.dim + i)] *= 1e-20f;
    }
    std::vector<float> ref = x;
    cpu.l2_normalize(ref.data(), c.n_vectors, c.dim);
    msa_emu::launch(kern::l2_normalize_grid(c.n_vectors), kern::kL2Threads, 0,
                    [&] { kern::l2_normalize_kernel(x.data(), c.n_vectors, c.dim); });
    expect_same("l2_normalize " + std::to_string(c.n_vectors) + " x " + std::to_string(c.dim), x, ref);
  }
}

void test_decode_rows() {
  struct Case {
    int64_t n_rows, n_heads, head_dim;
  };
  for (msa::PageDType t : {msa::PageDType::kBF16, msa::PageDType::kInt8}) {
    for (const Case& c : {Case{1, 8, 128}, Case{13, 2, 64}, Case{40, 3, 5}}) {
      const int64_t width = c.n_heads * c.head_dim;
      std::vector<float> src = uniform(static_cast<size_t>(c.n_rows * width), -2.0f, 2.0f);
      std::fill(src.begin(), src.begin() + c.head_dim, 0.0f);  // an all-zero head: scale 0
      const size_t rb = msa::page_row_bytes(t, width);
      // One byte of offset: the kernel must not need aligned rows.
      std::vector<uint8_t> buf(static_cast<size_t>(c.n_rows) * rb + 1);
      uint8_t* rows = buf.data() + 1;
      std::vector<float> scales(static_cast<size_t>(c.n_rows * c.n_heads));
      msa::encode_rows(t, src.data(), c.n_rows, c.n_heads, c.head_dim, rows, scales.data());
      std::vector<float> ref(src.size()), out(src.size(), NAN);
      msa::decode_rows(t, rows, scales.data(), c.n_rows, c.n_heads, c.head_dim, ref.data());
      const int64_t n = c.n_rows * width;
      msa_emu::launch(kern::elt_grid(n), kern::kEltThreads, 0, [&] {
        kern::decode_rows_kernel(static_cast<int>(t), rows, scales.data(), n, width, c.head_dim, c.n_heads,
                                 out.data());
      });
      expect_same(std::string("decode_pages ") + msa::page_dtype_name(t) + " " + std::to_string(c.n_rows) + " rows of " +
                      std::to_string(c.n_heads) + " x " + std::to_string(c.head_dim) + " (unaligned rows)",
                  out, ref);
    }
  }
}

}  // namespace

int main() {
  msa::CpuBackend cpu;
  test_scale(cpu);
  test_gather_rows(cpu);
  test_l2_normalize(cpu);
  test_decode_rows();
  if (g_failures > 0) {
    std::printf("test_backend_emu: %d of %d checks FAILED\n", g_failures, g_checks);
    return 1;
  }
  std::printf("test_backend_emu: all %d checks passed\n", g_checks);
  return 0;
}
