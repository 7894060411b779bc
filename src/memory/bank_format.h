// On-disk memory banks (docs/FORMAT.md): a directory holding immutable segment files and one MANIFEST, the
// single atomic commit point. This layer only reads and writes bytes; it knows nothing of models or of the
// in-RAM MemoryBank (memory_bank.h builds on it), so the fuzz target can drive it alone.
//
// Every file: a 64-byte header + a section table (both covered by the header's xxh64), then the sections in
// table order, each starting at a 64-byte aligned offset, the padding zero, the file ending at the end of the
// last section. Every section has a length and an xxh64. Content data sections are also covered frame by frame
// (each (layer, document) frame has its own xxh64 and the frames tile the section exactly), which is what lets
// a reader verify content lazily, one frame on first touch. Hence every byte of a bank is covered by a checksum
// or a zero/equality check: any single-bit flip is detected (by open, or by the first read of the frame).
//
// Errors name the file and the section: kTruncated (a file shorter than its header or the manifest says),
// kCorrupt (checksum mismatch, impossible values, bad magic, non-zero padding), kUnsupported (another format
// version or byte order), kIo (open/read/write/rename/fsync failures, with strerror).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/file_map.h"
#include "core/status.h"
#include "memory/page_codec.h"

struct ZSTD_DCtx_s;

