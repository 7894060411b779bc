#include "backend/backend.h"

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace msa {

void compute_rope_table(const int32_t* positions, int64_t n_tokens, int64_t head_dim, double theta, float* cos,
                        float* sin) {
  const int64_t half = head_dim / 2;
  // transformers (_compute_default_rope_parameters): 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all f32.
  std::vector<float> inv_freq(static_cast<size_t>(half));
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float p = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(expo)));
    inv_freq[static_cast<size_t>(i)] = 1.0f / p;
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = inv_freq[static_cast<size_t>(i)] * pos;  // one f32 product, as the K=1 matmul
      cos[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

Backend* default_backend() {
  static CpuBackend backend;
  return &backend;
}

}  // namespace msa
