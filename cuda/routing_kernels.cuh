// Device code of the routing scan (routing_score.h describes the method): query-row preparation, the scan
// kernel, the chunk -> document reduction, and the host-side launch plan shared by routing_score.cu and the
// CPU emulation test (kernel_compat.cuh). Include from exactly one .cu (the kernels are not inline).
#pragma once

#include <cstdint>

#include "memory/page_codec.h"
#include "model/config.h"
#include "kernel_compat.cuh"

namespace msa::cuda::kern {
inline namespace MSA_KERNEL_ABI {

constexpr int kThreads = 256;      // threads per scan block
constexpr int kSliceBytes = 128;   // key bytes of one (chunk, kv head) slice staged per step
constexpr int kMaxRowLanes = 4;    // threads sharing one chunk (each with its own query rows)

// Four consecutive key elements (16-byte-aligned smem offsets for f32, 8 for bf16, 4 for int8) as f32.
template <typename KT>
struct KeyVec;
// int8 -> f32 without the int-to-float conversion unit (I2F runs at a quarter of the FP32 rate or less on
// sm_80-sm_90, and an int8 scan at T = 1 needs one conversion per key byte at HBM speed): with u = x + 128 (the
// sign bit flipped), the float whose bits are 0x4B0000uu is 2^23 + u exactly, so subtracting 2^23 + 128 gives x
// exactly (Sterbenz). One PRMT and one FADD per element, the same f32 values as static_cast<float>.
MSA_DEV float4 int8x4_to_float4(uint32_t packed) {
  const uint32_t u = packed ^ 0x80808080u;
  constexpr uint32_t kExp = 0x4B000000u;  // bytes {00, 00, 00, 4B} as the y operand (selector 4 = 00, 7 = 4B)
  constexpr float kBias = 8388736.0f;     // 2^23 + 128
  return make_float4(as_float(byte_perm(u, kExp, 0x7440u)) - kBias, as_float(byte_perm(u, kExp, 0x7441u)) - kBias,
                     as_float(byte_perm(u, kExp, 0x7442u)) - kBias, as_float(byte_perm(u, kExp, 0x7443u)) - kBias);
}

template <>
struct KeyVec<int8_t> {
  static MSA_DEV float4 load(const unsigned char* p) { return int8x4_to_float4(ld<uint32_t>(p)); }
};
template <>
struct KeyVec<uint16_t> {  // bf16: widening is exact
  static MSA_DEV float4 load(const unsigned char* p) {
    const uint2 v = ld<uint2>(p);
    return make_float4(as_float(v.x << 16), as_float(v.x & 0xffff0000u), as_float(v.y << 16),
                       as_float(v.y & 0xffff0000u));
  }
};
template <>
struct KeyVec<float> {
  static MSA_DEV float4 load(const unsigned char* p) { return ld<float4>(p); }
};

struct ScanParams {
  const unsigned char* keys;  // [n_chunks, width] in the key type
  const float* scales;        // int8: [n_chunks, n_kv]; else null
  const float* rows;          // prepared query rows [n_rows, width] f32
  float* chunk_scores;        // [n_chunks]
  int64_t n_chunks;
  int n_kv;
  int head_dim;
  int width;
  int n_rows;
  int rows_per_token;  // head max: heads per kv group (rows (t, j) are token-major); collapsed: 1
  int head_max;        // 1: head max; 0: collapsed head mean
  int query;           // 0 max, 1 mean, 2 last (QueryReduce)
  float head_div;      // collapsed: n_heads
  float query_div;     // collapsed query mean: n_tokens; else 1
  float token_div;     // head max + query mean: n_tokens
  int row_lanes;       // 1, 2 or 4 threads per chunk
  int load_bytes;      // 16, 4 or 1: unit of the global -> shared copy
};

// Shared memory layout of the scan (bytes), identical on host and device.
template <typename KT>
struct ScanLayout {
  static constexpr int kEb = sizeof(KT);
  static constexpr int kSe = kSliceBytes / kEb;                // elements per slice
  static constexpr int kPitch = kSliceBytes + 4 * kEb;         // key row pitch: conflict-free 4-element reads
  static MSA_HD int key_bytes(int bc) { return (bc * kPitch + 15) / 16 * 16; }
  static MSA_HD int row_tile_bytes(int rows_per_pass) { return rows_per_pass * kSe * 4; }
  static MSA_HD int total(int bc, int rows_per_pass) {
    return key_bytes(bc) + row_tile_bytes(rows_per_pass) + rows_per_pass * bc * 4;
  }
};

template <typename KT, int RPT>
MSA_KERNEL void MSA_LAUNCH_BOUNDS(kThreads) scan_kernel(ScanParams p) {
  using L = ScanLayout<KT>;
  constexpr int kEb = L::kEb, kSe = L::kSe, kPitch = L::kPitch;
  MSA_DYNAMIC_SMEM(smem);
  const int rl = p.row_lanes;
  const int bc = kThreads / rl;
  const int rows_per_pass = rl * RPT;
  unsigned char* ktile = smem;
  float* rtile = reinterpret_cast<float*>(smem + L::key_bytes(bc));
  float* rowval = rtile + rows_per_pass * kSe;

  const int tid = threadIdx.x;
  const int ci = tid % bc;
  const int ri = tid / bc;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * bc;
  const int64_t c = c0 + ci;
  const int64_t n_tile = p.n_chunks - c0 < bc ? p.n_chunks - c0 : bc;  // valid chunks of this tile
  const size_t row_bytes = static_cast<size_t>(p.width) * kEb;

  // Fold state of chunk `tid` (threads tid < bc): query reduction over the rows in row order.
  float qv = 0.0f, cur_v = 0.0f;
  int cur_t = -1, n_t = 0;

  for (int r0 = 0; r0 < p.n_rows; r0 += rows_per_pass) {
    float hstate[RPT];
    MSA_UNROLL
    for (int i = 0; i < RPT; ++i) hstate[i] = 0.0f;
    for (int g = 0; g < p.n_kv; ++g) {
      float acc[RPT];
    MSA_UNROLL
      for (int i = 0; i < RPT; ++i) acc[i] = 0.0f;
      for (int s0 = 0; s0 < p.head_dim; s0 += kSe) {
        const int len = p.head_dim - s0 < kSe ? p.head_dim - s0 : kSe;
        const int len4 = (len + 3) & ~3;
        const int lbytes = len * kEb;
        const size_t col0 = (static_cast<size_t>(g) * p.head_dim + s0) * kEb;
        MSA_SYNC();  // the previous slice's readers are done
        // Keys of the tile: bc rows of lbytes, zero past the valid chunks and in [len, len4).
        if (p.load_bytes == 16) {
          const int upr = lbytes / 16;
          for (int u = tid; u < bc * upr; u += kThreads) {
            const int row = u / upr, col = u % upr;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (row < n_tile) {
              v = ld<uint4>(p.keys + static_cast<size_t>(c0 + row) * row_bytes + col0 + col * 16);
            }
            unsigned char* d = ktile + row * kPitch + col * 16;
            st<uint32_t>(d, v.x);
            st<uint32_t>(d + 4, v.y);
            st<uint32_t>(d + 8, v.z);
            st<uint32_t>(d + 12, v.w);
          }
        } else if (p.load_bytes == 4) {
          const int upr = lbytes / 4;
          for (int u = tid; u < bc * upr; u += kThreads) {
            const int row = u / upr, col = u % upr;
            uint32_t v = 0;
            if (row < n_tile) {
              v = ld<uint32_t>(p.keys + static_cast<size_t>(c0 + row) * row_bytes + col0 + col * 4);
            }
            st<uint32_t>(ktile + row * kPitch + col * 4, v);
          }
        } else {
          for (int u = tid; u < bc * lbytes; u += kThreads) {
            const int row = u / lbytes, col = u % lbytes;
            ktile[row * kPitch + col] = row < n_tile ? p.keys[static_cast<size_t>(c0 + row) * row_bytes + col0 + col] : 0;
          }
        }
        const int pad = (len4 - len) * kEb;
        for (int u = tid; u < bc * pad; u += kThreads) {
          const int row = u / pad, b = u % pad;
          ktile[row * kPitch + lbytes + b] = 0;
        }
        // Query rows of this pass: [rows_per_pass][kSe], zero past n_rows and in [len, len4).
        for (int u = tid; u < rows_per_pass * len4; u += kThreads) {
          const int i = u / len4, e = u % len4;
          const int r = r0 + i;
          float v = 0.0f;
          if (r < p.n_rows && e < len) v = p.rows[static_cast<int64_t>(r) * p.width + g * p.head_dim + s0 + e];
          rtile[i * kSe + e] = v;
        }
        MSA_SYNC();
        const unsigned char* krow = ktile + ci * kPitch;
        const float* rbase = rtile + ri * RPT * kSe;
        for (int e = 0; e < len4; e += 4) {
          const float4 k = KeyVec<KT>::load(krow + e * kEb);
    MSA_UNROLL
          for (int i = 0; i < RPT; ++i) {
            const float4 a = ld<float4>(rbase + i * kSe + e);
            float s = acc[i];
            s = fmaf(a.x, k.x, s);
            s = fmaf(a.y, k.y, s);
            s = fmaf(a.z, k.z, s);
            s = fmaf(a.w, k.w, s);
            acc[i] = s;
          }
        }
      }
      // kv head g done: apply the int8 scale, fold into the head reduction.
      float sc = 1.0f;
      if (p.scales != nullptr && c < p.n_chunks) sc = p.scales[c * p.n_kv + g];
    MSA_UNROLL
      for (int i = 0; i < RPT; ++i) {
        const float v = p.scales != nullptr ? acc[i] * sc : acc[i];
        if (g == 0) {
          hstate[i] = v;
        } else {
          hstate[i] = p.head_max ? max_nan(hstate[i], v) : hstate[i] + v;
        }
      }
    }
    // Rows of this pass -> shared, then the owner thread of each chunk folds them in row order.
    MSA_UNROLL
    for (int i = 0; i < RPT; ++i) rowval[(ri * RPT + i) * bc + ci] = hstate[i];
    MSA_SYNC();
    if (tid < bc) {
      for (int i = 0; i < rows_per_pass; ++i) {
        const int r = r0 + i;
        if (r >= p.n_rows) break;
        const float v = rowval[i * bc + tid];
        const int t = r / p.rows_per_token;
        if (t != cur_t) {
          if (cur_t >= 0) {
            qv = n_t == 0 ? cur_v : (p.query == 0 ? max_nan(qv, cur_v) : qv + cur_v);
            ++n_t;
          }
          cur_t = t;
          cur_v = v;
        } else {
          cur_v = max_nan(cur_v, v);  // head max over the heads of one kv group
        }
      }
    }
    // rowval is rewritten only after the next pass's slice barriers.
  }
  if (tid < bc && c < p.n_chunks) {
    qv = n_t == 0 ? cur_v : (p.query == 0 ? max_nan(qv, cur_v) : qv + cur_v);
    float out;
    if (!p.head_max) {
      out = qv / p.head_div / p.query_div;
    } else {
      out = (p.query == 1 && n_t + 1 > 1) ? qv / p.token_div : qv;
    }
    p.chunk_scores[c] = out;
  }
}

// Query rows for the scan (mode 0: collapsed per token; 1: collapsed, summed over tokens; 2: per head).
MSA_KERNEL void prepare_rows_kernel(const float* q, float* rows, int64_t n_out, int n_heads, int n_kv,
                                    int head_dim, int t_first, int n_tokens, int mode) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_out) return;
  const int width = n_kv * head_dim;
  const int hpg = n_heads / n_kv;
  const int64_t qstride = static_cast<int64_t>(n_heads) * head_dim;
  const int64_t r = idx / width;
  const int w = static_cast<int>(idx % width);
  const int g = w / head_dim, d = w % head_dim;
  if (mode == 2) {
    const int64_t t = r / hpg;
    const int j = static_cast<int>(r % hpg);
    rows[idx] = q[(t_first + t) * qstride + static_cast<int64_t>(g * hpg + j) * head_dim + d];
    return;
  }
  auto group_sum = [&](int64_t t) {
    const float* src = q + t * qstride + static_cast<int64_t>(g) * hpg * head_dim + d;
    float s = src[0];
    for (int j = 1; j < hpg; ++j) s = add_rn(s, src[static_cast<int64_t>(j) * head_dim]);
    return s;
  };
  if (mode == 0) {
    rows[idx] = group_sum(t_first + r);
    return;
  }
  float acc = 0.0f;
  for (int t = 0; t < n_tokens; ++t) acc = add_rn(acc, group_sum(t));
  rows[idx] = acc;
}

