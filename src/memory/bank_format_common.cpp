// What the bank files share (bank_format_internal.h): section names, the header checksum, and the validation of a
// file's header, section table, layout and padding.
#include <cerrno>
#include <cstring>

#include "memory/bank_format_internal.h"

namespace msa::bankfmt::detail {

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

}  // namespace msa::bankfmt::detail
