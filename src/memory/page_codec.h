// Page codec: the element types memory pages are held in (RAM and disk) and the row conversions between them
// and f32 (docs/FORMAT.md "Page dtypes").
//
// A page is a set of rows of `width = n_heads * head_dim` values (one row per pooled chunk; routing keys, K̄ or
// V̄). Page dtypes:
//   kF32   4 bytes per value, bit-exact;
//   kBF16  2 bytes per value, round-to-nearest-even (NaN stays NaN), decoded exactly by widening;
//   kInt8  1 byte per value + one f32 scale per (row, head): symmetric, scale = max|x| / 127 over the head's
//          head_dim values (0 for an all-zero head), q = round-half-away(x / scale) clamped to [-127, 127],
//          decoded as q * scale (one f32 multiply). Non-finite inputs are rejected by the bank before they get
//          here; encode maps them to 0 (int8) so the codec itself never produces NaN.
// Decoding is a pure function of the stored bytes, so a page decoded twice (or after a save/open round trip)
// gives the same bits.
//
// Byte shuffle (for compression): byte_shuffle() transposes a buffer of `elem`-byte elements into `elem` byte
// planes (all first bytes, then all second bytes, ...); byte_unshuffle() inverts it. A trailing partial element
// is copied as is.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace msa {

enum class PageDType : uint32_t { kF32 = 0, kBF16 = 1, kInt8 = 2 };

// "f32" | "bf16" | "int8" | "?"
const char* page_dtype_name(PageDType t);
// Parses "f32" | "bf16" | "int8". Returns false for anything else.
bool parse_page_dtype(const char* name, PageDType* out);
// True for the three values above (a value read from a file may be anything).
bool page_dtype_valid(uint32_t v);

// Bytes of one value (4, 2, 1).
size_t page_elem_bytes(PageDType t);
// Data bytes of one row of `width` values.
inline size_t page_row_bytes(PageDType t, int64_t width) { return page_elem_bytes(t) * static_cast<size_t>(width); }
// f32 scales per row: n_heads for kInt8, 0 otherwise.
inline int64_t page_row_scales(PageDType t, int64_t n_heads) { return t == PageDType::kInt8 ? n_heads : 0; }

// Encodes n_rows rows of src ([n_rows, n_heads * head_dim] f32) into dst (n_rows * page_row_bytes bytes) and,
// for kInt8, scales ([n_rows, n_heads]; may be null otherwise).
void encode_rows(PageDType t, const float* src, int64_t n_rows, int64_t n_heads, int64_t head_dim, uint8_t* dst,
                 float* scales);
// Decodes n_rows rows back to f32 (scales: kInt8 only).
void decode_rows(PageDType t, const uint8_t* src, const float* scales, int64_t n_rows, int64_t n_heads,
                 int64_t head_dim, float* dst);

void byte_shuffle(const uint8_t* src, size_t n_bytes, size_t elem, uint8_t* dst);
void byte_unshuffle(const uint8_t* src, size_t n_bytes, size_t elem, uint8_t* dst);
// Elements [first, first + count) of byte_unshuffle(src, n_bytes, elem) (count * elem bytes) into dst, the rest
// untouched: a shuffled frame unshuffled straight into several destinations. first + count <= n_bytes / elem.
void byte_unshuffle_range(const uint8_t* src, size_t n_bytes, size_t elem, size_t first, size_t count, uint8_t* dst);

}  // namespace msa
