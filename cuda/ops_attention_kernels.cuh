// Device code of the forward attention and mean pooling (ops_attention.h describes the method) and their launch
// plans, shared by ops_attention.cu and the CPU emulation test (tests/gpu/test_ops_emu.cpp, over
// kernel_compat.cuh). Include from exactly one .cu (the kernels are not inline).
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "backend/backend.h"
#include "core/status.h"
#include "kernel_compat.cuh"

namespace msa::cuda::kern {
inline namespace MSA_KERNEL_ABI {

constexpr int kAttnThreads = 256;  // 8 warps
constexpr int kWarps = kAttnThreads / 32;
constexpr int kBK = 32;       // keys per shared-memory tile (one per lane in the score phase)
constexpr int kMaxAcc = 16;   // output accumulators per thread: a block holds at most 4096 (row, dim) values
constexpr int kMinBlocksPerSm = 2;  // <= 128 registers per thread: two blocks per SM overlap loads and math
constexpr int kMaxHeadDim = 256;
constexpr int kMaxSplits = 64;

struct AttnParams {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  float* part_o;  // [n_splits][n_q * n_heads][d] (split path only)
  float* part_m;  // [n_splits][n_q * n_heads]
  float* part_l;  // [n_splits][n_q * n_heads]
  const int64_t* own_begin;
  const int64_t* own_end;
  const int32_t* q_seg;
  const int32_t* kv_seg;
  int64_t n_q, n_kv, n_prefix, n_own;
  int hq, hkv, d, group, bq, n_splits;
  float scale;
};

// Shared memory layout of one block (bq queries x group heads = rows).
struct SmemLayout {
  size_t float_offset;  // bytes before the float region
  size_t bytes;
};

MSA_HD inline SmemLayout smem_layout(int bq, int group, int d) {
  SmemLayout l;
  size_t off = sizeof(int64_t) * 2 * static_cast<size_t>(bq) + sizeof(int) * (static_cast<size_t>(bq) + kBK);
  off = (off + 15) / 16 * 16;
  l.float_offset = off;
  const size_t rows = static_cast<size_t>(bq) * static_cast<size_t>(group);
  const size_t floats = rows * d + static_cast<size_t>(kBK) * (d + 4) + static_cast<size_t>(kBK) * d + rows * kBK +
                        3 * rows;
  l.bytes = off + floats * sizeof(float);
  return l;
}

// grid.x = (query tile, kv head), grid.y = key split. Rows r = (query in tile) * group + (head in group).
MSA_KERNEL void MSA_LAUNCH_BOUNDS(kAttnThreads, kMinBlocksPerSm) attention_kernel(AttnParams p) {
  MSA_DYNAMIC_SMEM(smem_raw);
  MSA_SHARED(int64_t, s_lo);
  MSA_SHARED(int64_t, s_hi);
  const int bq = p.bq, d = p.d, group = p.group;
  const SmemLayout lay = smem_layout(bq, group, d);
  int64_t* sB = reinterpret_cast<int64_t*>(smem_raw);  // own-row window of each query, clamped
  int64_t* sE = sB + bq;
  int* sQseg = reinterpret_cast<int*>(sE + bq);
  int* sKseg = sQseg + bq;
  const int r_alloc = bq * group;
  float* sQ = reinterpret_cast<float*>(smem_raw + lay.float_offset);  // [rows][d]
  const int ks = d + 4;  // K row stride: 16-byte rows for d % 4 == 0, conflict-free float4 loads across lanes
  float* sK = sQ + r_alloc * d;                                       // [kBK][ks]
  float* sV = sK + kBK * ks;                                          // [kBK][d]
  float* sS = sV + kBK * d;                                           // [rows][kBK] probabilities of the tile
  float* sM = sS + r_alloc * kBK;                                     // running max per row
  float* sL = sM + r_alloc;                                           // running sum per row
  float* sC = sL + r_alloc;                                           // this tile's rescale factor per row

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t tile = blockIdx.x / p.hkv;
  const int g = static_cast<int>(blockIdx.x % p.hkv);
  const int64_t i0 = tile * bq;
  const int nqt = static_cast<int>(min(static_cast<int64_t>(bq), p.n_q - i0));
  const int rows = nqt * group;
  const int64_t qw = static_cast<int64_t>(p.hq) * d, kvw = static_cast<int64_t>(p.hkv) * d;
  const int gd = group * d;
  const bool use_seg = p.q_seg != nullptr && p.kv_seg != nullptr;

  for (int j = tid; j < nqt; j += kAttnThreads) {
    int64_t b = p.own_begin ? p.own_begin[i0 + j] : 0;
    int64_t e = p.own_end ? p.own_end[i0 + j] : p.n_own;
    if (b < 0) b = 0;
    if (e > p.n_own) e = p.n_own;
    sB[j] = b;
    sE[j] = e;
    sQseg[j] = use_seg ? p.q_seg[i0 + j] : 0;
  }
  for (int e = tid; e < rows * d; e += kAttnThreads) {
    const int ql = e / gd, rem = e - ql * gd;
    sQ[e] = p.q[(i0 + ql) * qw + static_cast<int64_t>(g) * gd + rem];
  }
  for (int r = tid; r < rows; r += kAttnThreads) {
    sM[r] = -INFINITY;
    sL[r] = 0.0f;
  }
  MSA_SYNC();
  if (tid == 0) {
    int64_t lo = INT64_MAX, hi = 0;
    for (int j = 0; j < nqt; ++j) {
      if (sB[j] < sE[j]) {
        lo = min(lo, sB[j]);
        hi = max(hi, sE[j]);
      }
    }
    if (lo >= hi) lo = hi = 0;
    s_lo = lo;
    s_hi = hi;
  }
  MSA_SYNC();
  // Virtual key index vi in [0, nk): the prefix, then own rows [lo, hi) (the union of the tile's windows).
  const int64_t lo = s_lo, hi = s_hi;
  const int64_t nk = p.n_prefix + (hi - lo);
  int64_t chunk = (nk + p.n_splits - 1) / p.n_splits;
  chunk = (chunk + kBK - 1) / kBK * kBK;
  const int64_t v_begin = min(nk, static_cast<int64_t>(blockIdx.y) * chunk);
  const int64_t v_end = min(nk, v_begin + chunk);

  float acc[kMaxAcc];
MSA_UNROLL
  for (int j = 0; j < kMaxAcc; ++j) acc[j] = 0.0f;
  const int n_el = rows * d;
  const int r0 = tid / d, c0 = tid % d;
  const int step_r = kAttnThreads / d, step_c = kAttnThreads % d;
  const bool vec = d % 4 == 0;                 // float4 shared-memory reads of Q and K rows
  const bool pv_fast = vec && step_c == 0;     // d in {4, 8, ..., 256}

  for (int64_t t0 = v_begin; t0 < v_end; t0 += kBK) {
    const int nt = static_cast<int>(min(static_cast<int64_t>(kBK), v_end - t0));
    for (int e = tid; e < kBK * d; e += kAttnThreads) {
      const int kk = e / d, c = e - kk * d;
      float kval = 0.0f, vval = 0.0f;
      if (kk < nt) {
        const int64_t vi = t0 + kk;
        const int64_t kj = vi < p.n_prefix ? vi : p.n_prefix + lo + (vi - p.n_prefix);
        const int64_t src = kj * kvw + static_cast<int64_t>(g) * d + c;
        kval = p.k[src];
        vval = p.v[src];
      }
      sK[kk * ks + c] = kval;
      sV[kk * d + c] = vval;
    }
    if (tid < kBK) {
      int s = 0;
      const int64_t vi = t0 + tid;
      if (use_seg && tid < nt && vi >= p.n_prefix) s = p.kv_seg[lo + (vi - p.n_prefix)];
      sKseg[tid] = s;
    }
    MSA_SYNC();

    // Scores and the online softmax update: one lane per key of the tile; a warp takes 4 rows at a time
    // (r, r + 8, r + 16, r + 24) so each K value read from shared memory serves 4 rows.
    {
      const int kk = lane;
      const int64_t vi = t0 + kk;
      const bool in_tile = kk < nt;
      const bool is_prefix = vi < p.n_prefix;
      const int64_t ro = lo + (vi - p.n_prefix);  // own row index (when not in the prefix)
      const int kseg = sKseg[kk];
      for (int rb = warp; rb < rows; rb += 4 * kWarps) {
        int rr[4];
        bool vis[4];
        float dot[4];
MSA_UNROLL
        for (int m = 0; m < 4; ++m) {
          const int r = rb + m * kWarps;
          const bool valid = r < rows;
          rr[m] = valid ? r : 0;  // invalid rows compute on row 0 and are discarded
          const int ql = rr[m] / group;
          vis[m] = valid && in_tile &&
                   (is_prefix || (ro >= sB[ql] && ro < sE[ql] && (!use_seg || kseg == sQseg[ql])));
          dot[m] = 0.0f;
        }
        const float* kr = sK + kk * ks;
        if (vec) {
          const float4* k4 = reinterpret_cast<const float4*>(kr);
          const float4* q0 = reinterpret_cast<const float4*>(sQ + rr[0] * d);
          const float4* q1 = reinterpret_cast<const float4*>(sQ + rr[1] * d);
          const float4* q2 = reinterpret_cast<const float4*>(sQ + rr[2] * d);
          const float4* q3 = reinterpret_cast<const float4*>(sQ + rr[3] * d);
          for (int c4 = 0; c4 < d / 4; ++c4) {
            const float4 kv = k4[c4];
            const float4 a0 = q0[c4], a1 = q1[c4], a2 = q2[c4], a3 = q3[c4];
            dot[0] = fmaf(a0.w, kv.w, fmaf(a0.z, kv.z, fmaf(a0.y, kv.y, fmaf(a0.x, kv.x, dot[0]))));
            dot[1] = fmaf(a1.w, kv.w, fmaf(a1.z, kv.z, fmaf(a1.y, kv.y, fmaf(a1.x, kv.x, dot[1]))));
            dot[2] = fmaf(a2.w, kv.w, fmaf(a2.z, kv.z, fmaf(a2.y, kv.y, fmaf(a2.x, kv.x, dot[2]))));
            dot[3] = fmaf(a3.w, kv.w, fmaf(a3.z, kv.z, fmaf(a3.y, kv.y, fmaf(a3.x, kv.x, dot[3]))));
          }
        } else {
          for (int c = 0; c < d; ++c) {
            const float kv = kr[c];
MSA_UNROLL
            for (int m = 0; m < 4; ++m) dot[m] = fmaf(sQ[rr[m] * d + c], kv, dot[m]);
          }
        }
MSA_UNROLL
        for (int m = 0; m < 4; ++m) {
          const int r = rb + m * kWarps;
          if (r >= rows) break;  // warp-uniform
          const float s = vis[m] ? dot[m] * p.scale : -INFINITY;
          float mt = s;
          for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, shfl_xor(mt, o));
          const float m_old = sM[r];
          const float m_new = fmaxf(m_old, mt);
          float pr = 0.0f, corr = 1.0f;
          if (m_new != -INFINITY) {
            pr = vis[m] ? expf(s - m_new) : 0.0f;
            corr = expf(m_old - m_new);  // 0 when m_old is -inf
          }
          sS[r * kBK + kk] = pr;
          float ps = pr;
          for (int o = 16; o > 0; o >>= 1) ps += shfl_xor(ps, o);
          MSA_SYNC_WARP();
          if (lane == 0) {
            sM[r] = m_new;
            sL[r] = sL[r] * corr + ps;
            sC[r] = corr;
          }
        }
      }
    }
    MSA_SYNC();

    // acc(row, dim) = acc * corr(row) + sum_k p(row, k) * V(k, dim), keys in order.
    if (pv_fast) {
      // 256 % d == 0: this thread's dimension is the same for all its accumulators, so one V value serves
      // all of them; probabilities are read 4 keys at a time (entries past nt are 0, V rows past nt are 0).
MSA_UNROLL
      for (int j = 0; j < kMaxAcc; ++j) {
        if (tid + j * kAttnThreads < n_el) acc[j] *= sC[r0 + j * step_r];
      }
      for (int kk = 0; kk < nt; kk += 4) {
        const float v0 = sV[kk * d + c0], v1 = sV[(kk + 1) * d + c0];
        const float v2 = sV[(kk + 2) * d + c0], v3 = sV[(kk + 3) * d + c0];
MSA_UNROLL
        for (int j = 0; j < kMaxAcc; ++j) {
          if (tid + j * kAttnThreads < n_el) {
            const float4 p4 = *reinterpret_cast<const float4*>(sS + (r0 + j * step_r) * kBK + kk);
            acc[j] = fmaf(p4.w, v3, fmaf(p4.z, v2, fmaf(p4.y, v1, fmaf(p4.x, v0, acc[j]))));
          }
        }
      }
    } else {
      int r = r0, c = c0;
MSA_UNROLL
      for (int j = 0; j < kMaxAcc; ++j) {
        if (tid + j * kAttnThreads < n_el) {
          const float* sr = sS + r * kBK;
          float a = acc[j] * sC[r];
          for (int kk = 0; kk < nt; ++kk) a = fmaf(sr[kk], sV[kk * d + c], a);
          acc[j] = a;
        }
        r += step_r;
        c += step_c;
        if (c >= d) {
          c -= d;
          ++r;
        }
      }
    }
    MSA_SYNC();
  }

  if (p.n_splits == 1) {
MSA_UNROLL
    for (int j = 0; j < kMaxAcc; ++j) {
      const int e = tid + j * kAttnThreads;
      if (e < n_el) {
        const int r = e / d;
        const float l = sL[r];
        const int ql = e / gd, rem = e - ql * gd;
        p.out[(i0 + ql) * qw + static_cast<int64_t>(g) * gd + rem] = l > 0.0f ? acc[j] / l : 0.0f;
      }
    }
  } else {
    const int64_t n_rows_all = p.n_q * p.hq;
    const int64_t split_base = static_cast<int64_t>(blockIdx.y) * n_rows_all;
MSA_UNROLL
    for (int j = 0; j < kMaxAcc; ++j) {
      const int e = tid + j * kAttnThreads;
      if (e < n_el) {
        const int r = e / d, c = e - r * d;
        const int64_t row = (i0 + r / group) * p.hq + static_cast<int64_t>(g) * group + r % group;
        p.part_o[(split_base + row) * d + c] = acc[j];
      }
    }
    for (int r = tid; r < rows; r += kAttnThreads) {
      const int64_t row = (i0 + r / group) * p.hq + static_cast<int64_t>(g) * group + r % group;
      p.part_m[split_base + row] = sM[r];
      p.part_l[split_base + row] = sL[r];
    }
  }
}

// Merges the per-split softmax states of one (query, head) row per block.
MSA_KERNEL void attention_combine_kernel(const float* __restrict__ part_o, const float* __restrict__ part_m,
                                         const float* __restrict__ part_l, int n_splits, int64_t n_rows_all, int d,
                                         float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  float m = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, part_m[s * n_rows_all + row]);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float val = 0.0f;
    if (m != -INFINITY) {
      float l = 0.0f, o = 0.0f;
      for (int s = 0; s < n_splits; ++s) {
        const float w = expf(part_m[s * n_rows_all + row] - m);
        l += part_l[s * n_rows_all + row] * w;
        o += part_o[(s * n_rows_all + row) * d + c] * w;
      }
      val = l > 0.0f ? o / l : 0.0f;
    }
    out[row * d + c] = val;
  }
}

