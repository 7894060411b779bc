// Private to the bank file code (bank_format_*.cpp; bank_format.h is the interface): the on-disk records and
// constants (docs/FORMAT.md), the checksummed section writer and the file-frame validation that the manifest and
// segment readers and writers share.
#pragma once

#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "memory/bank_format.h"

namespace msa::bankfmt {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the bank format is little-endian; port the reader first");

namespace detail {

constexpr uint64_t kAlign = 64;
constexpr uint32_t kEndianTag = 0x01020304u;
constexpr char kManifestMagic[8] = {'M', 'S', 'A', 'B', 'N', 'K', 'M', '\n'};
constexpr char kSegmentMagic[8] = {'M', 'S', 'A', 'B', 'N', 'K', 'S', '\n'};
constexpr uint32_t kMaxSections = 4096;

// Section kinds.
enum : uint32_t {
  kSegInfo = 1, kDocs = 2, kTexts = 3, kRKeys = 4, kRScales = 5, kCData = 6, kCFrames = 7,
  kFingerprint = 16, kTemplate = 17, kSegments = 18, kTombstones = 19,
};

// The name of a section kind, for messages.
const char* section_name(uint32_t kind);

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t endian;
  uint32_t n_sections;
  uint32_t flags;
  uint64_t id;
  uint64_t file_size;
  uint64_t reserved[2];
  uint64_t checksum;
};
static_assert(sizeof(FileHeader) == 64, "header layout");

struct SectionEntry {
  uint32_t kind;
  uint32_t index;
  uint64_t offset;
  uint64_t length;
  uint64_t xxh64;
  uint64_t aux;
};
static_assert(sizeof(SectionEntry) == 40, "section entry layout");

struct SegInfoRec {
  uint32_t dtype;
  uint32_t n_layers;
  uint64_t n_kv_heads;
  uint64_t head_dim;
  uint64_t pooling;
  uint64_t n_docs;
  uint64_t n_chunks;
  uint64_t reserved[2];
};
static_assert(sizeof(SegInfoRec) == 64, "segment info layout");

struct DocRec {
  uint64_t id;
  uint64_t n_tokens;
  uint64_t n_chunks;
  uint64_t text_offset;
  uint64_t text_len;
  uint64_t reserved;
};
static_assert(sizeof(DocRec) == 48, "document record layout");

struct FrameRec {
  uint64_t offset;  // relative to the content data section
  uint64_t length;
  uint64_t xxh64;
  uint32_t codec;
  uint32_t reserved;
};
static_assert(sizeof(FrameRec) == 32, "frame record layout");

struct SegmentRec {
  char name[64];
  uint64_t file_size;
  uint64_t header_xxh64;
  uint64_t n_docs;
  uint64_t n_chunks;
};
static_assert(sizeof(SegmentRec) == 96, "segment record layout");

constexpr uint32_t kCodecRaw = 0;  // stored as is (zstd would not make it smaller)
constexpr uint32_t kCodecZstd = 1;
constexpr uint32_t kCodecShuffled = 2;

inline uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// xxh64 of the header up to its checksum field, then of the section table.
uint64_t header_checksum(const uint8_t* header, const uint8_t* table, size_t table_bytes);

// strerror(errno).
std::string errno_text();

// ------------------------------------------------------------------------------------------- file writer

// Sequential writer of one file under a temporary name (core/atomic_file.h): finish() renames it into place,
// anything else (an error, an early return) removes the temporary.
class FileWriter {
 public:
  Status open(const std::string& path) { return file_.open(path); }
  Status write(const void* p, size_t n) { return file_.write(p, n); }
  Status pad_to(uint64_t target) {
    static const uint8_t zeros[kAlign] = {};
    while (file_.size() < target) {
      MSA_RETURN_IF_ERROR(write(zeros, std::min<uint64_t>(kAlign, target - file_.size())));
    }
    return Status::Ok();
  }
  Status pwrite_at(uint64_t at, const void* p, size_t n) { return file_.write_at(at, p, n); }
  // fsync, rename over the destination, fsync of the directory.
  Status finish() { return file_.commit(); }
  uint64_t offset() const { return file_.size(); }

