// libFuzzer target: the memory-bank reader (src/memory/bank_format.h) on arbitrary bytes.
// Input: a sequence of blobs, each a 4-byte little-endian length then that many bytes (a short or missing
// length takes the rest of the input): blob 0 is the MANIFEST, blob i the manifest's i-th segment file.
// Every outcome must be a Status (no crash, no out-of-bounds read, no huge allocation); a bank that parses
// must be readable end to end: routing rows decode, every content frame verifies, decompresses to its size
// and decodes (tests/fuzz/corpus/bank/ holds real banks in this packing).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "memory/bank_format.h"
#include "memory/page_codec.h"

namespace {

std::vector<std::pair<const uint8_t*, size_t>> split(const uint8_t* data, size_t size) {
  std::vector<std::pair<const uint8_t*, size_t>> out;
  size_t at = 0;
  while (at < size && out.size() < 64) {
    uint32_t n = 0;
    if (size - at >= 4) {
      std::memcpy(&n, data + at, 4);
      at += 4;
    }
    const size_t len = n <= size - at ? n : size - at;
    out.emplace_back(data + at, len);
    at += len;
  }
  return out;
}

void exercise(const msa::bankfmt::BankContents& bc) {
  std::vector<uint8_t> raw;
  std::vector<float> rows;
  for (const auto& seg : bc.segments) {
    const int64_t heads = seg->n_kv_heads(), hd = seg->head_dim();
    const int64_t n = static_cast<int64_t>(seg->n_chunks());
    rows.resize(static_cast<size_t>(n * heads * hd));
    for (int l = 0; l < seg->n_router_layers(); ++l) {
      msa::decode_rows(seg->dtype(), seg->routing_rows(l), seg->routing_scales_raw(l), n, heads, hd, rows.data());
      for (size_t d = 0; d < seg->docs().size(); ++d) {
        if (!seg->read_frame(l, d, &raw).ok()) continue;
        if (raw.size() != seg->frame_raw_size(d)) std::abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto blobs = split(data, size);
  if (blobs.empty()) return 0;
  const std::vector<std::pair<const uint8_t*, size_t>> segs(blobs.begin() + 1, blobs.end());
  for (bool verify : {false, true}) {
    msa::bankfmt::BankContents bc;
    const msa::Status st = msa::bankfmt::parse_bank_buffers(blobs[0].first, blobs[0].second, segs, verify, &bc);
    if (st.ok()) {
      exercise(bc);
    } else if (st.message().empty()) {
      std::abort();  // every error names what failed
    }
  }
  return 0;
}
