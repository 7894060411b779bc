// Non-owning typed views over memory (weights in a mapped file, activations in a buffer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace msa {

struct TensorView {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  std::vector<int64_t> shape;

  bool empty() const { return data == nullptr; }
  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[static_cast<size_t>(i)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
  // Row r of a 2-D view, as raw bytes.
  const uint8_t* row_bytes(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * static_cast<size_t>(shape.back()) * dtype_size(dtype);
  }
};

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace msa
