// Writing segment files (bank_format.h, docs/FORMAT.md): header, document table and texts, then per router layer
// the routing keys, their scales, the content frames (each compressed with zstd, with or without the byte shuffle,
// or stored raw, whichever is smallest) and the frame table.
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "memory/bank_format_internal.h"

namespace msa::bankfmt {

using namespace detail;

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

}  // namespace msa::bankfmt