MSA_KERNEL void mean_pool_kernel(const float* __restrict__ x, int64_t n_rows, int64_t dim, int64_t chunk,
                                 float* __restrict__ out) {
  const int64_t c = blockIdx.x;
  const int64_t r0 = c * chunk;
  const int64_t r1 = min(n_rows, r0 + chunk);
  const float cnt = static_cast<float>(r1 - r0);
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; i < dim;
       i += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    float o = 0.0f;
    for (int64_t r = r0; r < r1; ++r) o += x[r * dim + i];
    out[c * dim + i] = o / cnt;
  }
}


// Launch plan of attention(): validates the sizes (the errors of ops_attention.h) and picks the query tile,
// the key split and the shared memory of the device described by smem_limit (sharedMemPerBlockOptin),
// sm_count (multiProcessorCount) and workspace_bytes (the scratch of the split path).
struct AttnPlan {
  int bq = 1;           // queries per block
  int n_splits = 1;     // key splits (grid.y); > 1: partial states in the workspace + attention_combine_kernel
  int64_t n_blocks = 0;  // grid.x: query tiles x kv heads
  SmemLayout lay{};
  int combine_threads = 0;
};

inline Status plan_attention(const AttentionArgs& a, size_t smem_limit, int sm_count, size_t workspace_bytes,
                             AttnPlan* plan) {
  *plan = AttnPlan();
  if (a.n_q <= 0) return Status::Ok();  // nothing to launch (n_blocks 0)
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0 || a.head_dim <= 0 ||
      a.n_prefix < 0 || a.n_kv < a.n_prefix) {
    return Error(StatusCode::kShape, "cuda attention: bad sizes (heads ", a.n_heads, ", kv heads ", a.n_kv_heads,
                 ", head_dim ", a.head_dim, ", prefix ", a.n_prefix, ", keys ", a.n_kv, ")");
  }
  if (a.q == nullptr || a.out == nullptr || (a.n_kv > 0 && (a.k == nullptr || a.v == nullptr))) {
    return Error(StatusCode::kInvalidArgument, "cuda attention: null device pointer (q, k, v or out)");
  }
  const int64_t group64 = a.n_heads / a.n_kv_heads;
  if (a.head_dim > kMaxHeadDim || group64 * a.head_dim > kMaxAcc * kAttnThreads || a.n_heads > INT_MAX) {
    return Error(StatusCode::kUnsupported, "cuda attention: head_dim ", a.head_dim, " with ", group64,
                 " query heads per kv head (limits: head_dim <= ", kMaxHeadDim, ", group * head_dim <= ",
                 kMaxAcc * kAttnThreads, ")");
  }
  const int d = static_cast<int>(a.head_dim);
  const int group = static_cast<int>(group64);
  // Rows (query, head) per block: rows * head_dim <= 4096 accumulators (32 rows at head_dim 128, at most 64),
  // tiles fit the 99 KiB of shared memory of sm_89.
  const int r_max = std::max(1, std::min(64, kMaxAcc * kAttnThreads / d));
  int64_t bq = std::max(1, r_max / group);
  bq = std::min(bq, a.n_q);
  const int64_t n_tiles = (a.n_q + bq - 1) / bq;
  const int64_t n_blocks = n_tiles * a.n_kv_heads;
  if (n_blocks > INT_MAX) return Error(StatusCode::kUnsupported, "cuda attention: ", a.n_q, " queries is too many");
  const SmemLayout lay = smem_layout(static_cast<int>(bq), group, d);
  if (lay.bytes + 64 > smem_limit) {
    return Error(StatusCode::kUnsupported, "cuda attention: needs ", lay.bytes, " bytes of shared memory, device has ",
                 smem_limit, " (head_dim ", d, ", group ", group, ")");
  }

  // Split the keys over blocks when there are too few blocks to fill the device (decode, short batches).
  int n_splits = 1;
  const int64_t target = 2 * static_cast<int64_t>(std::max(1, sm_count));
  if (n_blocks < target && a.n_kv >= 256) {
    int64_t s = (target + n_blocks - 1) / n_blocks;
    s = std::min<int64_t>(s, a.n_kv / 128);
    s = std::min<int64_t>(s, kMaxSplits);
    const int64_t per_split_floats = a.n_q * a.n_heads * (a.head_dim + 2);
    while (s > 1 && static_cast<size_t>(s * per_split_floats) * sizeof(float) > workspace_bytes) --s;
    n_splits = static_cast<int>(std::max<int64_t>(1, s));
  }
  if (n_splits > 1 && a.n_q * a.n_heads > INT_MAX) {
    return Error(StatusCode::kUnsupported, "cuda attention: too many query rows");
  }
  plan->bq = static_cast<int>(bq);
  plan->n_splits = n_splits;
  plan->n_blocks = n_blocks;
  plan->lay = lay;
  plan->combine_threads = std::min(256, (d + 31) / 32 * 32);
  return Status::Ok();
}

