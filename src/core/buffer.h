// AlignedBuffer: an owning, 64-byte aligned, zero-initialised byte buffer (RAII, move-only).
// AlignedVec<T>: a typed vector on top of it for activations and scratch space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace msa {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { resize(bytes); }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }

  // Reallocates (contents are not preserved) and zero-fills. Throws std::bad_alloc on failure; the C API
  // boundary converts it to MSA_ERR_OUT_OF_MEMORY.
  void resize(size_t bytes) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (bytes == 0) return;
    size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, rounded);
    data_ = static_cast<uint8_t*>(p);
    size_ = bytes;
  }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

template <typename T>
class AlignedVec {
 public:
  AlignedVec() = default;
  explicit AlignedVec(size_t n) { resize(n); }
  void resize(size_t n) {
    if (n > cap_) {
      buf_.resize(n * sizeof(T));
      cap_ = n;
    } else if (n) {
      std::memset(buf_.data(), 0, n * sizeof(T));
    }
    n_ = n;
  }
  T* data() { return reinterpret_cast<T*>(buf_.data()); }
  const T* data() const { return reinterpret_cast<const T*>(buf_.data()); }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }

 private:
  AlignedBuffer buf_;
  size_t n_ = 0;
  size_t cap_ = 0;
};

}  // namespace msa
