// Flat open-addressing map from a byte string to an id, where the strings live elsewhere (the map keeps
// only hash + id and asks `key_of(id)` to compare). Much faster to build and probe than
// std::unordered_map<std::string_view, int> for the 150k-entry vocabulary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace msa::tok {

template <typename KeyOf>
class StringIdMap {
 public:
  explicit StringIdMap(KeyOf key_of = KeyOf()) : key_of_(key_of) {}

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    size_ = 0;
  }
  // Inserts (key_of(id) -> id); when the key is present, `replace` decides. Returns false if it was present.
  bool insert(int32_t id, bool replace = false) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    std::string_view k = key_of_(id);
    uint64_t h = hash(k);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s.hash = h;
        s.id = id;
        ++size_;
        return true;
      }
      if (s.hash == h && key_of_(s.id) == k) {
        if (replace) s.id = id;
        return false;
      }
    }
  }
  int32_t find(std::string_view k) const {
    if (slots_.empty()) return -1;
    uint64_t h = hash(k);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && key_of_(s.id) == k) return s.id;
    }
  }
  size_t size() const { return size_; }
  void set_key_of(KeyOf k) { key_of_ = k; }

 private:
  struct Slot {
    uint64_t hash = 0;
    int32_t id = -1;
  };
  static uint64_t hash(std::string_view k) { return XXH3_64bits(k.data(), k.size()); }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    reserve(old.size() < 8 ? 16 : old.size());
    for (const Slot& s : old)
      if (s.id >= 0) {
        for (size_t i = s.hash & mask_;; i = (i + 1) & mask_)
          if (slots_[i].id < 0) {
            slots_[i] = s;
            ++size_;
            break;
          }
      }
  }
  KeyOf key_of_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace msa::tok
