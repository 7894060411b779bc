#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <queue>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace msa::tok {

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  unsigned bits = 4;
  while (cap < n * 2) {
    cap <<= 1;
    ++bits;
  }
  entries_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

bool MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > entries_.size()) {
    std::vector<Entry> old;
    old.swap(entries_);
    reserve(std::max<size_t>(size_ + 1, old.size()));
    for (const Entry& e : old)
      if (e.key != kEmpty) insert(static_cast<int32_t>(e.key >> 32), static_cast<int32_t>(e.key & 0xFFFFFFFFu),
                                  e.rank, e.merged);
  }
  uint64_t key = pack(left, right);
  size_t i = slot(key);
  for (;;) {
    Entry& e = entries_[i];
    if (e.key == key) {  // a repeated merge: the later line wins (HF collects the list into a HashMap)
      e.rank = rank;
      e.merged = merged;
      return false;
    }
    if (e.key == kEmpty) {
      e.key = key;
      e.rank = rank;
      e.merged = merged;
      ++size_;
      return true;
    }
    i = (i + 1) & mask_;
  }
}

namespace {

std::atomic<uint64_t> g_next_instance{1};

// Per-thread direct-mapped cache: piece bytes -> ids. Arenas are dropped wholesale when full.
struct PieceCache {
  static constexpr size_t kSlots = size_t{1} << 16;
  static constexpr size_t kMaxKeyBytes = size_t{2} << 20;  // ~2-8 MB per thread in all
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0;
    uint32_t key_len = 0;
    uint32_t val_off = 0;
    uint32_t val_len = 0;
  };
  uint64_t owner = 0;
  std::vector<Slot> slots;
  std::string keys;
  std::vector<int32_t> vals;

  void reset(uint64_t new_owner) {
    owner = new_owner;
    slots.assign(kSlots, Slot{});
    keys.clear();
    vals.clear();
  }
};

PieceCache& thread_cache(uint64_t owner) {
  thread_local PieceCache cache;
  if (cache.owner != owner) cache.reset(owner);
  return cache;
}

struct Sym {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t alive;
};

struct Cand {
  int32_t rank;
  int32_t pos;
  int32_t merged = -1;
  bool operator<(const Cand& o) const {  // std::priority_queue is a max-heap: invert
    if (rank != o.rank) return rank > o.rank;
    return pos > o.pos;
  }
};

}  // namespace

BpeModel::BpeModel() {
  for (int i = 0; i < 256; ++i) byte_id[i] = -1;
  instance_id = g_next_instance.fetch_add(1);
}

void BpeModel::merge_word(const uint8_t* p, size_t n, std::vector<int32_t>* out) const {
  // Initial symbols: one per byte (bytes without a token are dropped, or become unk).
  thread_local std::vector<int32_t> ids;
  ids.clear();
  for (size_t i = 0; i < n; ++i) {
    int32_t id = byte_id[p[i]];
    if (id < 0) id = unk_id;
    if (id >= 0) ids.push_back(id);
  }
  size_t m = ids.size();
  if (m <= 1) {
    out->insert(out->end(), ids.begin(), ids.end());
    return;
  }
  if (m <= 48) {
    // Direct scan: find the lowest-rank (then leftmost) pair, merge it, repeat.
    for (;;) {
      int32_t best_rank = INT32_MAX, best_merged = -1;
      size_t best = 0;
      for (size_t i = 0; i + 1 < m; ++i) {
        int32_t merged = -1;
        int32_t r = merges.find(ids[i], ids[i + 1], &merged);
        if (r >= 0 && r < best_rank) {
          best_rank = r;
          best_merged = merged;
          best = i;
        }
      }
      if (best_merged < 0) break;
      ids[best] = best_merged;
      std::memmove(&ids[best + 1], &ids[best + 2], (m - best - 2) * sizeof(int32_t));
      --m;
      if (m == 1) break;
    }
    out->insert(out->end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(m));
    return;
  }
  // Long words: linked list + priority queue (as HF's Word::merge_all).
  std::vector<Sym> sym(m);
  for (size_t i = 0; i < m; ++i)
    sym[i] = {ids[i], static_cast<int32_t>(i) - 1, i + 1 < m ? static_cast<int32_t>(i + 1) : -1, 1};
  std::vector<Cand> heap_store;
  heap_store.reserve(m);
  std::priority_queue<Cand> q(std::less<Cand>(), std::move(heap_store));
  for (size_t i = 0; i + 1 < m; ++i) {
    int32_t merged = -1;
    int32_t r = merges.find(sym[i].id, sym[i + 1].id, &merged);
    if (r >= 0) q.push({r, static_cast<int32_t>(i), merged});
  }
  while (!q.empty()) {
    Cand c = q.top();
    q.pop();
    Sym& s = sym[c.pos];
    if (!s.alive || s.next < 0) continue;
    Sym& r = sym[s.next];
    int32_t merged = -1;
    int32_t rank = merges.find(s.id, r.id, &merged);
    if (rank != c.rank || merged != c.merged) continue;  // stale entry
    s.id = merged;
    r.alive = 0;
    s.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.pos;
    if (s.prev >= 0) {
      int32_t rr = merges.find(sym[s.prev].id, s.id, &merged);
      if (rr >= 0) q.push({rr, s.prev, merged});
    }
    if (s.next >= 0) {
      int32_t rr = merges.find(s.id, sym[s.next].id, &merged);
      if (rr >= 0) q.push({rr, c.pos, merged});
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

void BpeModel::encode_piece(const uint8_t* p, size_t n, std::vector<int32_t>* out) const {
  if (n == 1) {
    int32_t id = byte_id[p[0]];
    if (id < 0) id = unk_id;
    if (id >= 0) out->push_back(id);
    return;
  }
  if (n > kMaxCachedPiece) {
    merge_word(p, n, out);
    return;
  }
  PieceCache& c = thread_cache(instance_id);
  uint64_t h = XXH3_64bits(p, n) | 1;  // 0 marks an empty slot
  PieceCache::Slot& s = c.slots[h & (PieceCache::kSlots - 1)];
  if (s.hash == h && s.key_len == n && std::memcmp(c.keys.data() + s.key_off, p, n) == 0) {
    out->insert(out->end(), c.vals.begin() + s.val_off, c.vals.begin() + s.val_off + s.val_len);
    return;
  }
  size_t before = out->size();
  merge_word(p, n, out);
  if (c.keys.size() + n > PieceCache::kMaxKeyBytes) c.reset(instance_id);
  PieceCache::Slot& t = c.slots[h & (PieceCache::kSlots - 1)];
  t.hash = h;
  t.key_off = static_cast<uint32_t>(c.keys.size());
  t.key_len = static_cast<uint32_t>(n);
  t.val_off = static_cast<uint32_t>(c.vals.size());
  t.val_len = static_cast<uint32_t>(out->size() - before);
  c.keys.append(reinterpret_cast<const char*>(p), n);
  c.vals.insert(c.vals.end(), out->begin() + static_cast<std::ptrdiff_t>(before), out->end());
}

}  // namespace msa::tok