namespace msa::bankfmt {

constexpr uint32_t kFormatVersion = 1;
constexpr const char* kManifestName = "MANIFEST";

// What a bank's memory depends on (docs/FORMAT.md "Fingerprint"). Written as this exact 256-byte POD
// (little-endian). The model fields are compared one by one on open; page_dtype describes the bank itself.
struct Fingerprint {
  uint64_t hidden_size = 0;
  uint64_t num_hidden_layers = 0;
  uint64_t num_attention_heads = 0;
  uint64_t num_key_value_heads = 0;
  uint64_t head_dim = 0;
  uint64_t vocab_size = 0;
  uint64_t pooling_kernel_size = 0;
  uint64_t decouple_router = 0;
  uint64_t n_router_layers = 0;
  uint64_t router_layers_xxh64 = 0;  // of the int32 layer indices
  double rope_theta = 0;
  double rms_norm_eps = 0;
  uint64_t tokenizer_xxh64 = 0;      // of tokenizer.json's bytes (0: no tokenizer file)
  uint64_t weights_digest = 0;       // xxh64 of a strided sample of the weight bytes
  char aux_loss_method[32] = {};
  uint64_t page_dtype = 0;           // PageDType: the bank's, not compared with the model
  uint64_t template_len = 0;         // template-prefix rows (3)
  uint64_t reserved[12] = {};        // zero
};
static_assert(sizeof(Fingerprint) == 256, "Fingerprint is a fixed on-disk record");

// kInvalidArgument naming the first model field that differs ("... built for pooling_kernel_size 64, the
// model has 32"); `what` prefixes the message (the bank path).
Status compare_fingerprint(const Fingerprint& bank, const Fingerprint& model, const std::string& what);
// "name=value" lines of every field (for `msa memory info`).
std::vector<std::pair<std::string, std::string>> fingerprint_fields(const Fingerprint& f);

struct SegmentRef {
  std::string name;              // file name inside the bank directory ("seg-000007-3f9a0c12.msaseg")
  uint64_t file_size = 0;
  uint64_t header_xxh64 = 0;     // the segment's header checksum: ties the manifest to that exact file
  uint64_t n_docs = 0;
  uint64_t n_chunks = 0;
};

struct Manifest {
  uint64_t generation = 0;       // +1 per commit
  Fingerprint fp;
  // Template-prefix K and V of every decoder layer, f32: layer l at [l * 2 * T * width], K then V (T = 3).
  std::vector<float> template_kv;
  std::vector<SegmentRef> segments;
  std::vector<uint64_t> tombstones;  // removed document ids, ascending
};

// ---------------------------------------------------------------------------------------------- writing

// One document of a segment being written.
struct SegmentDocIn {
  uint64_t id = 0;
  uint64_t n_tokens = 0;
  uint64_t n_chunks = 0;
  std::string_view text;
};

// A content frame of one (router layer, document): either `raw` (the dtype-encoded K rows, K scales, V rows,
// V scales, concatenated: the writer compresses it) or an already compressed frame copied from another
// segment (`compressed` + `codec`, verified by the caller).
struct FrameIn {
  std::vector<uint8_t> raw;
  const uint8_t* compressed = nullptr;
  uint64_t compressed_len = 0;
  uint32_t codec = 0;
};

struct SegmentSource {
  PageDType dtype = PageDType::kF32;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t pooling = 0;
  int n_router_layers = 0;
  std::vector<SegmentDocIn> docs;
  // Routing rows of router slot `layer` for every chunk of the segment, in document order: dtype bytes
  // [n_chunks, row_bytes] and (int8) scales [n_chunks, n_kv_heads].
  std::function<Status(int layer, std::vector<uint8_t>* rows, std::vector<float>* scales)> routing;
  std::function<Status(int layer, size_t doc, FrameIn* frame)> content;
  int zstd_level = 3;
};

struct WriteStats {
  uint64_t raw_content_bytes = 0;        // frames before compression
  uint64_t plain_zstd_bytes = 0;         // frames compressed without shuffle (frames this writer compressed)
  uint64_t shuffled_zstd_bytes = 0;      // frames compressed after the byte shuffle (idem)
  uint64_t stored_content_bytes = 0;     // the smaller of the two, per frame (+ copied frames)
  uint64_t frames_shuffled = 0;
  uint64_t frames = 0;
};

// Writes a segment as `path` atomically (core/atomic_file.h: a temporary file in the same directory, fsync,
// rename, fsync of the directory; on any error the temporary is removed and `path` is untouched).
// out: its SegmentRef fields (name left empty). stats may be null. Errors: kIo ("disk full" for ENOSPC / EFBIG).
Status write_segment(const std::string& path, uint64_t segment_id, const SegmentSource& src, SegmentRef* out,
                     WriteStats* stats);

// Writes `m` as dir/MANIFEST atomically, as write_segment.
Status write_manifest(const std::string& dir, const Manifest& m);

// Creates dir (and missing parents). Errors: kIo.
Status make_dirs(const std::string& dir);
// Deletes files of dir that look like ours (seg-*.msaseg, seg-*.tmp, MANIFEST*.tmp) and are neither listed in
// `keep` nor named in `in_use` (segments a live handle of this process maps). Best effort. Only a writer that holds
// the bank's writer lock and its process's commit mutex may call it (it deletes temporaries of writes in flight).
void remove_unreferenced(const std::string& dir, const Manifest& keep,
                         const std::unordered_set<std::string>& in_use = {});
// Deletes segment file `name` of dir after a failed commit, unless dir/MANIFEST lists it (a commit whose only
// failure was the final directory fsync is in place and must stay). Best effort.
void discard_uncommitted_segment(const std::string& dir, const std::string& name);
// "seg-<id zero-padded>.msaseg" (tools and benchmarks; MemoryBank names its segments with new_segment_name).
std::string segment_file_name(uint64_t segment_id);

// ---------------------------------------------------------------------------------------------- reading

// Parses dir/MANIFEST (or the bytes of one). Errors: kIo (missing), kTruncated, kCorrupt, kUnsupported.
Status read_manifest(const std::string& dir, Manifest* out);
Status parse_manifest(const uint8_t* data, size_t size, const std::string& path, Manifest* out);

struct SegmentDoc {
  uint64_t id = 0;
  uint64_t n_tokens = 0;
  uint64_t n_chunks = 0;
  uint64_t chunk_begin = 0;  // within the segment
  std::string_view text;     // into the mapping
};

struct FrameRef {
  uint64_t offset = 0;  // absolute, in the file
  uint64_t length = 0;
  uint64_t xxh64 = 0;
  uint32_t codec = 0;   // 0: stored raw; 1: zstd; 3: zstd of the byte-shuffled frame
};

// Where SegmentFile::read_frame_parts puts the four parts of a content frame (K rows, K scales, V rows, V
// scales; SegmentFile::frame_part_bytes bytes each, in that order in the frame). A part of 0 bytes (the scales of
// f32 / bf16 pages) may be null.
struct FrameParts {
  uint8_t* k_rows = nullptr;
  uint8_t* k_scales = nullptr;
  uint8_t* v_rows = nullptr;
  uint8_t* v_scales = nullptr;
};

// What frame reads reuse from one frame to the next: a zstd decompression context and a buffer. One per thread
// (not thread-safe); move-only.
class FrameScratch {
 public:
  FrameScratch() = default;
  ~FrameScratch();
  FrameScratch(FrameScratch&& o) noexcept : dctx_(o.dctx_), buf_(std::move(o.buf_)) { o.dctx_ = nullptr; }
  FrameScratch(const FrameScratch&) = delete;
  FrameScratch& operator=(const FrameScratch&) = delete;
  FrameScratch& operator=(FrameScratch&&) = delete;
  // Frees the decompression buffer when it holds more than max_bytes (the context is kept).
  void trim(size_t max_bytes) {
    if (buf_.capacity() > max_bytes) std::vector<uint8_t>().swap(buf_);
  }

 private:
  friend class SegmentFile;
  ZSTD_DCtx_s* dctx_ = nullptr;  // created on first use
  std::vector<uint8_t> buf_;
};

// An open, validated segment file. Immutable; thread-safe.
class SegmentFile {
 public:
  // Maps and validates the file: header, section table, layout, padding, every section's checksum except the
  // content data (whose frames are verified on read, or all here when verify_content). expect (may be null):
  // the manifest's record, which must match (size and header checksum).
  // defer_routing: skip the routing key / scale checksums here; read_routing() checks them on the copy it makes
  // (the open path of MemoryBank, which reads the rows once instead of twice).
  static Status open(const std::string& path, const SegmentRef* expect, bool verify_content,
                     std::shared_ptr<const SegmentFile>* out, bool defer_routing = false);
  // The same from bytes in memory (the fuzz target); `bytes` must outlive the segment.
  static Status parse(const uint8_t* data, size_t size, const std::string& path, const SegmentRef* expect,
                      bool verify_content, std::shared_ptr<const SegmentFile>* out, bool defer_routing = false);

