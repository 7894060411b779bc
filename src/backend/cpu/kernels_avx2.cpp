// AVX2 + FMA + F16C kernels. Every function here carries MSA_AVX2 (a function target attribute) instead of
// the TU being built with -mavx2, so nothing outside these functions — in particular no inline function or
// template instantiated from a header — is compiled for AVX2, and the library still runs on a baseline x86-64
// CPU (CpuBackend only calls these after cpu_has_avx2()). No lambdas here: they would not inherit the target.
//
// Matmul (Y[T, out] = X[T, in] · Wᵀ, W [out, in] row-major in bf16/f16/f32):
// * gemv (T <= 8), bandwidth bound: W is streamed once, converted in registers. bf16 uses the pair trick:
//   a 32-bit lane holding two bf16 values w[2j] (low half) and w[2j+1] (high half) gives f32 w[2j] by a left
//   shift of 16 and f32 w[2j+1] by masking the low half, so 16 weights cost 1 load + 2 integer ops; x is
//   permuted once per call (gemv_prepare) into matching even/odd order. T == 1: 4 rows at a time, 8
//   accumulators; 2 <= T <= 8: each converted block feeds all T rows of x (no packing, whose transposes
//   would cost more than the arithmetic at such T).
// * gemm (T > 1): for each block of 64 output rows and each 256-wide slice of K, the W block is converted
//   to f32 and packed transposed, [k][16 rows] per 16-row panel (64 KiB, stays in L2), then a 6x16
//   register-blocked micro-kernel (12 accumulators, x broadcast from its row) runs over every 6 rows of X.
//   The conversion of W is thus paid once per call and reused by all T rows; W is never expanded whole.
#include <immintrin.h>

#include <cstdint>

#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/cpu_features.h"

#define MSA_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace msa::cpu {

bool cpu_has_avx2() { return cpu_has_avx2_fma_f16c(); }

namespace {

constexpr int kNr = 16;  // panel width (output rows per micro-kernel), 2 ymm
constexpr int kMr = 6;   // rows of X per micro-kernel

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

MSA_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

// 8 consecutive values of a float dtype -> 8 f32.
MSA_AVX2 inline __m256 load8_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
MSA_AVX2 inline __m256 load8_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// ------------------------------------------------------------------------------------------------ dot/axpy

MSA_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float r = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

MSA_AVX2 void axpy_avx2(float alpha, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// ------------------------------------------------------------------------------------------------ gemv

// bf16 rows are consumed 16 values at a time; within each 16-block xp holds x[even] then x[odd].
MSA_AVX2 void gemv_prepare_avx2(DType dt, const float* x, int64_t k, float* xp) {
  if (dt != DType::kBF16) {
    std::memcpy(xp, x, static_cast<size_t>(k) * sizeof(float));
    return;
  }
  const int64_t k16 = k & ~int64_t{15};
  for (int64_t b = 0; b < k16; b += 16) {
    for (int j = 0; j < 8; ++j) {
      xp[b + j] = x[b + 2 * j];
      xp[b + 8 + j] = x[b + 2 * j + 1];
    }
  }
  for (int64_t i = k16; i < k; ++i) xp[i] = x[i];
}

// Dot products of R consecutive bf16 rows with xp.
template <int R>
MSA_AVX2 inline void gemv_bf16_rows(const uint16_t* w, int64_t k, const float* xp, float* y) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  __m256 even[R], odd[R];
  for (int r = 0; r < R; ++r) {
    even[r] = _mm256_setzero_ps();
    odd[r] = _mm256_setzero_ps();
  }
  const int64_t k16 = k & ~int64_t{15};
  for (int64_t i = 0; i < k16; i += 16) {
    const __m256 xe = _mm256_loadu_ps(xp + i);
    const __m256 xo = _mm256_loadu_ps(xp + i + 8);
    for (int r = 0; r < R; ++r) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * k + i));
      even[r] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, even[r]);
      odd[r] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)), xo, odd[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(_mm256_add_ps(even[r], odd[r]));
    const uint16_t* row = w + r * k;
    for (int64_t i = k16; i < k; ++i) s += bf16_to_f32(row[i]) * xp[i];
    y[r] = s;
  }
}

