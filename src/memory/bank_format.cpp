// On-disk bank files (bank_format.h, docs/FORMAT.md).
#include "memory/bank_format.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/atomic_file.h"

namespace msa::bankfmt {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the bank format is little-endian; port the reader first");

namespace {

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

const char* section_name(uint32_t kind) {
  switch (kind) {
    case kSegInfo: return "segment info";
    case kDocs: return "document table";
    case kTexts: return "document texts";
    case kRKeys: return "routing keys";
    case kRScales: return "routing key scales";
    case kCData: return "content pages";
    case kCFrames: return "content frame table";
    case kFingerprint: return "fingerprint";
    case kTemplate: return "template-prefix KV";
    case kSegments: return "segment list";
    case kTombstones: return "tombstones";
  }
  return "unknown section";
}

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

uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

uint64_t header_checksum(const uint8_t* header, const uint8_t* table, size_t table_bytes) {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  XXH64_update(st, header, offsetof(FileHeader, checksum));
  XXH64_update(st, table, table_bytes);
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

std::string errno_text() { return std::strerror(errno); }

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

Status parse_file(const uint8_t* data, size_t size, const std::string& path, const char (&magic)[8],
                  ParsedFile* out) {
  if (size < sizeof(FileHeader)) {
    return Error(StatusCode::kTruncated, path, ": ", size, " bytes, shorter than the 64-byte header");
  }
  FileHeader h;
  std::memcpy(&h, data, sizeof h);
  if (std::memcmp(h.magic, magic, 8) != 0) {
    return Error(StatusCode::kCorrupt, path, ": header: bad magic (not a libmsa bank file of this kind, or corrupt)");
  }
  if (h.n_sections == 0 || h.n_sections > kMaxSections) {
    return Error(StatusCode::kCorrupt, path, ": header: impossible section count ", h.n_sections);
  }
  const size_t table_bytes = static_cast<size_t>(h.n_sections) * sizeof(SectionEntry);
  if (size < sizeof(FileHeader) + table_bytes) {
    return Error(StatusCode::kTruncated, path, ": ", size, " bytes, shorter than its section table");
  }
  const uint64_t sum = header_checksum(data, data + sizeof(FileHeader), table_bytes);
  if (sum != h.checksum) {
    return Error(StatusCode::kCorrupt, path, ": header: checksum mismatch (header or section table corrupt)");
  }
  if (h.endian != kEndianTag) {
    return Error(StatusCode::kUnsupported, path, ": written on a big-endian machine; this build reads little-endian");
  }
  if (h.version != kFormatVersion) {
    return Error(StatusCode::kUnsupported, path, ": bank format version ", h.version, "; this library reads version ",
                 kFormatVersion);
  }
  if (h.flags != 0 || h.reserved[0] != 0 || h.reserved[1] != 0) {
    return Error(StatusCode::kCorrupt, path, ": header: reserved fields are not zero");
  }
  if (size < h.file_size) {
    return Error(StatusCode::kTruncated, path, ": ", size, " bytes, the header says ", h.file_size);
  }
  if (size > h.file_size) {
    return Error(StatusCode::kCorrupt, path, ": ", size - h.file_size, " bytes past the end the header gives");
  }
  out->h = h;
  out->table.resize(h.n_sections);
  std::memcpy(out->table.data(), data + sizeof(FileHeader), table_bytes);
  // Layout: sections in table order, each at the next 64-byte boundary, zero padding, the file ending exactly
  // at the end of the last one.
  uint64_t end = sizeof(FileHeader) + table_bytes;
  for (size_t i = 0; i < out->table.size(); ++i) {
    const SectionEntry& e = out->table[i];
    const uint64_t want = align_up(end);
    if (e.offset != want || e.length > h.file_size || e.offset > h.file_size - e.length) {
      return Error(StatusCode::kCorrupt, path, ": section ", i, " (", section_name(e.kind),
                   "): offset/length outside the file layout");
    }
    for (uint64_t p = end; p < e.offset; ++p) {
      if (data[p] != 0) return Error(StatusCode::kCorrupt, path, ": non-zero padding byte at offset ", p);
    }
    if (e.aux != 0) return Error(StatusCode::kCorrupt, path, ": section ", i, ": reserved field not zero");
    end = e.offset + e.length;
  }
  if (end != h.file_size) {
    return Error(StatusCode::kCorrupt, path, ": ", h.file_size - end, " bytes after the last section");
  }
  return Status::Ok();
}

Status expect_section(const ParsedFile& f, size_t i, uint32_t kind, uint32_t index, const std::string& path) {
  const SectionEntry& e = f.table[i];
  if (e.kind != kind || e.index != index) {
    return Error(StatusCode::kCorrupt, path, ": section ", i, " is kind ", e.kind, "/", e.index, ", expected ",
                 section_name(kind), " ", index);
  }
  return Status::Ok();
}

Status check_section(const uint8_t* data, const SectionEntry& e, const std::string& path) {
  if (XXH64(data + e.offset, e.length, 0) != e.xxh64) {
    return Error(StatusCode::kCorrupt, path, ": ", section_name(e.kind), " (router slot ", e.index,
                 "): checksum mismatch");
  }
  return Status::Ok();
}

bool all_zero(const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

bool valid_segment_name(const char* name, size_t cap) {
  size_t n = 0;
  while (n < cap && name[n] != '\0') ++n;
  if (n == 0 || n == cap) return false;
  for (size_t i = 0; i < n; ++i) {
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  if (name[0] == '.') return false;
  for (size_t i = n; i < cap; ++i) {
    if (name[i] != '\0') return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- fingerprint

std::vector<std::pair<std::string, std::string>> fingerprint_fields(const Fingerprint& f) {
  auto hex = [](uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return std::string(b);
  };
  auto dbl = [](double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  std::string aux(f.aux_loss_method, strnlen(f.aux_loss_method, sizeof f.aux_loss_method));
  return {
      {"hidden_size", std::to_string(f.hidden_size)},
      {"num_hidden_layers", std::to_string(f.num_hidden_layers)},
      {"num_attention_heads", std::to_string(f.num_attention_heads)},
      {"num_key_value_heads", std::to_string(f.num_key_value_heads)},
      {"head_dim", std::to_string(f.head_dim)},
      {"vocab_size", std::to_string(f.vocab_size)},
      {"pooling_kernel_size", std::to_string(f.pooling_kernel_size)},
      {"decouple_router", std::to_string(f.decouple_router)},
      {"n_router_layers", std::to_string(f.n_router_layers)},
      {"router_layers_xxh64", hex(f.router_layers_xxh64)},
      {"rope_theta", dbl(f.rope_theta)},
      {"rms_norm_eps", dbl(f.rms_norm_eps)},
      {"aux_loss_method", aux},
      {"tokenizer_xxh64", hex(f.tokenizer_xxh64)},
      {"weights_digest", hex(f.weights_digest)},
  };
}

Status compare_fingerprint(const Fingerprint& bank, const Fingerprint& model, const std::string& what) {
  const auto b = fingerprint_fields(bank);
  const auto m = fingerprint_fields(model);
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i].second != m[i].second) {
      return Error(StatusCode::kInvalidArgument, what, ": the bank was built for another model: ", b[i].first, " is ",
                   b[i].second, " in the bank and ", m[i].second, " in the model");
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------- writing

std::string segment_file_name(uint64_t segment_id) {
  char b[48];
  std::snprintf(b, sizeof b, "seg-%06llu.msaseg", static_cast<unsigned long long>(segment_id));
  return b;
}

Status write_segment(const std::string& path, uint64_t segment_id, const SegmentSource& src, SegmentRef* out,
                     WriteStats* stats) {
  const int L = src.n_router_layers;
  const size_t n_docs = src.docs.size();
  const int64_t width = src.n_kv_heads * src.head_dim;
  const size_t row_bytes = page_row_bytes(src.dtype, width);
  const size_t scale_bytes = static_cast<size_t>(page_row_scales(src.dtype, src.n_kv_heads)) * sizeof(float);
  uint64_t n_chunks = 0;
  for (const SegmentDocIn& d : src.docs) n_chunks += d.n_chunks;

  FileWriter fw;
  MSA_RETURN_IF_ERROR(fw.open(path));
  SectionedWriter w(&fw, static_cast<uint32_t>(3 + 4 * L));
  MSA_RETURN_IF_ERROR(w.begin());

  SegInfoRec info;
  std::memset(&info, 0, sizeof info);
  info.dtype = static_cast<uint32_t>(src.dtype);
  info.n_layers = static_cast<uint32_t>(L);
  info.n_kv_heads = static_cast<uint64_t>(src.n_kv_heads);
  info.head_dim = static_cast<uint64_t>(src.head_dim);
  info.pooling = static_cast<uint64_t>(src.pooling);
  info.n_docs = n_docs;
  info.n_chunks = n_chunks;
  MSA_RETURN_IF_ERROR(w.section(kSegInfo, 0, &info, sizeof info));

  std::vector<DocRec> recs(n_docs);
  uint64_t text_off = 0;
  for (size_t i = 0; i < n_docs; ++i) {
    const SegmentDocIn& d = src.docs[i];
    std::memset(&recs[i], 0, sizeof recs[i]);
    recs[i].id = d.id;
    recs[i].n_tokens = d.n_tokens;
    recs[i].n_chunks = d.n_chunks;
    recs[i].text_offset = text_off;
    recs[i].text_len = d.text.size();
    text_off += d.text.size();
  }
  MSA_RETURN_IF_ERROR(w.section(kDocs, 0, recs.data(), recs.size() * sizeof(DocRec)));
  MSA_RETURN_IF_ERROR(w.open_section(kTexts, 0));
  for (const SegmentDocIn& d : src.docs) MSA_RETURN_IF_ERROR(w.put(d.text.data(), d.text.size()));
  w.close_section();

  WriteStats ws;
  std::vector<uint8_t> rows, comp, comp2, shuf;
  std::vector<float> scales;
  for (int l = 0; l < L; ++l) {
    rows.clear();
    scales.clear();
    MSA_RETURN_IF_ERROR(src.routing(l, &rows, &scales));
    if (rows.size() != n_chunks * row_bytes || scales.size() * sizeof(float) != n_chunks * scale_bytes) {
      return Error(StatusCode::kInternal, path, ": routing rows of router slot ", l, " have the wrong size");
    }
    MSA_RETURN_IF_ERROR(w.section(kRKeys, static_cast<uint32_t>(l), rows.data(), rows.size()));
    MSA_RETURN_IF_ERROR(w.section(kRScales, static_cast<uint32_t>(l), scales.data(), scales.size() * sizeof(float)));

    std::vector<FrameRec> frames(n_docs);
    MSA_RETURN_IF_ERROR(w.open_section(kCData, static_cast<uint32_t>(l)));
    for (size_t i = 0; i < n_docs; ++i) {
      FrameIn f;
      MSA_RETURN_IF_ERROR(src.content(l, i, &f));
      const uint8_t* bytes;
      uint64_t len;
      uint32_t codec;
      if (f.compressed != nullptr) {
        bytes = f.compressed;
        len = f.compressed_len;
        codec = f.codec;
        ws.stored_content_bytes += len;
      } else {
        const size_t want = 2 * src.docs[i].n_chunks * (row_bytes + scale_bytes);
        if (f.raw.size() != want) {
          return Error(StatusCode::kInternal, path, ": content frame of document ", src.docs[i].id, " has ",
                       f.raw.size(), " bytes, expected ", want);
        }
        const size_t bound = ZSTD_compressBound(f.raw.size());
        comp.resize(bound);
        const size_t n1 = ZSTD_compress(comp.data(), bound, f.raw.data(), f.raw.size(), src.zstd_level);
        if (ZSTD_isError(n1)) return Error(StatusCode::kInternal, path, ": zstd: ", ZSTD_getErrorName(n1));
        size_t n2 = std::numeric_limits<size_t>::max();
        const size_t elem = page_elem_bytes(src.dtype);
        if (elem > 1) {
          shuf.resize(f.raw.size());
          byte_shuffle(f.raw.data(), f.raw.size(), elem, shuf.data());
          comp2.resize(bound);
          n2 = ZSTD_compress(comp2.data(), bound, shuf.data(), shuf.size(), src.zstd_level);
          if (ZSTD_isError(n2)) return Error(StatusCode::kInternal, path, ": zstd: ", ZSTD_getErrorName(n2));
          ws.shuffled_zstd_bytes += n2;
        } else {
          ws.shuffled_zstd_bytes += n1;
        }
        ws.plain_zstd_bytes += n1;
        ws.raw_content_bytes += f.raw.size();
        if (std::min(n1, n2) >= f.raw.size()) {
          bytes = f.raw.data();
          len = f.raw.size();
          codec = kCodecRaw;
        } else if (n2 < n1) {
          bytes = comp2.data();
          len = n2;
          codec = kCodecZstd | kCodecShuffled;
          ++ws.frames_shuffled;
        } else {
          bytes = comp.data();
          len = n1;
          codec = kCodecZstd;
        }
        ws.stored_content_bytes += len;
      }
      ++ws.frames;
      FrameRec& r = frames[i];
      std::memset(&r, 0, sizeof r);
      r.offset = w.section_offset();
      r.length = len;
      r.xxh64 = XXH64(bytes, len, 0);
      r.codec = codec;
      MSA_RETURN_IF_ERROR(w.put(bytes, len));
    }
    w.close_section();
    MSA_RETURN_IF_ERROR(w.section(kCFrames, static_cast<uint32_t>(l), frames.data(), frames.size() * sizeof(FrameRec)));
  }
  uint64_t checksum = 0, size = 0;
  MSA_RETURN_IF_ERROR(w.finish(kSegmentMagic, segment_id, &checksum, &size));
  out->file_size = size;
  out->header_xxh64 = checksum;
  out->n_docs = n_docs;
  out->n_chunks = n_chunks;
  if (stats) {
    stats->raw_content_bytes += ws.raw_content_bytes;
    stats->plain_zstd_bytes += ws.plain_zstd_bytes;
    stats->shuffled_zstd_bytes += ws.shuffled_zstd_bytes;
    stats->stored_content_bytes += ws.stored_content_bytes;
    stats->frames_shuffled += ws.frames_shuffled;
    stats->frames += ws.frames;
  }
  return Status::Ok();
}

Status make_dirs(const std::string& dir) {
  if (dir.empty()) return Error(StatusCode::kInvalidArgument, "empty bank path");
  std::string cur;
  size_t i = 0;
  while (i <= dir.size()) {
    const size_t j = dir.find('/', i);
    cur = dir.substr(0, j == std::string::npos ? dir.size() : j);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error(StatusCode::kIo, cur, ": cannot create directory: ", errno_text());
    }
    if (j == std::string::npos) break;
    i = j + 1;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error(StatusCode::kIo, dir, ": not a directory");
  }
  return Status::Ok();
}

Status write_manifest(const std::string& dir, const Manifest& m) {
  const std::string path = dir + "/" + kManifestName;
  FileWriter fw;
  MSA_RETURN_IF_ERROR(fw.open(path));
  SectionedWriter w(&fw, 4);
  MSA_RETURN_IF_ERROR(w.begin());
  MSA_RETURN_IF_ERROR(w.section(kFingerprint, 0, &m.fp, sizeof m.fp));
  MSA_RETURN_IF_ERROR(w.section(kTemplate, 0, m.template_kv.data(), m.template_kv.size() * sizeof(float)));
  std::vector<SegmentRec> segs(m.segments.size());
  for (size_t i = 0; i < segs.size(); ++i) {
    std::memset(&segs[i], 0, sizeof segs[i]);
    const SegmentRef& s = m.segments[i];
    if (s.name.empty() || s.name.size() >= sizeof segs[i].name) {
      return Error(StatusCode::kInternal, path, ": segment name '", s.name, "' does not fit");
    }
    std::memcpy(segs[i].name, s.name.data(), s.name.size());
    segs[i].file_size = s.file_size;
    segs[i].header_xxh64 = s.header_xxh64;
    segs[i].n_docs = s.n_docs;
    segs[i].n_chunks = s.n_chunks;
  }
  MSA_RETURN_IF_ERROR(w.section(kSegments, 0, segs.data(), segs.size() * sizeof(SegmentRec)));
  MSA_RETURN_IF_ERROR(w.section(kTombstones, 0, m.tombstones.data(), m.tombstones.size() * sizeof(uint64_t)));
  uint64_t checksum = 0, size = 0;
  return w.finish(kManifestMagic, m.generation, &checksum, &size);
}

void remove_unreferenced(const std::string& dir, const Manifest& keep, const std::unordered_set<std::string>& in_use) {
  std::unordered_set<std::string> names;
  for (const SegmentRef& s : keep.segments) names.insert(s.name);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> doomed;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    const bool ours_seg = n.size() > 11 && n.compare(0, 4, "seg-") == 0 && n.compare(n.size() - 7, 7, ".msaseg") == 0;
    const bool tmp = n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0 &&
                     (n.compare(0, 4, "seg-") == 0 || n.compare(0, 8, "MANIFEST") == 0);
    if ((ours_seg && names.count(n) == 0 && in_use.count(n) == 0) || tmp) doomed.push_back(n);
  }
  ::closedir(d);
  for (const std::string& n : doomed) ::unlink((dir + "/" + n).c_str());
}

// ---------------------------------------------------------------------------------------------- reading

Status parse_manifest(const uint8_t* data, size_t size, const std::string& path, Manifest* out) {
  ParsedFile f;
  MSA_RETURN_IF_ERROR(parse_file(data, size, path, kManifestMagic, &f));
  if (f.table.size() != 4) return Error(StatusCode::kCorrupt, path, ": ", f.table.size(), " sections, expected 4");
  MSA_RETURN_IF_ERROR(expect_section(f, 0, kFingerprint, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 1, kTemplate, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 2, kSegments, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 3, kTombstones, 0, path));
  for (const SectionEntry& e : f.table) MSA_RETURN_IF_ERROR(check_section(data, e, path));
  Manifest m;
  m.generation = f.h.id;
  const SectionEntry& fe = f.table[0];
  if (fe.length != sizeof(Fingerprint)) return Error(StatusCode::kCorrupt, path, ": fingerprint: wrong length");
  std::memcpy(&m.fp, data + fe.offset, sizeof m.fp);
  const Fingerprint& fp = m.fp;
  if (!page_dtype_valid(static_cast<uint32_t>(fp.page_dtype)) || fp.page_dtype > 2 || fp.template_len != 3 ||
      !all_zero(fp.reserved, sizeof fp.reserved) || fp.num_hidden_layers < 1 || fp.num_hidden_layers > 4096 ||
      fp.num_key_value_heads < 1 || fp.num_key_value_heads > 4096 || fp.head_dim < 1 || fp.head_dim > 65536 ||
      fp.pooling_kernel_size < 1 || fp.n_router_layers < 1 || fp.n_router_layers > fp.num_hidden_layers ||
      strnlen(fp.aux_loss_method, sizeof fp.aux_loss_method) == sizeof fp.aux_loss_method) {
    return Error(StatusCode::kCorrupt, path, ": fingerprint: impossible values");
  }
  const uint64_t width = fp.num_key_value_heads * fp.head_dim;
  const uint64_t tfloats = fp.num_hidden_layers * 2 * fp.template_len * width;
  const SectionEntry& te = f.table[1];
  if (te.length != tfloats * sizeof(float)) {
    return Error(StatusCode::kCorrupt, path, ": template-prefix KV: ", te.length, " bytes, expected ",
                 tfloats * sizeof(float));
  }
  m.template_kv.resize(tfloats);
  if (te.length > 0) std::memcpy(m.template_kv.data(), data + te.offset, te.length);
  const SectionEntry& se = f.table[2];
  if (se.length % sizeof(SegmentRec) != 0) return Error(StatusCode::kCorrupt, path, ": segment list: bad length");
  std::unordered_set<std::string> seen;
  for (uint64_t off = 0; off < se.length; off += sizeof(SegmentRec)) {
    SegmentRec r;
    std::memcpy(&r, data + se.offset + off, sizeof r);
    if (!valid_segment_name(r.name, sizeof r.name)) {
      return Error(StatusCode::kCorrupt, path, ": segment list: entry ", off / sizeof r, " has a bad file name");
    }
    SegmentRef s;
    s.name = r.name;
    if (!seen.insert(s.name).second) {
      return Error(StatusCode::kCorrupt, path, ": segment list: ", s.name, " appears twice");
    }
    s.file_size = r.file_size;
    s.header_xxh64 = r.header_xxh64;
    s.n_docs = r.n_docs;
    s.n_chunks = r.n_chunks;
    m.segments.push_back(std::move(s));
  }
  const SectionEntry& tb = f.table[3];
  if (tb.length % sizeof(uint64_t) != 0) return Error(StatusCode::kCorrupt, path, ": tombstones: bad length");
  m.tombstones.resize(tb.length / sizeof(uint64_t));
  if (tb.length > 0) std::memcpy(m.tombstones.data(), data + tb.offset, tb.length);
  for (size_t i = 1; i < m.tombstones.size(); ++i) {
    if (m.tombstones[i] <= m.tombstones[i - 1]) {
      return Error(StatusCode::kCorrupt, path, ": tombstones: ids not strictly ascending");
    }
  }
  *out = std::move(m);
  return Status::Ok();
}

Status read_manifest(const std::string& dir, Manifest* out) {
  const std::string path = dir + "/" + kManifestName;
  MappedFile map;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error(StatusCode::kIo, dir, ": not a memory bank directory (", errno != 0 ? errno_text() : "not a directory",
                 ")");
  }
  MSA_RETURN_IF_ERROR(MappedFile::open(path, &map));
  return parse_manifest(map.data(), map.size(), path, out);
}

void discard_uncommitted_segment(const std::string& dir, const std::string& name) {
  Manifest m;
  if (read_manifest(dir, &m).ok()) {
    for (const SegmentRef& r : m.segments) {
      if (r.name == name) return;
    }
  }
  ::unlink((dir + "/" + name).c_str());
}

Status SegmentFile::open(const std::string& path, const SegmentRef* expect, bool verify_content,
                         std::shared_ptr<const SegmentFile>* out, bool defer_routing) {
  MappedFile map;
  MSA_RETURN_IF_ERROR(MappedFile::open(path, &map));
  std::shared_ptr<const SegmentFile> seg;
  MSA_RETURN_IF_ERROR(parse(map.data(), map.size(), path, expect, verify_content, &seg, defer_routing));
  SegmentFile* s = const_cast<SegmentFile*>(seg.get());
  s->map_ = std::move(map);  // data_ keeps pointing into the same mapping
  s->from_file_ = true;
  *out = std::move(seg);
  return Status::Ok();
}

Status SegmentFile::parse(const uint8_t* data, size_t size, const std::string& path, const SegmentRef* expect,
                          bool verify_content, std::shared_ptr<const SegmentFile>* out, bool defer_routing) {
  if (expect != nullptr && size < expect->file_size) {
    return Error(StatusCode::kTruncated, path, ": ", size, " bytes, the manifest says ", expect->file_size);
  }
  if (expect != nullptr && size > expect->file_size) {
    return Error(StatusCode::kCorrupt, path, ": ", size, " bytes, the manifest says ", expect->file_size);
  }
  ParsedFile f;
  MSA_RETURN_IF_ERROR(parse_file(data, size, path, kSegmentMagic, &f));
  if (expect != nullptr && f.h.checksum != expect->header_xxh64) {
    return Error(StatusCode::kCorrupt, path, ": header checksum differs from the manifest's record (another file)");
  }
  auto seg = std::make_shared<SegmentFile>();
  seg->path_ = path;
  seg->data_ = data;
  seg->size_ = size;
  seg->header_xxh64_ = f.h.checksum;
  if (f.table.size() < 3) return Error(StatusCode::kCorrupt, path, ": too few sections");
  MSA_RETURN_IF_ERROR(expect_section(f, 0, kSegInfo, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 1, kDocs, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 2, kTexts, 0, path));
  for (size_t i = 0; i < 3; ++i) MSA_RETURN_IF_ERROR(check_section(data, f.table[i], path));
  if (f.table[0].length != sizeof(SegInfoRec)) return Error(StatusCode::kCorrupt, path, ": segment info: bad length");
  SegInfoRec info;
  std::memcpy(&info, data + f.table[0].offset, sizeof info);
  if (!page_dtype_valid(info.dtype) || info.n_layers < 1 || info.n_layers > 4096 || info.n_kv_heads < 1 ||
      info.n_kv_heads > 4096 || info.head_dim < 1 || info.head_dim > 65536 || info.pooling < 1 ||
      !all_zero(info.reserved, sizeof info.reserved)) {
    return Error(StatusCode::kCorrupt, path, ": segment info: impossible values");
  }
  if (f.table.size() != 3 + 4 * static_cast<size_t>(info.n_layers)) {
    return Error(StatusCode::kCorrupt, path, ": ", f.table.size(), " sections for ", info.n_layers, " router layers");
  }
  seg->dtype_ = static_cast<PageDType>(info.dtype);
  seg->n_kv_heads_ = static_cast<int64_t>(info.n_kv_heads);
  seg->head_dim_ = static_cast<int64_t>(info.head_dim);
  seg->pooling_ = static_cast<int64_t>(info.pooling);
  seg->n_layers_ = static_cast<int>(info.n_layers);
  seg->n_chunks_ = info.n_chunks;
  if (expect != nullptr && (info.n_docs != expect->n_docs || info.n_chunks != expect->n_chunks)) {
    return Error(StatusCode::kCorrupt, path, ": ", info.n_docs, " documents / ", info.n_chunks,
                 " chunks, the manifest says ", expect->n_docs, " / ", expect->n_chunks);
  }
  // Documents.
  const SectionEntry& de = f.table[1];
  uint64_t want_len = 0;
  if (!mul_ok(info.n_docs, sizeof(DocRec), &want_len) || de.length != want_len) {
    return Error(StatusCode::kCorrupt, path, ": document table: ", de.length, " bytes for ", info.n_docs, " documents");
  }
  const SectionEntry& tx = f.table[2];
  seg->docs_.resize(info.n_docs);
  uint64_t text_off = 0, chunk = 0;
  std::unordered_set<uint64_t> ids;
  for (uint64_t i = 0; i < info.n_docs; ++i) {
    DocRec r;
    std::memcpy(&r, data + de.offset + i * sizeof r, sizeof r);
    const uint64_t want_chunks = r.n_tokens / info.pooling + (r.n_tokens % info.pooling != 0 ? 1 : 0);
    if (r.n_tokens < 1 || r.n_chunks != want_chunks || r.text_offset != text_off || r.text_len > tx.length ||
        r.text_offset > tx.length - r.text_len || r.reserved != 0 || r.id == std::numeric_limits<uint64_t>::max() ||
        !ids.insert(r.id).second) {
      return Error(StatusCode::kCorrupt, path, ": document table: entry ", i, " is impossible");
    }
    SegmentDoc& d = seg->docs_[i];
    d.id = r.id;
    d.n_tokens = r.n_tokens;
    d.n_chunks = r.n_chunks;
    d.chunk_begin = chunk;
    d.text = std::string_view(reinterpret_cast<const char*>(data + tx.offset + r.text_offset), r.text_len);
    text_off += r.text_len;
    chunk += r.n_chunks;
  }
  if (text_off != tx.length || chunk != info.n_chunks) {
    return Error(StatusCode::kCorrupt, path, ": document table does not add up to the texts / chunk count");
  }
  const int64_t width = seg->n_kv_heads_ * seg->head_dim_;
  const uint64_t row_bytes = page_row_bytes(seg->dtype_, width);
  const uint64_t scale_bytes = static_cast<uint64_t>(page_row_scales(seg->dtype_, seg->n_kv_heads_)) * sizeof(float);
  seg->rkeys_.resize(info.n_layers);
  seg->rscales_.resize(info.n_layers);
  seg->frames_.resize(info.n_layers);
  seg->cdata_.resize(info.n_layers);
  for (uint32_t l = 0; l < info.n_layers; ++l) {
    const size_t base = 3 + 4 * static_cast<size_t>(l);
    MSA_RETURN_IF_ERROR(expect_section(f, base, kRKeys, l, path));
    MSA_RETURN_IF_ERROR(expect_section(f, base + 1, kRScales, l, path));
    MSA_RETURN_IF_ERROR(expect_section(f, base + 2, kCData, l, path));
    MSA_RETURN_IF_ERROR(expect_section(f, base + 3, kCFrames, l, path));
    const SectionEntry& rk = f.table[base];
    const SectionEntry& rs = f.table[base + 1];
    const SectionEntry& cd = f.table[base + 2];
    const SectionEntry& cf = f.table[base + 3];
    uint64_t want = 0, want_s = 0, want_f = 0;
    if (!mul_ok(info.n_chunks, row_bytes, &want) || rk.length != want || !mul_ok(info.n_chunks, scale_bytes, &want_s) ||
        rs.length != want_s || !mul_ok(info.n_docs, sizeof(FrameRec), &want_f) || cf.length != want_f) {
      return Error(StatusCode::kCorrupt, path, ": router slot ", l, ": routing key / frame table sizes do not match ",
                   info.n_chunks, " chunks");
    }
    if (!defer_routing) {
      MSA_RETURN_IF_ERROR(check_section(data, rk, path));
      MSA_RETURN_IF_ERROR(check_section(data, rs, path));
    }
    MSA_RETURN_IF_ERROR(check_section(data, cf, path));
    seg->rk_span_.push_back(Span{rk.offset, rk.length, rk.xxh64});
    seg->rs_span_.push_back(Span{rs.offset, rs.length, rs.xxh64});
    seg->rkeys_[l] = data + rk.offset;
    seg->rscales_[l] = data + rs.offset;
    seg->cdata_[l] = Span{cd.offset, cd.length, cd.xxh64};
    seg->content_bytes_ += cd.length;
    std::vector<FrameRef>& frames = seg->frames_[l];
    frames.resize(info.n_docs);
    uint64_t at = 0;
    for (uint64_t i = 0; i < info.n_docs; ++i) {
      FrameRec r;
      std::memcpy(&r, data + cf.offset + i * sizeof r, sizeof r);
      if (r.offset != at || r.length == 0 || r.length > cd.length - at || r.reserved != 0 ||
          (r.codec != kCodecRaw && r.codec != kCodecZstd && r.codec != (kCodecZstd | kCodecShuffled))) {
        return Error(StatusCode::kCorrupt, path, ": content frame table of router slot ", l, ": entry ", i,
                     " is impossible");
      }
      frames[i] = FrameRef{cd.offset + r.offset, r.length, r.xxh64, r.codec};
      at += r.length;
    }
    if (at != cd.length) {
      return Error(StatusCode::kCorrupt, path, ": content frames of router slot ", l, " do not tile their section");
    }
  }
  if (verify_content) MSA_RETURN_IF_ERROR(seg->verify_content());
  *out = std::move(seg);
  return Status::Ok();
}

Status SegmentFile::read_routing(int layer, uint8_t* rows, float* scales) const {
  const Span spans[2] = {rk_span_[static_cast<size_t>(layer)], rs_span_[static_cast<size_t>(layer)]};
  uint8_t* dst[2] = {rows, reinterpret_cast<uint8_t*>(scales)};
  const char* what[2] = {"routing keys", "routing key scales"};
  int fd = -1;
  if (from_file_) {
    fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error(StatusCode::kIo, path_, ": cannot open: ", errno_text());
  }
  Status st = Status::Ok();
  for (int i = 0; i < 2 && st.ok(); ++i) {
    const Span& s = spans[i];
    if (s.length == 0) continue;
    if (fd >= 0) {
      // pread straight into the index: one kernel copy, no page faults on the mapping.
      uint64_t done = 0;
      while (done < s.length) {
        const ssize_t n = ::pread(fd, dst[i] + done, static_cast<size_t>(std::min<uint64_t>(s.length - done, 1u << 30)),
                                  static_cast<off_t>(s.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          st = Error(StatusCode::kIo, path_, ": reading ", what[i], " of router slot ", layer, " failed: ",
                     n < 0 ? errno_text() : std::string("unexpected end of file"));
          break;
        }
        done += static_cast<uint64_t>(n);
      }
    } else {
      std::memcpy(dst[i], data_ + s.offset, s.length);
    }
    if (st.ok() && XXH64(dst[i], s.length, 0) != s.xxh64) {
      st = Error(StatusCode::kCorrupt, path_, ": ", what[i], " (router slot ", layer, "): checksum mismatch");
    }
  }
  if (fd >= 0) ::close(fd);
  return st;
}

FrameScratch::~FrameScratch() { ZSTD_freeDCtx(dctx_); }

void SegmentFile::frame_part_bytes(size_t doc, size_t* rows, size_t* scales) const {
  const size_t n = static_cast<size_t>(docs_[doc].n_chunks);
  *rows = n * page_row_bytes(dtype_, n_kv_heads_ * head_dim_);
  *scales = n * static_cast<size_t>(page_row_scales(dtype_, n_kv_heads_)) * sizeof(float);
}

size_t SegmentFile::frame_raw_size(size_t doc) const {
  size_t rows = 0, scales = 0;
  frame_part_bytes(doc, &rows, &scales);
  return 2 * (rows + scales);
}

Status SegmentFile::check_frame(int layer, size_t doc) const {
  const FrameRef& f = frame(layer, doc);
  if (XXH64(data_ + f.offset, f.length, 0) != f.xxh64) {
    return Error(StatusCode::kCorrupt, path_, ": content pages of router slot ", layer, ", document ", docs_[doc].id,
                 ": checksum mismatch");
  }
  return Status::Ok();
}

Status SegmentFile::read_frame(int layer, size_t doc, std::vector<uint8_t>* raw, FrameScratch* scratch) const {
  size_t rows = 0, scales = 0;
  frame_part_bytes(doc, &rows, &scales);
  raw->resize(2 * (rows + scales));
  uint8_t* p = raw->data();
  FrameParts parts;
  parts.k_rows = p;
  parts.k_scales = p + rows;
  parts.v_rows = p + rows + scales;
  parts.v_scales = p + 2 * rows + scales;
  return read_frame_parts(layer, doc, parts, scratch);
}

Status SegmentFile::read_frame_parts(int layer, size_t doc, const FrameParts& dst, FrameScratch* scratch) const {
  MSA_RETURN_IF_ERROR(check_frame(layer, doc));
  const FrameRef& f = frame(layer, doc);
  size_t rows = 0, scales = 0;
  frame_part_bytes(doc, &rows, &scales);
  const size_t want = 2 * (rows + scales);
  uint8_t* const to[4] = {dst.k_rows, dst.k_scales, dst.v_rows, dst.v_scales};
  const size_t len[4] = {rows, scales, rows, scales};
  auto scatter = [&](const uint8_t* from) {
    for (int i = 0; i < 4; ++i) {
      if (len[i] > 0) std::memcpy(to[i], from, len[i]);
      from += len[i];
    }
  };
  if (f.codec == kCodecRaw) {
    if (f.length != want) {
      return Error(StatusCode::kCorrupt, path_, ": content pages of router slot ", layer, ", document ",
                   docs_[doc].id, ": stored frame of ", f.length, " bytes, expected ", want);
    }
    scatter(data_ + f.offset);
    return Status::Ok();
  }
  FrameScratch local;
  if (scratch == nullptr) scratch = &local;
  if (scratch->dctx_ == nullptr) {
    scratch->dctx_ = ZSTD_createDCtx();
    if (scratch->dctx_ == nullptr) return Error(StatusCode::kOutOfMemory, path_, ": no zstd decompression context");
  }
  std::vector<uint8_t>& buf = scratch->buf_;
  if (buf.size() < want) buf.resize(want);
  const size_t n = ZSTD_decompressDCtx(scratch->dctx_, buf.data(), want, data_ + f.offset, f.length);
  if (ZSTD_isError(n) || n != want) {
    return Error(StatusCode::kCorrupt, path_, ": content pages of router slot ", layer, ", document ", docs_[doc].id,
                 ": frame does not decompress to ", want, " bytes");
  }
  if ((f.codec & kCodecShuffled) == 0) {
    scatter(buf.data());
    return Status::Ok();
  }
  // Every part is a whole number of page elements (rows: width elements each; scales: int8 only, elem 1), so each
  // part is a run of elements of the unshuffled frame.
  const size_t elem = page_elem_bytes(dtype_);
  size_t first = 0;
  for (int i = 0; i < 4; ++i) {
    byte_unshuffle_range(buf.data(), want, elem, first / elem, len[i] / elem, to[i]);
    first += len[i];
  }
  return Status::Ok();
}

Status SegmentFile::verify_content() const {
  std::vector<uint8_t> raw;
  FrameScratch scratch;
  for (int l = 0; l < n_layers_; ++l) {
    const Span& s = cdata_[static_cast<size_t>(l)];
    if (XXH64(data_ + s.offset, s.length, 0) != s.xxh64) {
      return Error(StatusCode::kCorrupt, path_, ": content pages (router slot ", l, "): checksum mismatch");
    }
    for (size_t d = 0; d < docs_.size(); ++d) MSA_RETURN_IF_ERROR(read_frame(l, d, &raw, &scratch));
  }
  return Status::Ok();
}

namespace {

Status cross_check(const std::string& where, BankContents* bc) {
  const Fingerprint& fp = bc->manifest.fp;
  std::unordered_set<uint64_t> ids;
  for (const auto& seg : bc->segments) {
    if (static_cast<uint64_t>(seg->dtype()) != fp.page_dtype ||
        static_cast<uint64_t>(seg->n_kv_heads()) != fp.num_key_value_heads ||
        static_cast<uint64_t>(seg->head_dim()) != fp.head_dim ||
        static_cast<uint64_t>(seg->pooling()) != fp.pooling_kernel_size ||
        static_cast<uint64_t>(seg->n_router_layers()) != fp.n_router_layers) {
      return Error(StatusCode::kCorrupt, seg->path(), ": segment shape (dtype, heads, pooling, router layers) "
                   "differs from the manifest's fingerprint");
    }
    for (const SegmentDoc& d : seg->docs()) {
      if (!ids.insert(d.id).second) {
        return Error(StatusCode::kCorrupt, seg->path(), ": document id ", d.id, " appears in two segments");
      }
    }
  }
  for (uint64_t id : bc->manifest.tombstones) {
    if (ids.count(id) == 0) {
      return Error(StatusCode::kCorrupt, where, ": tombstones: id ", id, " is not in any segment");
    }
  }
  return Status::Ok();
}

}  // namespace

Status read_bank_dir(const std::string& dir, bool verify_content, BankContents* out, bool defer_routing) {
  BankContents bc;
  MSA_RETURN_IF_ERROR(read_manifest(dir, &bc.manifest));
  for (const SegmentRef& ref : bc.manifest.segments) {
    const std::string path = dir + "/" + ref.name;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return Error(StatusCode::kTruncated, path, ": missing (the manifest lists it)");
    }
    std::shared_ptr<const SegmentFile> seg;
    MSA_RETURN_IF_ERROR(SegmentFile::open(path, &ref, verify_content, &seg, defer_routing));
    bc.segments.push_back(std::move(seg));
  }
  MSA_RETURN_IF_ERROR(cross_check(dir + "/" + kManifestName, &bc));
  *out = std::move(bc);
  return Status::Ok();
}

Status parse_bank_buffers(const uint8_t* manifest, size_t manifest_size,
                          const std::vector<std::pair<const uint8_t*, size_t>>& segments, bool verify_content,
                          BankContents* out) {
  BankContents bc;
  MSA_RETURN_IF_ERROR(parse_manifest(manifest, manifest_size, kManifestName, &bc.manifest));
  if (segments.size() != bc.manifest.segments.size()) {
    return Error(StatusCode::kTruncated, kManifestName, ": lists ", bc.manifest.segments.size(), " segments, ",
                 segments.size(), " given");
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentRef& ref = bc.manifest.segments[i];
    std::shared_ptr<const SegmentFile> seg;
    MSA_RETURN_IF_ERROR(
        SegmentFile::parse(segments[i].first, segments[i].second, ref.name, &ref, verify_content, &seg));
    bc.segments.push_back(std::move(seg));
  }
  MSA_RETURN_IF_ERROR(cross_check(kManifestName, &bc));
  *out = std::move(bc);
  return Status::Ok();
}

}  // namespace msa::bankfmt