// The kernel arguments of a planned attention (workspace: the split path's scratch).
inline AttnParams attention_params(const AttentionArgs& a, const AttnPlan& plan, float* workspace) {
  AttnParams p;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.out = a.out;
  const int64_t n_rows_all = a.n_q * a.n_heads;
  const int d = static_cast<int>(a.head_dim);
  p.part_o = workspace;
  p.part_m = workspace + static_cast<int64_t>(plan.n_splits) * n_rows_all * d;
  p.part_l = p.part_m + static_cast<int64_t>(plan.n_splits) * n_rows_all;
  p.own_begin = a.own_begin;
  p.own_end = a.own_end;
  p.q_seg = a.q_seg;
  p.kv_seg = a.kv_seg;
  p.n_q = a.n_q;
  p.n_kv = a.n_kv;
  p.n_prefix = a.n_prefix;
  p.n_own = a.n_kv - a.n_prefix;
  p.hq = static_cast<int>(a.n_heads);
  p.hkv = static_cast<int>(a.n_kv_heads);
  p.d = d;
  p.group = static_cast<int>(a.n_heads / a.n_kv_heads);
  p.bq = plan.bq;
  p.n_splits = plan.n_splits;
  p.scale = a.scale;
  return p;
}

// Launch plan of mean_pool(): grid (chunks, gy) of `threads` threads.
struct MeanPoolPlan {
  int64_t n_chunks = 0;
  int64_t gy = 1;
  int threads = 256;
};
inline MeanPoolPlan plan_mean_pool(int64_t n_rows, int64_t dim, int64_t chunk) {
  MeanPoolPlan p;
  p.n_chunks = (n_rows + chunk - 1) / chunk;
  p.gy = std::min<int64_t>((dim + p.threads - 1) / p.threads, 65535);
  return p;
}

}  // namespace MSA_KERNEL_ABI
}  // namespace msa::cuda::kern