// Dot products of R consecutive f16 (F16 = true) or f32 rows with xp (= x).
template <int R, bool F16>
MSA_AVX2 inline void gemv_8wide_rows(const void* wv, int64_t k, const float* xp, float* y) {
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm256_setzero_ps();
    acc1[r] = _mm256_setzero_ps();
  }
  const int64_t k16 = k & ~int64_t{15};
  for (int64_t i = 0; i < k16; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(xp + i);
    const __m256 x1 = _mm256_loadu_ps(xp + i + 8);
    for (int r = 0; r < R; ++r) {
      __m256 w0, w1;
      if (F16) {
        const uint16_t* row = static_cast<const uint16_t*>(wv) + r * k + i;
        w0 = load8_f16(row);
        w1 = load8_f16(row + 8);
      } else {
        const float* row = static_cast<const float*>(wv) + r * k + i;
        w0 = _mm256_loadu_ps(row);
        w1 = _mm256_loadu_ps(row + 8);
      }
      acc0[r] = _mm256_fmadd_ps(w0, x0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(w1, x1, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(_mm256_add_ps(acc0[r], acc1[r]));
    for (int64_t i = k16; i < k; ++i) {
      const float wi = F16 ? f16_to_f32(static_cast<const uint16_t*>(wv)[r * k + i])
                           : static_cast<const float*>(wv)[r * k + i];
      s += wi * xp[i];
    }
    y[r] = s;
  }
}

// 16 weights of a row at column i as two f32 vectors, in the order gemv_prepare put x in: bf16 -> (even, odd),
// f16/f32 -> (first 8, next 8).
template <int DT>
MSA_AVX2 inline void load16_weights(const void* row, int64_t i, __m256* w0, __m256* w1) {
  if (DT == static_cast<int>(DType::kBF16)) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + i));
    *w0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *w1 = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if (DT == static_cast<int>(DType::kF16)) {
    *w0 = load8_f16(static_cast<const uint16_t*>(row) + i);
    *w1 = load8_f16(static_cast<const uint16_t*>(row) + i + 8);
  } else {
    *w0 = _mm256_loadu_ps(static_cast<const float*>(row) + i);
    *w1 = _mm256_loadu_ps(static_cast<const float*>(row) + i + 8);
  }
}

MSA_AVX2 inline float load1_weight(DType dt, const void* row, int64_t i) {
  if (dt == DType::kBF16) return bf16_to_f32(static_cast<const uint16_t*>(row)[i]);
  if (dt == DType::kF16) return f16_to_f32(static_cast<const uint16_t*>(row)[i]);
  return static_cast<const float*>(row)[i];
}