 private:
  AtomicFile file_;
};

// Writes sections one after the other with their checksums; the header and table go in last.
class SectionedWriter {
 public:
  SectionedWriter(FileWriter* w, uint32_t n_sections) : w_(w), table_(n_sections) {}
  Status begin() {
    const uint64_t data_start = align_up(sizeof(FileHeader) + table_.size() * sizeof(SectionEntry));
    return w_->pad_to(data_start);
  }
  Status open_section(uint32_t kind, uint32_t index) {
    MSA_RETURN_IF_ERROR(w_->pad_to(align_up(w_->offset())));
    SectionEntry& e = table_.at(cur_);
    std::memset(&e, 0, sizeof e);
    e.kind = kind;
    e.index = index;
    e.offset = w_->offset();
    st_ = XXH64_createState();
    XXH64_reset(st_, 0);
    return Status::Ok();
  }
  Status put(const void* p, size_t n) {
    if (n == 0) return Status::Ok();
    XXH64_update(st_, p, n);
    return w_->write(p, n);
  }
  uint64_t section_offset() const { return w_->offset() - table_[cur_].offset; }
  void close_section() {
    SectionEntry& e = table_[cur_];
    e.length = w_->offset() - e.offset;
    e.xxh64 = XXH64_digest(st_);
    XXH64_freeState(st_);
    st_ = nullptr;
    ++cur_;
  }
  Status section(uint32_t kind, uint32_t index, const void* p, size_t n) {
    MSA_RETURN_IF_ERROR(open_section(kind, index));
    MSA_RETURN_IF_ERROR(put(p, n));
    close_section();
    return Status::Ok();
  }
  // Header + table at offset 0. out_checksum: the header checksum.
  Status finish(const char (&magic)[8], uint64_t id, uint64_t* out_checksum, uint64_t* out_size) {
    FileHeader h;
    std::memset(&h, 0, sizeof h);
    std::memcpy(h.magic, magic, 8);
    h.version = kFormatVersion;
    h.endian = kEndianTag;
    h.n_sections = static_cast<uint32_t>(table_.size());
    h.id = id;
    h.file_size = w_->offset();
    h.checksum = header_checksum(reinterpret_cast<const uint8_t*>(&h),
                                 reinterpret_cast<const uint8_t*>(table_.data()), table_.size() * sizeof(SectionEntry));
    MSA_RETURN_IF_ERROR(w_->pwrite_at(0, &h, sizeof h));
    MSA_RETURN_IF_ERROR(w_->pwrite_at(sizeof h, table_.data(), table_.size() * sizeof(SectionEntry)));
    *out_checksum = h.checksum;
    *out_size = h.file_size;
    return w_->finish();
  }
  ~SectionedWriter() {
    if (st_) XXH64_freeState(st_);
  }

 private:
  FileWriter* w_;
  std::vector<SectionEntry> table_;
  size_t cur_ = 0;
  XXH64_state_t* st_ = nullptr;
};

// ------------------------------------------------------------------------------------------- file reader

// The validated frame of a file: header, table, layout and padding checked, the table's checksum verified.

struct ParsedFile {
  FileHeader h;
  std::vector<SectionEntry> table;
};

// Checks a file's frame (magic, section count, header checksum, byte order, version, reserved fields, size against
// the header, section layout and padding) and copies out its header and section table.
Status parse_file(const uint8_t* data, size_t size, const std::string& path, const char (&magic)[8],
                  ParsedFile* out);
// kCorrupt unless table entry i is section `kind` number `index`.
Status expect_section(const ParsedFile& f, size_t i, uint32_t kind, uint32_t index, const std::string& path);
// kCorrupt unless the section's bytes match its xxh64.
Status check_section(const uint8_t* data, const SectionEntry& e, const std::string& path);

inline bool all_zero(const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

inline bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

}  // namespace detail
}  // namespace msa::bankfmt
