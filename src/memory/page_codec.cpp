// Page codec (page_codec.h).
#include "memory/page_codec.h"

#include <cmath>
#include <cstring>

#include "core/dtype.h"

namespace msa {

const char* page_dtype_name(PageDType t) {
  switch (t) {
    case PageDType::kF32: return "f32";
    case PageDType::kBF16: return "bf16";
    case PageDType::kInt8: return "int8";
  }
  return "?";
}

bool parse_page_dtype(const char* name, PageDType* out) {
  if (name == nullptr) return false;
  if (std::strcmp(name, "f32") == 0) {
    *out = PageDType::kF32;
  } else if (std::strcmp(name, "bf16") == 0) {
    *out = PageDType::kBF16;
  } else if (std::strcmp(name, "int8") == 0) {
    *out = PageDType::kInt8;
  } else {
    return false;
  }
  return true;
}

bool page_dtype_valid(uint32_t v) { return v <= static_cast<uint32_t>(PageDType::kInt8); }

size_t page_elem_bytes(PageDType t) {
  switch (t) {
    case PageDType::kF32: return 4;
    case PageDType::kBF16: return 2;
    case PageDType::kInt8: return 1;
  }
  return 4;
}

void encode_rows(PageDType t, const float* src, int64_t n_rows, int64_t n_heads, int64_t head_dim, uint8_t* dst,
                 float* scales) {
  const int64_t width = n_heads * head_dim;
  const size_t n = static_cast<size_t>(n_rows * width);
  if (n == 0) return;
  if (t == PageDType::kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  if (t == PageDType::kBF16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = f32_to_bf16(src[i]);
      std::memcpy(dst + 2 * i, &h, 2);
    }
    return;
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* x = src + r * width + h * head_dim;
      int8_t* q = reinterpret_cast<int8_t*>(dst) + r * width + h * head_dim;
      float m = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) {
        const float a = std::fabs(x[d]);
        if (a > m) m = a;  // NaN never wins a comparison: it is not counted
      }
      const float scale = std::isfinite(m) ? m / 127.0f : 0.0f;
      scales[r * n_heads + h] = scale;
      for (int64_t d = 0; d < head_dim; ++d) {
        float v = scale > 0.0f && std::isfinite(x[d]) ? std::round(x[d] / scale) : 0.0f;
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        q[d] = static_cast<int8_t>(v);
      }
    }
  }
}

void decode_rows(PageDType t, const uint8_t* src, const float* scales, int64_t n_rows, int64_t n_heads,
                 int64_t head_dim, float* dst) {
  const int64_t width = n_heads * head_dim;
  const size_t n = static_cast<size_t>(n_rows * width);
  if (n == 0) return;
  if (t == PageDType::kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  if (t == PageDType::kBF16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = bf16_to_f32(h);
    }
    return;
  }
  const int8_t* q = reinterpret_cast<const int8_t*>(src);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t h = 0; h < n_heads; ++h) {
      const float s = scales[r * n_heads + h];
      const int64_t o = r * width + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) dst[o + d] = static_cast<float>(q[o + d]) * s;
    }
  }
}

void byte_shuffle(const uint8_t* src, size_t n_bytes, size_t elem, uint8_t* dst) {
  if (n_bytes == 0) return;
  if (elem <= 1) {
    std::memcpy(dst, src, n_bytes);
    return;
  }
  const size_t n = n_bytes / elem;
  for (size_t b = 0; b < elem; ++b) {
    uint8_t* plane = dst + b * n;
    for (size_t i = 0; i < n; ++i) plane[i] = src[i * elem + b];
  }
  std::memcpy(dst + n * elem, src + n * elem, n_bytes - n * elem);
}

void byte_unshuffle(const uint8_t* src, size_t n_bytes, size_t elem, uint8_t* dst) {
  if (n_bytes == 0) return;
  if (elem <= 1) {
    std::memcpy(dst, src, n_bytes);
    return;
  }
  const size_t n = n_bytes / elem;
  byte_unshuffle_range(src, n_bytes, elem, 0, n, dst);
  std::memcpy(dst + n * elem, src + n * elem, n_bytes - n * elem);
}

void byte_unshuffle_range(const uint8_t* src, size_t n_bytes, size_t elem, size_t first, size_t count, uint8_t* dst) {
  if (count == 0) return;
  if (elem <= 1) {
    std::memcpy(dst, src + first, count);
    return;
  }
  const size_t n = n_bytes / elem;
  for (size_t b = 0; b < elem; ++b) {
    const uint8_t* plane = src + b * n + first;
    for (size_t i = 0; i < count; ++i) dst[i * elem + b] = plane[i];
  }
}

}  // namespace msa