// y[t, r] = dot(W row r, xp row t) for R consecutive W rows and T rows of xp: each 16-weight block is loaded
// and converted once and feeds 2·T FMAs. R·T accumulators (<= 8), x rows read from L1/L2.
template <int R, int T, int DT>
MSA_AVX2 inline void gemv_multi_rows(const void* w, int64_t k, const float* xp, float* y, int64_t ldy) {
  const size_t esz = dtype_size(static_cast<DType>(DT));
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * static_cast<size_t>(k) * esz;
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const int64_t k16 = k & ~int64_t{15};
  for (int64_t i = 0; i < k16; i += 16) {
    __m256 w0[R], w1[R];
    for (int r = 0; r < R; ++r) load16_weights<DT>(rows[r], i, &w0[r], &w1[r]);
    for (int t = 0; t < T; ++t) {
      const __m256 x0 = _mm256_loadu_ps(xp + t * k + i);
      const __m256 x1 = _mm256_loadu_ps(xp + t * k + i + 8);
      for (int r = 0; r < R; ++r) {
        acc[r][t] = _mm256_fmadd_ps(w0[r], x0, acc[r][t]);
        acc[r][t] = _mm256_fmadd_ps(w1[r], x1, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t i = k16; i < k; ++i) s += load1_weight(static_cast<DType>(DT), rows[r], i) * xp[t * k + i];
      y[t * ldy + r] = s;
    }
  }
}

// Rows [o0, o1) for T in 2..8: pairs of W rows for T <= 4, single rows above (accumulators fit in registers).
template <int T, int DT>
MSA_AVX2 void gemv_multi(const void* w, int64_t k, const float* xp, float* y, int64_t ldy, int64_t o0, int64_t o1) {
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(static_cast<DType>(DT));
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  int64_t o = o0;
  if (T <= 4) {
    for (; o + 2 <= o1; o += 2) gemv_multi_rows<2, T, DT>(wb + static_cast<size_t>(o) * row_bytes, k, xp, y + o, ldy);
  }
  for (; o < o1; ++o) gemv_multi_rows<1, T, DT>(wb + static_cast<size_t>(o) * row_bytes, k, xp, y + o, ldy);
}

template <int DT>
MSA_AVX2 void gemv_multi_dispatch(const void* w, int64_t k, const float* xp, int64_t t, float* y, int64_t ldy,
                                  int64_t o0, int64_t o1) {
  switch (t) {
    case 2: gemv_multi<2, DT>(w, k, xp, y, ldy, o0, o1); break;
    case 3: gemv_multi<3, DT>(w, k, xp, y, ldy, o0, o1); break;
    case 4: gemv_multi<4, DT>(w, k, xp, y, ldy, o0, o1); break;
    case 5: gemv_multi<5, DT>(w, k, xp, y, ldy, o0, o1); break;
    case 6: gemv_multi<6, DT>(w, k, xp, y, ldy, o0, o1); break;
    case 7: gemv_multi<7, DT>(w, k, xp, y, ldy, o0, o1); break;
    default: gemv_multi<8, DT>(w, k, xp, y, ldy, o0, o1); break;
  }
}

MSA_AVX2 void gemv_avx2(DType dt, const void* w, int64_t k, const float* xp, int64_t t, float* y, int64_t ldy,
                        int64_t o0, int64_t o1) {
  if (t > 1) {
    // Larger T are split by the caller; here 2 <= t <= kGemvMaxRows.
    if (dt == DType::kBF16) {
      gemv_multi_dispatch<static_cast<int>(DType::kBF16)>(w, k, xp, t, y, ldy, o0, o1);
    } else if (dt == DType::kF16) {
      gemv_multi_dispatch<static_cast<int>(DType::kF16)>(w, k, xp, t, y, ldy, o0, o1);
    } else {
      gemv_multi_dispatch<static_cast<int>(DType::kF32)>(w, k, xp, t, y, ldy, o0, o1);
    }
    return;
  }
  int64_t o = o0;
  if (dt == DType::kBF16) {
    const uint16_t* wb = static_cast<const uint16_t*>(w);
    for (; o + 4 <= o1; o += 4) gemv_bf16_rows<4>(wb + o * k, k, xp, y + o);
    for (; o < o1; ++o) gemv_bf16_rows<1>(wb + o * k, k, xp, y + o);
  } else if (dt == DType::kF16) {
    const uint16_t* wh = static_cast<const uint16_t*>(w);
    for (; o + 4 <= o1; o += 4) gemv_8wide_rows<4, true>(wh + o * k, k, xp, y + o);
    for (; o < o1; ++o) gemv_8wide_rows<1, true>(wh + o * k, k, xp, y + o);
  } else {
    const float* wf = static_cast<const float*>(w);
    for (; o + 4 <= o1; o += 4) gemv_8wide_rows<4, false>(wf + o * k, k, xp, y + o);
    for (; o < o1; ++o) gemv_8wide_rows<1, false>(wf + o * k, k, xp, y + o);
  }
}

// ------------------------------------------------------------------------------------------------ gemm

MSA_AVX2 inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                                __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
  r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
  r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
  r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
  r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
  r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
  r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
  r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
}

