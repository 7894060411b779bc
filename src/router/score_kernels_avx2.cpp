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

#include "router/score_kernels.h"

#define MSA_ROUTER_AVX2 __attribute__((target("avx2,fma")))

namespace msa::router {

bool avx2_score_kernels_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

namespace {

// ------------------------------------------------------------------------------------------------ outer

// out tile of V*8 rows x NC chunks; a0/a1: the V panels (a1 unused when V == 1).
template <int V, int NC>
MSA_ROUTER_AVX2 inline void outer_tile(const float* a0, const float* a1, const float* k, int64_t ldk,
                                       int64_t len, float* out, int64_t ldo, bool accumulate) {
  __m256 acc[NC][V];
  for (int c = 0; c < NC; ++c) {
    for (int v = 0; v < V; ++v) {
      acc[c][v] = accumulate ? _mm256_loadu_ps(out + c * ldo + v * kPanelRows) : _mm256_setzero_ps();
    }
  }
  for (int64_t w = 0; w < len; ++w) {
    __m256 x[V];
    x[0] = _mm256_loadu_ps(a0 + w * kPanelRows);
    if constexpr (V == 2) x[1] = _mm256_loadu_ps(a1 + w * kPanelRows);
    for (int c = 0; c < NC; ++c) {
      const __m256 kv = _mm256_broadcast_ss(k + c * ldk + w);
      for (int v = 0; v < V; ++v) acc[c][v] = _mm256_fmadd_ps(x[v], kv, acc[c][v]);
    }
  }
  for (int c = 0; c < NC; ++c) {
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(out + c * ldo + v * kPanelRows, acc[c][v]);
  }
}

// All nc chunks against the V panels at a0/a1: full tiles of NC chunks, then one narrower edge tile (the same
// per-element operation sequence, so an edge chunk gets the bits it would get inside a full tile).
template <int V, int NC>
MSA_ROUTER_AVX2 void outer_sweep(const float* a0, const float* a1, const float* k, int64_t ldk, int64_t len,
                                 int64_t nc, float* out, int64_t ldo, bool accumulate) {
  int64_t c = 0;
  for (; c + NC <= nc; c += NC) outer_tile<V, NC>(a0, a1, k + c * ldk, ldk, len, out + c * ldo, ldo, accumulate);
  const int64_t rem = nc - c;
  const float* kc = k + c * ldk;
  float* oc = out + c * ldo;
  switch (rem) {
    case 0: break;
    case 1: outer_tile<V, 1>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 2: outer_tile<V, 2>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 3: outer_tile<V, 3>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 4: outer_tile<V, 4>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 5: outer_tile<V, 5>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 6: outer_tile<V, 6>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 7: outer_tile<V, 7>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 8: outer_tile<V, 8>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 9: outer_tile<V, 9>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    case 10: outer_tile<V, 10>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;
    default: outer_tile<V, 11>(a0, a1, kc, ldk, len, oc, ldo, accumulate); break;  // NC <= 12
  }
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

template <int NR, int NC>
MSA_ROUTER_AVX2 inline void inner_tile(const float* a, int64_t lda, const float* k, int64_t ldk, int64_t len,
                                       float* out, int64_t ldo) {
  __m256 acc[NR][NC];
  for (int r = 0; r < NR; ++r) {
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  const int64_t len8 = len & ~int64_t{7};
  for (int64_t w = 0; w < len8; w += 8) {
    __m256 kv[NC];
    for (int c = 0; c < NC; ++c) kv[c] = _mm256_loadu_ps(k + c * ldk + w);
    for (int r = 0; r < NR; ++r) {
      const __m256 av = _mm256_loadu_ps(a + r * lda + w);
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_fmadd_ps(av, kv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int c = 0; c < NC; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t w = len8; w < len; ++w) s += a[r * lda + w] * k[c * ldk + w];
      out[c * ldo + r] = s;
    }
  }
}

// NR rows against all nc chunks, NC chunks per tile (NR * NC <= 12 accumulators), then the edge tile.
template <int NR, int NC>
MSA_ROUTER_AVX2 void inner_sweep(const float* a, int64_t lda, const float* k, int64_t ldk, int64_t len, int64_t nc,
                                 float* out, int64_t ldo) {
  int64_t c = 0;
  for (; c + NC <= nc; c += NC) inner_tile<NR, NC>(a, lda, k + c * ldk, ldk, len, out + c * ldo, ldo);
  const int64_t rem = nc - c;
  const float* kc = k + c * ldk;
  float* oc = out + c * ldo;
  switch (rem) {
    case 0: break;
    case 1: inner_tile<NR, 1>(a, lda, kc, ldk, len, oc, ldo); break;
    case 2: inner_tile<NR, 2>(a, lda, kc, ldk, len, oc, ldo); break;
    case 3: inner_tile<NR, 3>(a, lda, kc, ldk, len, oc, ldo); break;
    case 4: inner_tile<NR, 4>(a, lda, kc, ldk, len, oc, ldo); break;
    case 5: inner_tile<NR, 5>(a, lda, kc, ldk, len, oc, ldo); break;
    case 6: inner_tile<NR, 6>(a, lda, kc, ldk, len, oc, ldo); break;
    default: inner_tile<NR, 7>(a, lda, kc, ldk, len, oc, ldo); break;  // NC <= 8
  }
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

}  // namespace msa::router
