// Portable score kernels (what a CPU without AVX2/FMA runs, and the twin the AVX2 kernels are tested
// against). Plain loops shaped so that the compiler can vectorise them at the baseline ISA (SSE2 on x86-64):
// the innermost loop always runs over independent lanes (rows of a panel, or 8 partial sums), never over a
// floating-point reduction, which the compiler may not reorder.
#include <cstring>

#include "backend/cpu/score_kernels.h"

namespace msa::scan {

namespace {

constexpr int kChunkTile = 4;  // chunks per register tile: 4 x 8 accumulators

void outer_scalar(const float* ap, int64_t panel_stride, int64_t n_panels, const float* k, int64_t ldk,
                  int64_t len, int64_t nc, float* out, int64_t ldo, bool accumulate) {
  for (int64_t p = 0; p < n_panels; ++p) {
    const float* a = ap + p * panel_stride;
    for (int64_t c0 = 0; c0 < nc; c0 += kChunkTile) {
      const int64_t n = nc - c0 < kChunkTile ? nc - c0 : kChunkTile;
      float acc[kChunkTile][kPanelRows] = {};
      for (int64_t c = 0; c < n; ++c) {
        float* o = out + (c0 + c) * ldo + p * kPanelRows;
        for (int i = 0; i < kPanelRows; ++i) acc[c][i] = accumulate ? o[i] : 0.0f;
      }
      for (int64_t w = 0; w < len; ++w) {
        const float* aw = a + w * kPanelRows;
        for (int64_t c = 0; c < n; ++c) {
          const float kv = k[(c0 + c) * ldk + w];
          for (int i = 0; i < kPanelRows; ++i) acc[c][i] += aw[i] * kv;
        }
      }
      for (int64_t c = 0; c < n; ++c) {
        std::memcpy(out + (c0 + c) * ldo + p * kPanelRows, acc[c], sizeof(acc[c]));
      }
    }
  }
}

// One dot product as 8 interleaved partial sums (lane j takes w = j mod 8), summed pairwise at the end.
float dot8(const float* a, const float* b, int64_t len) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t len8 = len & ~int64_t{7};
  for (int64_t w = 0; w < len8; w += 8) {
    for (int j = 0; j < 8; ++j) lane[j] += a[w + j] * b[w + j];
  }
  float s = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
  for (int64_t w = len8; w < len; ++w) s += a[w] * b[w];
  return s;
}

void inner_scalar(const float* a, int64_t lda, int64_t nr, const float* k, int64_t ldk, int64_t len, int64_t nc,
                  float* out, int64_t ldo) {
  for (int64_t c = 0; c < nc; ++c) {
    for (int64_t r = 0; r < nr; ++r) out[c * ldo + r] = dot8(a + r * lda, k + c * ldk, len);
  }
}

}  // namespace

const ScoreKernels& scalar_score_kernels() {
  static const ScoreKernels kernels{"scalar", outer_scalar, inner_scalar};
  return kernels;
}

}  // namespace msa::scan
