// Internal to the router: the two dot-product tile kernels that scoring is built from, one table per
// instruction set (score_kernels_scalar.cpp: portable C++; score_kernels_avx2.cpp: AVX2+FMA intrinsics in
// functions with a target attribute, so the build needs no -mavx2). router.cpp owns the blocking over chunks
// and over the inner dimension, the threads and the reductions; the kernels own the register tiling.
//
// Both kernels compute, for a set of query rows a_r and a block of key rows k_c (one routing-index row per
// chunk, possibly offset to one kv head's slice), the tile out[c * ldo + r] = sum_w a_r[w] * k_c[w].
//
// Determinism contract (what makes scores bitwise independent of the thread count): the value written for
// one (row, chunk) pair depends only on that row, that chunk's key row and `len` — never on the position of
// the chunk in the block, on nc, or on which other rows/chunks share the call. (Each kernel accumulates
// every output element in one fixed operation sequence; edge tiles use the same per-element sequence.)
#pragma once

#include <cstdint>

namespace msa::scan {

// Rows of one packed panel of the outer-product kernel (one AVX2 vector of f32).
constexpr int kPanelRows = 8;
// Query sets of at most this many rows go to the inner-product kernel (no padding to kPanelRows).
constexpr int64_t kInnerMaxRows = 4;

struct ScoreKernels {
  const char* name;

  // Outer-product kernel for many rows (query rows along the vector lanes, key values broadcast).
  // ap: n_panels panels of kPanelRows packed rows; panel p starts at ap + p * panel_stride and holds element
  //     (w, i) of row 8p+i at [w * kPanelRows + i], w < len (the caller offsets ap to the current slice of
  //     the inner dimension). Rows past the real ones are zero.
  // k:  nc key rows, row c at k + c * ldk, elements [0, len).
  // out[c * ldo + 8p + i] = (accumulate ? out[...] : 0) + sum_{w < len} ap(p; w, i) * k[c * ldk + w],
  //     accumulated in w order, so a caller that splits the inner dimension into slices and passes
  //     accumulate = true for all but the first gets the same bits as one call over the whole length.
  void (*outer)(const float* ap, int64_t panel_stride, int64_t n_panels, const float* k, int64_t ldk,
                int64_t len, int64_t nc, float* out, int64_t ldo, bool accumulate);

  // Inner-product kernel for few rows (<= kInnerMaxRows; both operands contiguous along w).
  // a: nr rows at stride lda; k: nc key rows at stride ldk. out[c * ldo + r] = sum_{w < len} a_r[w] * k_c[w].
  void (*inner)(const float* a, int64_t lda, int64_t nr, const float* k, int64_t ldk, int64_t len,
                int64_t nc, float* out, int64_t ldo);
};

const ScoreKernels& scalar_score_kernels();
// Only call these when avx2_score_kernels_supported().
const ScoreKernels& avx2_score_kernels();
bool avx2_score_kernels_supported();

}  // namespace msa::scan