MSA_KERNEL void reduce_documents_kernel(const float* chunk_scores, const int32_t* offsets, const int32_t* chunks,
                                        int n_docs, int mean, float* out) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= n_docs) return;
  const int b = offsets[d], e = offsets[d + 1];
  float s = -INFINITY;
  if (e > b) {
    if (mean) {
      float sum = 0.0f;
      for (int i = b; i < e; ++i) sum = add_rn(sum, chunk_scores[chunks[i]]);
      s = div_rn(sum, static_cast<float>(e - b));
    } else {
      for (int i = b; i < e; ++i) s = max_nan(s, chunk_scores[chunks[i]]);
    }
  }
  out[d] = s;
}

// Launch plan of one scoring call (pure host logic).
struct RoutePlan {
  int mode = 0;           // prepare_rows_kernel mode
  int64_t t_first = 0;    // first routing token used
  int64_t n_rows = 0;     // prepared query rows
  int64_t prep_out = 0;   // floats written by prepare_rows_kernel
  int rpt = 1;            // rows per thread (template argument of scan_kernel)
  int bc = kThreads;      // chunks per scan block
  int smem = 0;           // dynamic shared memory bytes of the scan
  ScanParams p{};         // pointers left null
};

inline RoutePlan plan_route(int64_t T, int64_t H, int64_t G, int64_t D, HeadReduce head, QueryReduce query,
                            PageDType dtype, int64_t n_chunks) {
  RoutePlan r;
  const int64_t hpg = H / G;
  const int64_t width = G * D;
  const bool head_max = head == HeadReduce::kMax;
  r.t_first = query == QueryReduce::kLast ? T - 1 : 0;
  const int64_t n_used = T - r.t_first;
  if (head_max) {
    r.mode = 2;
    r.n_rows = n_used * hpg;
  } else if (query == QueryReduce::kMean) {
    r.mode = 1;
    r.n_rows = 1;
  } else {
    r.mode = 0;
    r.n_rows = n_used;
  }
  r.prep_out = r.mode == 1 ? width : r.n_rows * width;
  ScanParams& p = r.p;
  p.n_chunks = n_chunks;
  p.n_kv = static_cast<int>(G);
  p.head_dim = static_cast<int>(D);
  p.width = static_cast<int>(width);
  p.n_rows = static_cast<int>(r.n_rows);
  p.rows_per_token = head_max ? static_cast<int>(hpg) : 1;
  p.head_max = head_max ? 1 : 0;
  p.query = static_cast<int>(query);
  p.head_div = static_cast<float>(H);
  p.query_div = r.mode == 1 ? static_cast<float>(T) : 1.0f;
  p.token_div = static_cast<float>(T);
  r.rpt = r.n_rows == 1 ? 1 : 8;
  p.row_lanes = r.n_rows <= 8 ? 1 : (r.n_rows <= 16 ? 2 : kMaxRowLanes);
  const size_t eb = page_elem_bytes(dtype);
  const size_t head_bytes = static_cast<size_t>(D) * eb;
  p.load_bytes = head_bytes % 16 == 0 ? 16 : (head_bytes % 4 == 0 ? 4 : 1);
  r.bc = kThreads / p.row_lanes;
  const int rows_per_pass = p.row_lanes * r.rpt;
  if (dtype == PageDType::kInt8) {
    r.smem = ScanLayout<int8_t>::total(r.bc, rows_per_pass);
  } else if (dtype == PageDType::kBF16) {
    r.smem = ScanLayout<uint16_t>::total(r.bc, rows_per_pass);
  } else {
    r.smem = ScanLayout<float>::total(r.bc, rows_per_pass);
  }
  return r;
}

}  // namespace MSA_KERNEL_ABI
}  // namespace msa::cuda::kern
