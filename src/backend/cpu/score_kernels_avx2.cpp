// AVX2 + FMA score kernels. Every function carries MSA_ROUTER_AVX2 (a function target attribute) instead of
// the file being compiled with -mavx2, so nothing else — in particular no inline function or template from a
// header — is built for AVX2 and the library still runs on a baseline x86-64 CPU; router.cpp calls these
// only after avx2_score_kernels_supported(). No lambdas here: they would not inherit the target.
//
// outer: the GEMM micro-kernel. A register tile of 16 query rows (2 vectors of a packed panel pair) x 6 chunks
//   = 12 accumulators; per inner index w: 2 vector loads of the panel pair + 6 broadcasts of key values feed
//   12 FMAs, so the two FMA ports, not the loads, set the pace. The query panels (16 rows x one slice of the
//   inner dimension, 16 KiB at the driver's slice of 256) stay in L1 while the kernel sweeps every chunk of
//   the driver's block, whose key slice (~96 KiB) stays in L2. A lone last panel uses 8 rows x 12 chunks.
// inner: for 1-4 query rows (query "last", query "mean" under the head-mean collapse, or head max with one
//   routing token): dot products along w, 8 lanes per accumulator, up to 12 accumulators (rows x chunks), then
//   one horizontal sum per output. Memory-bound: each key row is read once.
#include <immintrin.h>

#include <cstdint>

#include "core/cpu_features.h"
#include "backend/cpu/score_kernels.h"

#define MSA_ROUTER_AVX2 __attribute__((target("avx2,fma")))

