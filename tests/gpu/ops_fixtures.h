// Shared by the forward-op GPU tests (test_ops_forward.cpp and test_backend_cuda.cpp on the device, test_ops_emu.cpp
// under the CPU emulation): host weights of any float dtype, and the per-query own-row windows and packed segments
// of an attention case.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace ops_fixtures {

inline int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// A weight of any float dtype in host memory: its bytes (for the CPU view and the device copy).
struct HostWeight {
  msa::DType dtype = msa::DType::kF32;
  std::vector<uint8_t> bytes;
  std::vector<int64_t> shape;
  msa::TensorView view() const {
    msa::TensorView v;
    v.dtype = dtype;
    v.data = bytes.data();
    v.shape = shape;
    return v;
  }
};

// numel(shape) values (drawn by the caller) stored as dt: f32 as is, bf16 / f16 rounded to nearest even.
inline HostWeight host_weight(msa::DType dt, std::vector<int64_t> shape, const std::vector<float>& values) {
  HostWeight w;
  w.dtype = dt;
  w.shape = std::move(shape);
  w.bytes.resize(values.size() * msa::dtype_size(dt));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dt == msa::DType::kF32) {
      std::memcpy(&w.bytes[4 * i], &values[i], 4);
    } else {
      const uint16_t h = dt == msa::DType::kBF16 ? msa::f32_to_bf16(values[i]) : msa::f32_to_f16(values[i]);
      std::memcpy(&w.bytes[2 * i], &h, 2);
    }
  }
  return w;
}

// own_begin / own_end per query row, q_seg per query row, kv_seg per own row (at least one entry).
struct AttentionMasks {
  std::vector<int64_t> own_begin, own_end;
  std::vector<int32_t> q_seg, kv_seg;
};

// Query rows are the own rows n_cached..n_cached + n_q; the own rows are cut into segment runs of 1..40 rows.
// mode: 0 causal (window [0, row]); 1 full (windows unused); 2 segments, with every even query's window starting
// at its segment's first row; 3 random windows in [-5, n_own + 5]; 4 empty windows (begin == end).
// rand_int(lo, hi) draws an integer in [lo, hi], called in a fixed order.
template <class RandInt>
AttentionMasks make_attention_masks(int64_t n_q, int64_t n_cached, int mode, RandInt rand_int) {
  const int64_t n_own = n_cached + n_q;
  AttentionMasks m;
  m.own_begin.resize(static_cast<size_t>(n_q));
  m.own_end.resize(static_cast<size_t>(n_q));
  m.q_seg.resize(static_cast<size_t>(n_q));
  m.kv_seg.resize(static_cast<size_t>(std::max<int64_t>(n_own, 1)));
  int32_t seg = 0;
  int64_t left = rand_int(1, 40);
  for (int64_t r = 0; r < n_own; ++r) {
    if (left-- == 0) {
      ++seg;
      left = rand_int(1, 40) - 1;
    }
    m.kv_seg[static_cast<size_t>(r)] = seg;
  }
  for (size_t i = 0; i < static_cast<size_t>(n_q); ++i) {
    const int64_t row = n_cached + static_cast<int64_t>(i);
    m.q_seg[i] = m.kv_seg[static_cast<size_t>(row)];
    m.own_begin[i] = 0;
    m.own_end[i] = row + 1;
    if (mode == 2 && i % 2 == 0) {  // from the segment's first row (others: only the segment filter restricts)
      int64_t b = row;
      while (b > 0 && m.kv_seg[static_cast<size_t>(b - 1)] == m.q_seg[i]) --b;
      m.own_begin[i] = b;
    }
    if (mode == 3) {
      m.own_begin[i] = rand_int(-5, n_own + 5);
      m.own_end[i] = rand_int(-5, n_own + 5);
    }
    if (mode == 4) m.own_end[i] = m.own_begin[i] = rand_int(0, n_own);
  }
  return m;
}

}  // namespace ops_fixtures