  // Copies router slot `layer`'s routing rows (n_chunks * row bytes) and int8 scales (n_chunks * n_kv_heads
  // floats; nothing otherwise) into the caller's buffers with pread (a file) or memcpy (bytes in memory), then
  // verifies both checksums on the copy. kCorrupt names the file and the section; kIo on a failed read.
  Status read_routing(int layer, uint8_t* rows, float* scales) const;

  const std::string& path() const { return path_; }
  PageDType dtype() const { return dtype_; }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t pooling() const { return pooling_; }
  int n_router_layers() const { return n_layers_; }
  uint64_t n_chunks() const { return n_chunks_; }
  uint64_t header_xxh64() const { return header_xxh64_; }
  uint64_t file_size() const { return size_; }
  const std::vector<SegmentDoc>& docs() const { return docs_; }
  // Routing rows of a router slot: [n_chunks, row_bytes] and int8 scales [n_chunks, n_kv_heads] (null else).
  const uint8_t* routing_rows(int layer) const { return rkeys_[static_cast<size_t>(layer)]; }
  const float* routing_scales_raw(int layer) const {
    return reinterpret_cast<const float*>(rscales_[static_cast<size_t>(layer)]);
  }
  const FrameRef& frame(int layer, size_t doc) const { return frames_[static_cast<size_t>(layer)][doc]; }
  const uint8_t* bytes() const { return data_; }
  uint64_t content_bytes() const { return content_bytes_; }
  // Raw size of a document's frame: 2 * n_chunks * (row bytes + scale bytes).
  size_t frame_raw_size(size_t doc) const;
  // Sizes of a document's frame parts: rows = n_chunks * row bytes, scales = n_chunks * n_kv_heads floats (int8;
  // 0 otherwise). frame_raw_size = 2 * (rows + scales).
  void frame_part_bytes(size_t doc, size_t* rows, size_t* scales) const;
  // Verifies the frame's checksum and decompresses it into *raw (frame_raw_size bytes). kCorrupt names the
  // file, the router slot and the document id.
  // scratch (may be null): reused state (FrameScratch).
  Status read_frame(int layer, size_t doc, std::vector<uint8_t>* raw, FrameScratch* scratch = nullptr) const;
  // The same, each part straight into its destination: a frame stored raw is copied from the mapping, a zstd
  // frame decompressed into scratch and copied out (a byte-shuffled one unshuffled from scratch into the parts).
  // scratch may be null (a temporary one). Errors as read_frame; kOutOfMemory (no zstd context).
  Status read_frame_parts(int layer, size_t doc, const FrameParts& dst, FrameScratch* scratch) const;
  // Verifies the checksum of a frame only.
  Status check_frame(int layer, size_t doc) const;
  // Full pass: every content data section's checksum and every frame (checksum + decompression).
  Status verify_content() const;

 private:
  std::string path_;
  MappedFile map_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t header_xxh64_ = 0;
  PageDType dtype_ = PageDType::kF32;
  int64_t n_kv_heads_ = 0, head_dim_ = 0, pooling_ = 0;
  int n_layers_ = 0;
  uint64_t n_chunks_ = 0;
  uint64_t content_bytes_ = 0;
  std::vector<SegmentDoc> docs_;
  std::vector<const uint8_t*> rkeys_, rscales_;
  std::vector<std::vector<FrameRef>> frames_;
  struct Span {
    uint64_t offset, length, xxh64;
  };
  std::vector<Span> cdata_;  // per layer: the content data section
  std::vector<Span> rk_span_, rs_span_;  // per layer: routing keys / scales sections
  bool from_file_ = false;
};

// A whole bank: its manifest and every segment it lists, cross-checked.
struct BankContents {
  Manifest manifest;
  std::vector<std::shared_ptr<const SegmentFile>> segments;
};

// Reads dir/MANIFEST and every segment it lists; checks each segment against its manifest record and the
// fingerprint (dtype, heads, head_dim, pooling, router layers), document ids unique across segments, and that
// every tombstone names a document. verify_content: every content frame too. A listed segment that is missing
// is kTruncated (the bank is incomplete).
Status read_bank_dir(const std::string& dir, bool verify_content, BankContents* out, bool defer_routing = false);
// The same from bytes in memory: segments[i] is the file of the manifest's i-th segment (the fuzz target).
// The buffers must outlive *out.
Status parse_bank_buffers(const uint8_t* manifest, size_t manifest_size,
                          const std::vector<std::pair<const uint8_t*, size_t>>& segments, bool verify_content,
                          BankContents* out);

}  // namespace msa::bankfmt
