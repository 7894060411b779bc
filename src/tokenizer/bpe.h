// Byte-level BPE model: merges keyed by the pair of ids, applied lowest rank first (leftmost on ties),
// exactly like Hugging Face `tokenizers` (models/bpe/word.rs). Short pieces use a direct scan, long ones
// a priority queue over a linked list (O(n log n)). Results of pieces are cached per thread (bounded,
// direct-mapped), so the model itself stays immutable and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace msa::tok {

// Open-addressing hash map (id_left, id_right) -> (rank, merged id). Built once, then read-only.
class MergeTable {
 public:
  void reserve(size_t n);
  // Returns false when the pair was already present; it then takes the new rank (the last line wins, as in HF).
  bool insert(int32_t left, int32_t right, int32_t rank, int32_t merged);
  // Rank of the merge of (left, right) or -1; *merged receives the merged id.
  inline int32_t find(int32_t left, int32_t right, int32_t* merged) const {
    uint64_t key = pack(left, right);
    size_t i = slot(key);
    for (;;) {
      const Entry& e = entries_[i];
      if (e.key == key) {
        *merged = e.merged;
        return e.rank;
      }
      if (e.key == kEmpty) return -1;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = -1;
    int32_t merged = -1;
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
  }
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Entry> entries_;
  size_t mask_ = 0;
  unsigned shift_ = 64;
  size_t size_ = 0;
};

class BpeModel {
 public:
  // Set up by the loader.
  int32_t byte_id[256];       // id of the single-byte token of each byte, -1 if the vocabulary lacks it
  int32_t unk_id = -1;        // pushed for a byte without a token when set (HF `unk_token`)
  MergeTable merges;
  uint64_t instance_id = 0;   // distinguishes models for the per-thread cache

  BpeModel();

  // Appends the ids of one pre-tokenized piece (raw bytes) to `out`.
  void encode_piece(const uint8_t* p, size_t n, std::vector<int32_t>* out) const;

  // The merge loop without the cache (exposed for tests).
  void merge_word(const uint8_t* p, size_t n, std::vector<int32_t>* out) const;

  // Pieces longer than this are not cached (they are rare and would evict many short ones).
  static constexpr size_t kMaxCachedPiece = 256;
};

}  // namespace msa::tok