MSA_AVX2 inline __m256 load8_any(DType dt, const uint8_t* row, int64_t k) {
  if (dt == DType::kBF16) return load8_bf16(reinterpret_cast<const uint16_t*>(row) + k);
  if (dt == DType::kF16) return load8_f16(reinterpret_cast<const uint16_t*>(row) + k);
  return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
}

MSA_AVX2 inline float load1_any(DType dt, const uint8_t* row, int64_t k) {
  if (dt == DType::kBF16) return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
  if (dt == DType::kF16) return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
  return reinterpret_cast<const float*>(row)[k];
}

// Packs rows [row0, row0 + n_valid) x columns [k0, k0 + kb) of W into tile[kk * 16 + r] (f32); rows
// n_valid..15 of the panel are zero.
MSA_AVX2 void pack_panel(DType dt, const void* w, int64_t k, int64_t row0, int n_valid, int64_t k0, int64_t kb,
                         float* tile) {
  const size_t esz = dtype_size(dt);
  const uint8_t* rows[kNr];
  for (int r = 0; r < kNr; ++r) {
    rows[r] = r < n_valid ? static_cast<const uint8_t*>(w) + static_cast<size_t>(row0 + r) * static_cast<size_t>(k) * esz
                          : nullptr;
  }
  const int64_t kb8 = kb & ~int64_t{7};
  for (int g = 0; g < 2; ++g) {
    const uint8_t* const* rg = rows + 8 * g;
    for (int64_t kk = 0; kk < kb8; kk += 8) {
      const int64_t kc = k0 + kk;
      __m256 r0 = rg[0] ? load8_any(dt, rg[0], kc) : _mm256_setzero_ps();
      __m256 r1 = rg[1] ? load8_any(dt, rg[1], kc) : _mm256_setzero_ps();
      __m256 r2 = rg[2] ? load8_any(dt, rg[2], kc) : _mm256_setzero_ps();
      __m256 r3 = rg[3] ? load8_any(dt, rg[3], kc) : _mm256_setzero_ps();
      __m256 r4 = rg[4] ? load8_any(dt, rg[4], kc) : _mm256_setzero_ps();
      __m256 r5 = rg[5] ? load8_any(dt, rg[5], kc) : _mm256_setzero_ps();
      __m256 r6 = rg[6] ? load8_any(dt, rg[6], kc) : _mm256_setzero_ps();
      __m256 r7 = rg[7] ? load8_any(dt, rg[7], kc) : _mm256_setzero_ps();
      transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
      float* dst = tile + kk * kNr + 8 * g;
      _mm256_store_ps(dst + 0 * kNr, r0);
      _mm256_store_ps(dst + 1 * kNr, r1);
      _mm256_store_ps(dst + 2 * kNr, r2);
      _mm256_store_ps(dst + 3 * kNr, r3);
      _mm256_store_ps(dst + 4 * kNr, r4);
      _mm256_store_ps(dst + 5 * kNr, r5);
      _mm256_store_ps(dst + 6 * kNr, r6);
      _mm256_store_ps(dst + 7 * kNr, r7);
    }
  }
  for (int64_t kk = kb8; kk < kb; ++kk) {
    for (int r = 0; r < kNr; ++r) tile[kk * kNr + r] = rows[r] ? load1_any(dt, rows[r], k0 + kk) : 0.0f;
  }
}