namespace msa::scan {

bool avx2_score_kernels_supported() { return cpu_has_avx2_fma(); }

namespace {

// ------------------------------------------------------------------------------------------------ outer
//
// The register tiles are written with one named variable per accumulator (expanded by the macros below, with
// `if constexpr` dropping the ones a narrower edge tile does not use): with an array of __m256 GCC keeps a
// stack copy of every accumulator up to date inside the loop, and the stores, not the FMAs, set the pace.

#define MSA_FOR_6(M) M(0) M(1) M(2) M(3) M(4) M(5)
#define MSA_FOR_12(M) MSA_FOR_6(M) M(6) M(7) M(8) M(9) M(10) M(11)

// 16 rows (panels a0, a1) x NC <= 6 chunks: accumulators lo##c (rows 0-7) and hi##c (rows 8-15).
template <int NC>
MSA_ROUTER_AVX2 inline void outer_tile16(const float* a0, const float* a1, const float* k, int64_t ldk,
                                         int64_t len, float* out, int64_t ldo, bool accumulate) {
  static_assert(NC >= 1 && NC <= 6, "16-row tiles hold at most 6 chunks");
#define MSA_DECL(c)                                                                                     \
  [[maybe_unused]] __m256 lo##c = _mm256_setzero_ps(), hi##c = _mm256_setzero_ps();                     \
  if constexpr (NC > c) {                                                                               \
    if (accumulate) {                                                                                   \
      lo##c = _mm256_loadu_ps(out + c * ldo);                                                           \
      hi##c = _mm256_loadu_ps(out + c * ldo + kPanelRows);                                              \
    }                                                                                                   \
  }
  MSA_FOR_6(MSA_DECL)
#undef MSA_DECL
  const float* kr = k;
  for (int64_t w = 0; w < len; ++w, ++kr) {
    const __m256 x0 = _mm256_loadu_ps(a0 + w * kPanelRows);
    const __m256 x1 = _mm256_loadu_ps(a1 + w * kPanelRows);
#define MSA_STEP(c)                                                                                     \
  if constexpr (NC > c) {                                                                               \
    const __m256 kv = _mm256_broadcast_ss(kr + c * ldk);                                                \
    lo##c = _mm256_fmadd_ps(x0, kv, lo##c);                                                             \
    hi##c = _mm256_fmadd_ps(x1, kv, hi##c);                                                             \
  }
    MSA_FOR_6(MSA_STEP)
#undef MSA_STEP
  }
#define MSA_STORE(c)                                                                                    \
  if constexpr (NC > c) {                                                                               \
    _mm256_storeu_ps(out + c * ldo, lo##c);                                                             \
    _mm256_storeu_ps(out + c * ldo + kPanelRows, hi##c);                                                \
  }
  MSA_FOR_6(MSA_STORE)
#undef MSA_STORE
}

// 8 rows (panel a0) x NC <= 12 chunks, for a lone last panel: accumulators acc##c.
template <int NC>
MSA_ROUTER_AVX2 inline void outer_tile8(const float* a0, const float*, const float* k, int64_t ldk, int64_t len,
                                        float* out, int64_t ldo, bool accumulate) {
  static_assert(NC >= 1 && NC <= 12, "8-row tiles hold at most 12 chunks");
#define MSA_DECL(c)                                                                                     \
  [[maybe_unused]] __m256 acc##c = _mm256_setzero_ps();                                                 \
  if constexpr (NC > c) {                                                                               \
    if (accumulate) acc##c = _mm256_loadu_ps(out + c * ldo);                                            \
  }
  MSA_FOR_12(MSA_DECL)
#undef MSA_DECL
  const float* kr = k;
  for (int64_t w = 0; w < len; ++w, ++kr) {
    const __m256 x0 = _mm256_loadu_ps(a0 + w * kPanelRows);
#define MSA_STEP(c)                                                                                     \
  if constexpr (NC > c) acc##c = _mm256_fmadd_ps(x0, _mm256_broadcast_ss(kr + c * ldk), acc##c);
    MSA_FOR_12(MSA_STEP)
#undef MSA_STEP
  }
#define MSA_STORE(c) \
  if constexpr (NC > c) _mm256_storeu_ps(out + c * ldo, acc##c);
  MSA_FOR_12(MSA_STORE)
#undef MSA_STORE
}

// Selects the tile of V vectors of rows.
template <int V, int NC>
MSA_ROUTER_AVX2 inline void outer_tile(const float* a0, const float* a1, const float* k, int64_t ldk,
                                       int64_t len, float* out, int64_t ldo, bool accumulate) {
  if constexpr (V == 2) {
    outer_tile16<NC>(a0, a1, k, ldk, len, out, ldo, accumulate);
  } else {
    outer_tile8<NC>(a0, a1, k, ldk, len, out, ldo, accumulate);
  }
}

// The edge tile of rem < NC chunks, dispatched to the template of exactly rem chunks.
template <int V, int N>
MSA_ROUTER_AVX2 inline void outer_edge(int64_t rem, const float* a0, const float* a1, const float* k, int64_t ldk,
                                       int64_t len, float* out, int64_t ldo, bool accumulate) {
  if constexpr (N > 0) {
    if (rem == N) {
      outer_tile<V, N>(a0, a1, k, ldk, len, out, ldo, accumulate);
    } else {
      outer_edge<V, N - 1>(rem, a0, a1, k, ldk, len, out, ldo, accumulate);
    }
  }
}

// All nc chunks against the V panels at a0/a1: full tiles of NC chunks, then one narrower edge tile (the same
// per-element operation sequence, so an edge chunk gets the bits it would get inside a full tile).
template <int V, int NC>
MSA_ROUTER_AVX2 void outer_sweep(const float* a0, const float* a1, const float* k, int64_t ldk, int64_t len,
                                 int64_t nc, float* out, int64_t ldo, bool accumulate) {
  int64_t c = 0;
  for (; c + NC <= nc; c += NC) outer_tile<V, NC>(a0, a1, k + c * ldk, ldk, len, out + c * ldo, ldo, accumulate);
  outer_edge<V, NC - 1>(nc - c, a0, a1, k + c * ldk, ldk, len, out + c * ldo, ldo, accumulate);
}

MSA_ROUTER_AVX2 void outer_avx2(const float* ap, int64_t panel_stride, int64_t n_panels, const float* k,
                                int64_t ldk, int64_t len, int64_t nc, float* out, int64_t ldo, bool accumulate) {
  int64_t p = 0;
  for (; p + 2 <= n_panels; p += 2) {
    const float* a0 = ap + p * panel_stride;
    outer_sweep<2, 6>(a0, a0 + panel_stride, k, ldk, len, nc, out + p * kPanelRows, ldo, accumulate);
  }
  if (p < n_panels) {
    const float* a0 = ap + p * panel_stride;
    outer_sweep<1, 12>(a0, a0, k, ldk, len, nc, out + p * kPanelRows, ldo, accumulate);
  }
}

// ------------------------------------------------------------------------------------------------ inner

MSA_ROUTER_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#define MSA_FOR_C8(M, r) M(r, 0) M(r, 1) M(r, 2) M(r, 3) M(r, 4) M(r, 5) M(r, 6) M(r, 7)
#define MSA_FOR_R4C8(M) MSA_FOR_C8(M, 0) MSA_FOR_C8(M, 1) MSA_FOR_C8(M, 2) MSA_FOR_C8(M, 3)

// NR <= 4 rows x NC <= 8 chunks (NR * NC <= 12): accumulators acc##r##c, one named variable each (see outer).
template <int NR, int NC>
MSA_ROUTER_AVX2 inline void inner_tile(const float* a, int64_t lda, const float* k, int64_t ldk, int64_t len,
                                       float* out, int64_t ldo) {
  static_assert(NR >= 1 && NR <= 4 && NC >= 1 && NC <= 8 && NR * NC <= 12, "inner tile too large");
#define MSA_DECL(r, c) [[maybe_unused]] __m256 acc##r##c = _mm256_setzero_ps();
  MSA_FOR_R4C8(MSA_DECL)
#undef MSA_DECL
  const int64_t len8 = len & ~int64_t{7};
  for (int64_t w = 0; w < len8; w += 8) {
#define MSA_LOAD_K(c) \
  [[maybe_unused]] const __m256 kv##c = NC > c ? _mm256_loadu_ps(k + c * ldk + w) : _mm256_setzero_ps();
    MSA_LOAD_K(0) MSA_LOAD_K(1) MSA_LOAD_K(2) MSA_LOAD_K(3) MSA_LOAD_K(4) MSA_LOAD_K(5) MSA_LOAD_K(6)
    MSA_LOAD_K(7)
#undef MSA_LOAD_K
#define MSA_LOAD_A(r) \
  [[maybe_unused]] const __m256 av##r = NR > r ? _mm256_loadu_ps(a + r * lda + w) : _mm256_setzero_ps();
    MSA_LOAD_A(0) MSA_LOAD_A(1) MSA_LOAD_A(2) MSA_LOAD_A(3)
#undef MSA_LOAD_A
#define MSA_FMA(r, c) \
  if constexpr (NR > r && NC > c) acc##r##c = _mm256_fmadd_ps(av##r, kv##c, acc##r##c);
    MSA_FOR_R4C8(MSA_FMA)
#undef MSA_FMA
  }
#define MSA_OUT(r, c)                                                                   \
  if constexpr (NR > r && NC > c) {                                                     \
    float s = hsum(acc##r##c);                                                          \
    for (int64_t w = len8; w < len; ++w) s += a[r * lda + w] * k[c * ldk + w];          \
    out[c * ldo + r] = s;                                                               \
  }
  MSA_FOR_R4C8(MSA_OUT)
#undef MSA_OUT
}

template <int NR, int N>
MSA_ROUTER_AVX2 inline void inner_edge(int64_t rem, const float* a, int64_t lda, const float* k, int64_t ldk,
                                       int64_t len, float* out, int64_t ldo) {
  if constexpr (N > 0) {
    if (rem == N) {
      inner_tile<NR, N>(a, lda, k, ldk, len, out, ldo);
    } else {
      inner_edge<NR, N - 1>(rem, a, lda, k, ldk, len, out, ldo);
    }
  }
}

// NR rows against all nc chunks, NC chunks per tile (NR * NC <= 12 accumulators), then the edge tile.
template <int NR, int NC>
MSA_ROUTER_AVX2 void inner_sweep(const float* a, int64_t lda, const float* k, int64_t ldk, int64_t len, int64_t nc,
                                 float* out, int64_t ldo) {
  int64_t c = 0;
  for (; c + NC <= nc; c += NC) inner_tile<NR, NC>(a, lda, k + c * ldk, ldk, len, out + c * ldo, ldo);
  inner_edge<NR, NC - 1>(nc - c, a, lda, k + c * ldk, ldk, len, out + c * ldo, ldo);
}

MSA_ROUTER_AVX2 void inner_avx2(const float* a, int64_t lda, int64_t nr, const float* k, int64_t ldk, int64_t len,
                                int64_t nc, float* out, int64_t ldo) {
  // Row groups of at most 4 (the driver sends nr <= kInnerMaxRows; larger nr still works, 4 rows at a time).
  for (int64_t r = 0; r < nr; r += 4) {
    const float* ar = a + r * lda;
    float* orow = out + r;
    switch (nr - r < 4 ? nr - r : 4) {
      case 1: inner_sweep<1, 8>(ar, lda, k, ldk, len, nc, orow, ldo); break;
      case 2: inner_sweep<2, 6>(ar, lda, k, ldk, len, nc, orow, ldo); break;
      case 3: inner_sweep<3, 4>(ar, lda, k, ldk, len, nc, orow, ldo); break;
      default: inner_sweep<4, 3>(ar, lda, k, ldk, len, nc, orow, ldo); break;
    }
  }
}

}  // namespace

const ScoreKernels& avx2_score_kernels() {
  static const ScoreKernels kernels{"avx2", outer_avx2, inner_avx2};
  return kernels;
}

}  // namespace msa::scan
