// Page codec: f32 exact, bf16 within half an ulp of bf16, int8 within half a quantisation step per (row, head),
// decoding a pure function of the bytes, the byte shuffle an involution pair.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "memory/page_codec.h"

using msa::PageDType;

namespace {

std::vector<float> random_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("page codec: names and sizes", "[bank][codec]") {
  PageDType t;
  REQUIRE(msa::parse_page_dtype("int8", &t));
  CHECK(t == PageDType::kInt8);
  REQUIRE(msa::parse_page_dtype("bf16", &t));
  CHECK(t == PageDType::kBF16);
  REQUIRE(msa::parse_page_dtype("f32", &t));
  CHECK(t == PageDType::kF32);
  CHECK_FALSE(msa::parse_page_dtype("fp8", &t));
  CHECK(std::string(msa::page_dtype_name(PageDType::kBF16)) == "bf16");
  CHECK(msa::page_row_bytes(PageDType::kF32, 256) == 1024);
  CHECK(msa::page_row_bytes(PageDType::kBF16, 256) == 512);
  CHECK(msa::page_row_bytes(PageDType::kInt8, 256) == 256);
  CHECK(msa::page_row_scales(PageDType::kInt8, 8) == 8);
  CHECK(msa::page_row_scales(PageDType::kBF16, 8) == 0);
  CHECK_FALSE(msa::page_dtype_valid(3));
}

TEST_CASE("page codec: f32 is exact, bf16 and int8 within their rounding bounds", "[bank][codec]") {
  const int64_t rows = 7, heads = 3, hd = 16, width = heads * hd;
  std::vector<float> x = random_rows(rows * width, 5);
  x[3] = 0.0f;
  // One all-zero head: its int8 scale is 0 and it decodes to zeros.
  for (int64_t d = 0; d < hd; ++d) x[static_cast<size_t>(2 * width + hd + d)] = 0.0f;
  for (PageDType t : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    INFO(msa::page_dtype_name(t));
    std::vector<uint8_t> bytes(static_cast<size_t>(rows) * msa::page_row_bytes(t, width));
    std::vector<float> scales(static_cast<size_t>(rows * msa::page_row_scales(t, heads)));
    msa::encode_rows(t, x.data(), rows, heads, hd, bytes.data(), scales.data());
    std::vector<float> y(x.size()), y2(x.size());
    msa::decode_rows(t, bytes.data(), scales.data(), rows, heads, hd, y.data());
    msa::decode_rows(t, bytes.data(), scales.data(), rows, heads, hd, y2.data());
    CHECK(std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)) == 0);  // deterministic
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        float m = 0.0f;
        for (int64_t d = 0; d < hd; ++d) m = std::max(m, std::fabs(x[static_cast<size_t>(r * width + h * hd + d)]));
        for (int64_t d = 0; d < hd; ++d) {
          const size_t i = static_cast<size_t>(r * width + h * hd + d);
          const float err = std::fabs(y[i] - x[i]);
          if (t == PageDType::kF32) {
            REQUIRE(y[i] == x[i]);
          } else if (t == PageDType::kBF16) {
            REQUIRE(err <= std::fabs(x[i]) * (1.0f / 256.0f));
          } else {
            const float step = m / 127.0f;
            REQUIRE(err <= step * 0.5f * 1.0001f + 1e-30f);
            if (m == 0.0f) REQUIRE(y[i] == 0.0f);
          }
        }
      }
    }
  }
  // int8: the largest magnitude of each head maps to +-127 and decodes to within rounding of itself.
  std::vector<uint8_t> q(static_cast<size_t>(width));
  std::vector<float> s(static_cast<size_t>(heads));
  msa::encode_rows(PageDType::kInt8, x.data(), 1, heads, hd, q.data(), s.data());
  for (int64_t h = 0; h < heads; ++h) {
    int amax = 0;
    for (int64_t d = 0; d < hd; ++d) amax = std::max(amax, std::abs(static_cast<int>(static_cast<int8_t>(q[static_cast<size_t>(h * hd + d)]))));
    CHECK(amax == 127);
  }
}

TEST_CASE("page codec: byte shuffle round trip", "[bank][codec]") {
  std::vector<uint8_t> a(1003);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 37 + 11);
  for (size_t elem : {1u, 2u, 4u}) {
    std::vector<uint8_t> s(a.size()), b(a.size());
    msa::byte_shuffle(a.data(), a.size(), elem, s.data());
    if (elem == 2) {
      CHECK(s[0] == a[0]);
      CHECK(s[1] == a[2]);
      CHECK(s[a.size() / 2] == a[1]);  // the second byte plane starts after n = 501 first bytes
    }
    msa::byte_unshuffle(s.data(), s.size(), elem, b.data());
    CHECK(a == b);
  }
}
