// Reading segment files and whole banks (bank_format.h, docs/FORMAT.md): SegmentFile (open and validate, routing
// rows, content frames verified and decompressed on read, the full verification pass) and read_bank_dir /
// parse_bank_buffers (a manifest and its segments, cross-checked).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "memory/bank_format_internal.h"

namespace msa::bankfmt {

using namespace detail;

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