// y[m, 0:n_valid] (+)= sum_kk x[m, kk] * tile[kk, 0:16] for m < MR. x row stride ldx, y row stride ldy.
template <int MR>
MSA_AVX2 void micro_kernel(const float* x, int64_t ldx, const float* tile, int64_t kb, float* y, int64_t ldy,
                           int n_valid, bool accumulate) {
  __m256 a0[MR], a1[MR];
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m) {
    a0[m] = _mm256_setzero_ps();
    a1[m] = _mm256_setzero_ps();
  }
  for (int64_t kk = 0; kk < kb; ++kk) {
    const __m256 w0 = _mm256_load_ps(tile + kk * kNr);
    const __m256 w1 = _mm256_load_ps(tile + kk * kNr + 8);
#pragma GCC unroll 6
    for (int m = 0; m < MR; ++m) {
      const __m256 xb = _mm256_broadcast_ss(x + m * ldx + kk);
      a0[m] = _mm256_fmadd_ps(xb, w0, a0[m]);
      a1[m] = _mm256_fmadd_ps(xb, w1, a1[m]);
    }
  }
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m) {
    float* yr = y + m * ldy;
    if (n_valid == kNr) {
      if (accumulate) {
        a0[m] = _mm256_add_ps(a0[m], _mm256_loadu_ps(yr));
        a1[m] = _mm256_add_ps(a1[m], _mm256_loadu_ps(yr + 8));
      }
      _mm256_storeu_ps(yr, a0[m]);
      _mm256_storeu_ps(yr + 8, a1[m]);
    } else {
      alignas(32) float tmp[kNr];
      _mm256_store_ps(tmp, a0[m]);
      _mm256_store_ps(tmp + 8, a1[m]);
      for (int j = 0; j < n_valid; ++j) yr[j] = accumulate ? yr[j] + tmp[j] : tmp[j];
    }
  }
}

MSA_AVX2 void run_micro_kernel(int mr, const float* x, int64_t ldx, const float* tile, int64_t kb, float* y,
                               int64_t ldy, int n_valid, bool accumulate) {
  switch (mr) {
    case 6: micro_kernel<6>(x, ldx, tile, kb, y, ldy, n_valid, accumulate); break;
    case 5: micro_kernel<5>(x, ldx, tile, kb, y, ldy, n_valid, accumulate); break;
    case 4: micro_kernel<4>(x, ldx, tile, kb, y, ldy, n_valid, accumulate); break;
    case 3: micro_kernel<3>(x, ldx, tile, kb, y, ldy, n_valid, accumulate); break;
    case 2: micro_kernel<2>(x, ldx, tile, kb, y, ldy, n_valid, accumulate); break;
    default: micro_kernel<1>(x, ldx, tile, kb, y, ldy, n_valid, accumulate); break;
  }
}

size_t gemm_scratch_avx2(int64_t) { return static_cast<size_t>(kGemmBlockRows * kGemmKc); }

MSA_AVX2 void gemm_avx2(DType dt, const void* w, int64_t k, const float* x, int64_t t, float* y, int64_t ldy,
                        int64_t o0, int64_t o1, float* tile) {
  for (int64_t ob = o0; ob < o1; ob += kGemmBlockRows) {
    const int64_t nb = min64(kGemmBlockRows, o1 - ob);
    const int64_t n_panels = (nb + kNr - 1) / kNr;
    for (int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
      const int64_t kb = min64(kGemmKc, k - k0);
      for (int64_t p = 0; p < n_panels; ++p) {
        const int n_valid = static_cast<int>(min64(kNr, nb - p * kNr));
        pack_panel(dt, w, k, ob + p * kNr, n_valid, k0, kb, tile + p * kNr * kGemmKc);
      }
      for (int64_t m = 0; m < t; m += kMr) {
        const int mr = static_cast<int>(min64(kMr, t - m));
        for (int64_t p = 0; p < n_panels; ++p) {
          const int n_valid = static_cast<int>(min64(kNr, nb - p * kNr));
          run_micro_kernel(mr, x + m * k + k0, k, tile + p * kNr * kGemmKc, kb, y + m * ldy + ob + p * kNr, ldy,
                           n_valid, k0 > 0);
        }
      }
    }
  }
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels kernels = {
      "avx2", gemv_prepare_avx2, gemv_avx2, gemm_scratch_avx2, gemm_avx2, dot_avx2, axpy_avx2,
  };
  return kernels;
}

}  // namespace msa::cpu
