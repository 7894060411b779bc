// Router scoring (spec §5.2) and top-k (§5.3).
//
// score_documents turns the three reductions into one blocked product of "query rows" against the routing
// keys, with the reductions fused per block of chunks:
//
//   head mean (GQA collapse, ARCHITECTURE.md "Tiers and scale"): mean_h q_h·k_{g(h)} = (sum_g Q_g·k_g) / n_heads
//     with Q_g = the sum of the query heads of kv group g. One row per routing token, inner length
//     n_kv_heads*head_dim, one dot product per (token, chunk): n_heads/n_kv_heads times fewer FLOPs than per
//     head. Query mean is linear too, so the token rows are summed first (one row); query last keeps one row.
//   head max: exact per head. One group per kv head; its rows are the (token, head-in-group) pairs, inner
//     length head_dim against that kv head's slice of the key row; the max over heads is taken across groups.
//
// Work unit = a block of kBlockChunks consecutive chunks, always cut at the same boundaries, and the kernels
// guarantee that a (row, chunk) value does not depend on its neighbours (score_kernels.h), so the chunk scores
// are the same bits whatever the thread count or the order blocks run in. Per block only a
// [block chunks x rows] tile exists (24 KiB for MSA-4B head mean with 64 routing tokens, 96 KiB for head max);
// the [tokens x chunks] score matrix never does. Chunk ->
// document reduction is one sequential pass over the per-chunk scores afterwards (O(chunks), negligible next to
// the O(chunks x rows x width) product, and trivially deterministic).
#include "backend/cpu/routing_scan.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <new>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "backend/cpu/score_kernels.h"
#include "memory/page_codec.h"

namespace msa {

namespace {

using scan::kInnerMaxRows;
using scan::kPanelRows;
using scan::ScoreKernels;

// Chunks per work unit: a multiple of every register-tile width (6, 12 chunks for outer; 3, 4, 6, 8 for inner)
// so only the index's last block has edge tiles. 96 chunks x one 256-float slice of keys = 96 KiB, which stays
// in L2 while the outer kernel sweeps it once per panel pair.
constexpr int64_t kBlockChunks = 96;
// Slice of the inner dimension per outer-kernel call: a 16-row panel pair x 256 floats = 16 KiB, kept in L1.
constexpr int64_t kSlice = 256;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// max that propagates NaN from either side (std::max keeps or drops a NaN depending on argument order).
inline float max_nan(float a, float b) { return (b > a || b != b) ? b : a; }

Status check_inputs(const char* fn, const RouterQuery& q, const RoutingIndexView& index,
                    const RouterReductions& red, const std::vector<float>* scores) {
  const int64_t n_documents = index.n_documents;
  if (scores == nullptr) return Error(StatusCode::kInvalidArgument, fn, ": scores is null");
  if (q.q == nullptr) return Error(StatusCode::kInvalidArgument, fn, ": query.q is null");
  if (q.n_tokens < 1) {
    return Error(StatusCode::kInvalidArgument, fn, ": the query has ", q.n_tokens, " routing tokens (need >= 1)");
  }
  // Bounds that keep every size product far from int64 overflow (real models: 32 heads x 128).
  constexpr int64_t kMaxDim = int64_t{1} << 16;
  if (q.n_heads < 1 || q.n_kv_heads < 1 || q.head_dim < 1 || q.n_heads > kMaxDim || q.head_dim > kMaxDim ||
      q.n_tokens > (int64_t{1} << 24)) {
    return Error(StatusCode::kInvalidArgument, fn, ": bad query shape n_tokens ", q.n_tokens, ", n_heads ",
                 q.n_heads, ", n_kv_heads ", q.n_kv_heads, ", head_dim ", q.head_dim);
  }
  if (q.n_heads % q.n_kv_heads != 0) {
    return Error(StatusCode::kInvalidArgument, fn, ": n_heads ", q.n_heads, " is not a multiple of n_kv_heads ",
                 q.n_kv_heads);
  }
  MSA_RETURN_IF_ERROR(check_reductions(red, fn));
  if (n_documents < 0) {
    return Error(StatusCode::kInvalidArgument, fn, ": n_documents ", n_documents, " < 0");
  }
  MSA_RETURN_IF_ERROR(check_routing_view(index, fn, false));
  if (index.n_kv_heads != q.n_kv_heads || index.head_dim != q.head_dim) {
    return Error(StatusCode::kInvalidArgument, fn, ": the routing index has ", index.n_kv_heads, " kv heads of ",
                 index.head_dim, " (", index.n_chunks, " chunks); the query needs ", q.n_kv_heads, " x ", q.head_dim);
  }
  for (int64_t c = 0; c < index.n_chunks; ++c) {
    const int32_t d = index.chunk_doc[c];
    if (d < 0 || d >= n_documents) {
      return Error(StatusCode::kInvalidArgument, fn, ": chunk ", c, " belongs to document ", d,
                   ", outside [0, ", n_documents, ")");
    }
  }
  return Status::Ok();
}

// Chunk -> document (spec §5.2 step 5): max (NaN-propagating) or mean over each document's chunks, in chunk
// order. chunk_doc was validated. A document without chunks has no evidence: -inf.
void reduce_documents(const std::vector<float>& chunk_scores, const RoutingIndexView& index, ChunkReduce red,
                      std::vector<float>* scores) {
  const int64_t n_documents = index.n_documents;
  const size_t n_docs = static_cast<size_t>(n_documents);
  scores->assign(n_docs, kNegInf);
  if (red == ChunkReduce::kMax) {
    for (size_t c = 0; c < chunk_scores.size(); ++c) {
      float& s = (*scores)[static_cast<size_t>(index.chunk_doc[c])];
      s = max_nan(s, chunk_scores[c]);
    }
    return;
  }
  std::vector<float> sum(n_docs, 0.0f);
  std::vector<int64_t> count(n_docs, 0);
  for (size_t c = 0; c < chunk_scores.size(); ++c) {
    const size_t d = static_cast<size_t>(index.chunk_doc[c]);
    sum[d] += chunk_scores[c];
    ++count[d];
  }
  for (size_t d = 0; d < n_docs; ++d) {
    if (count[d] > 0) (*scores)[d] = sum[d] / static_cast<float>(count[d]);
  }
}

const ScoreKernels& pick_score_kernels(CpuIsa isa) {
  if (isa != CpuIsa::kScalar && scan::avx2_score_kernels_supported()) return scan::avx2_score_kernels();
  return scan::scalar_score_kernels();
}

// The query side of one scoring call, rearranged for the kernels.
struct Plan {
  bool per_head = false;       // head max: groups = kv heads, rows = (token, head in group)
  int64_t n_groups = 1;        // kv heads (per_head) or 1
  int64_t len = 0;             // inner length of a group: head_dim (per_head) or n_kv_heads * head_dim
  int64_t width = 0;           // key row stride: n_kv_heads * head_dim
  int64_t n_rows = 0;          // rows per group
  int64_t rows_per_token = 1;  // heads per group (per_head) or 1
  int64_t n_tok = 0;           // per-token scores per chunk after the head reduction
  float head_div = 1.0f;       // collapsed head mean: n_heads
  QueryReduce query = QueryReduce::kMax;
  float query_div = 1.0f;      // collapsed query mean (token rows pre-summed): n_tokens
  bool inner = false;          // few rows: inner-product kernel on row-major rows
  int64_t n_panels = 0;        // outer kernel: panels of kPanelRows rows per group
  int64_t ld_tile = 0;         // tile row stride: n_rows (inner) or n_panels * kPanelRows (outer)
  int64_t group_stride = 0;    // floats of `a` per group
  AlignedVec<float> a;         // inner: [group][row][len]; outer: [group][panel][len][kPanelRows]
};

// Builds the rows of every group as a row-major [n_groups][n_rows][len] matrix, then packs it for the kernel.
void make_plan(const RouterQuery& q, const RouterReductions& red, Plan* plan) {
  const int64_t T = q.n_tokens, H = q.n_heads, G = q.n_kv_heads, D = q.head_dim;
  const int64_t hpg = H / G;
  const int64_t qstride = H * D;
  Plan& p = *plan;
  p.width = G * D;
  p.per_head = red.head == HeadReduce::kMax;
  p.query = red.query;
  // Routing tokens whose rows are scored: all, or only the last (query last).
  const int64_t t_first = red.query == QueryReduce::kLast ? T - 1 : 0;
  const int64_t n_used = T - t_first;

  std::vector<float> rows;
  if (p.per_head) {
    p.n_groups = G;
    p.len = D;
    p.rows_per_token = hpg;
    p.n_tok = n_used;
    p.n_rows = n_used * hpg;
    rows.resize(static_cast<size_t>(G * p.n_rows * D));
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t t = 0; t < n_used; ++t) {
        for (int64_t j = 0; j < hpg; ++j) {
          const float* src = q.q + (t_first + t) * qstride + (g * hpg + j) * D;
          std::copy(src, src + D, rows.begin() + ((g * p.n_rows + t * hpg + j) * D));
        }
      }
    }
  } else {
    // Collapse: row[t][g*D + d] = sum over the heads j of group g (ascending) of q[t][(g*hpg + j)*D + d].
    p.n_groups = 1;
    p.len = G * D;
    p.head_div = static_cast<float>(H);
    const bool presum = red.query == QueryReduce::kMean;  // mean_t is linear: sum the token rows first
    p.n_tok = presum ? 1 : n_used;
    p.n_rows = p.n_tok;
    if (presum) p.query_div = static_cast<float>(T);
    rows.assign(static_cast<size_t>(p.n_rows * p.len), 0.0f);
    std::vector<float> sum(static_cast<size_t>(D));
    for (int64_t t = 0; t < n_used; ++t) {
      float* dst = rows.data() + (presum ? 0 : t) * p.len;
      const float* src = q.q + (t_first + t) * qstride;
      for (int64_t g = 0; g < G; ++g) {
        // d innermost (contiguous, vectorisable); the order of the additions per element is still j ascending.
        const float* head0 = src + g * hpg * D;
        std::copy(head0, head0 + D, sum.begin());
        for (int64_t j = 1; j < hpg; ++j) {
          const float* hj = head0 + j * D;
          for (int64_t d = 0; d < D; ++d) sum[static_cast<size_t>(d)] += hj[d];
        }
        for (int64_t d = 0; d < D; ++d) dst[g * D + d] += sum[static_cast<size_t>(d)];
      }
    }
  }

  p.inner = p.n_rows <= kInnerMaxRows;
  if (p.inner) {
    p.ld_tile = p.n_rows;
    p.group_stride = p.n_rows * p.len;
    p.a = AlignedVec<float>(static_cast<size_t>(p.n_groups * p.group_stride));
    std::copy(rows.begin(), rows.end(), p.a.data());
    return;
  }
  p.n_panels = (p.n_rows + kPanelRows - 1) / kPanelRows;
  p.ld_tile = p.n_panels * kPanelRows;
  p.group_stride = p.n_panels * p.len * kPanelRows;
  p.a = AlignedVec<float>(static_cast<size_t>(p.n_groups * p.group_stride));  // zero-filled: padding rows are 0
  for (int64_t g = 0; g < p.n_groups; ++g) {
    for (int64_t pi = 0; pi < p.n_panels; ++pi) {
      const int64_t r0 = pi * kPanelRows, nr = std::min<int64_t>(kPanelRows, p.n_rows - r0);
      const float* src = rows.data() + (g * p.n_rows + r0) * p.len;
      float* panel = p.a.data() + g * p.group_stride + pi * p.len * kPanelRows;
      for (int64_t w = 0; w < p.len; ++w) {
        for (int64_t i = 0; i < nr; ++i) panel[w * kPanelRows + i] = src[i * p.len + w];
      }
    }
  }
}

// Per-block scratch: the kernels' [chunk][row] tile and the per-token scores after the head reduction.
struct BlockScratch {
  std::vector<float> tile;
  std::vector<float> tok;
  std::vector<float> keys;  // bf16 / int8 indexes: the block's rows dequantised to f32
};

// Scores chunks [c0, c0 + nc) into chunk_scores[c0 ...]; block_keys: those chunks' f32 key rows.
void score_block(const Plan& p, const ScoreKernels& kern, const float* block_keys, int64_t c0, int64_t nc,
                 BlockScratch* s, float* chunk_scores) {
  float* tile = s->tile.data();
  float* tok = s->tok.data();
  const int64_t T = p.n_tok;
  for (int64_t g = 0; g < p.n_groups; ++g) {
    // Keys of this block, offset to the group's slice (kv head g for per-head; the whole row when collapsed).
    const float* kg = block_keys + g * p.len;
    const float* ag = p.a.data() + g * p.group_stride;
    if (p.inner) {
      kern.inner(ag, p.len, p.n_rows, kg, p.width, p.len, nc, tile, p.ld_tile);
    } else {
      for (int64_t w0 = 0; w0 < p.len; w0 += kSlice) {
        const int64_t n = std::min(kSlice, p.len - w0);
        kern.outer(ag + w0 * kPanelRows, p.len * kPanelRows, p.n_panels, kg + w0, p.width, n, nc, tile, p.ld_tile,
                   w0 > 0);
      }
    }
    if (!p.per_head) break;  // one group; reduced below
    // Head max into tok[c][t]: over the heads of this group, then across groups.
    for (int64_t c = 0; c < nc; ++c) {
      const float* row = tile + c * p.ld_tile;
      float* out = tok + c * T;
      for (int64_t t = 0; t < T; ++t) {
        const float* heads = row + t * p.rows_per_token;
        float m = heads[0];
        for (int64_t j = 1; j < p.rows_per_token; ++j) m = max_nan(m, heads[j]);
        out[t] = g == 0 ? m : max_nan(out[t], m);
      }
    }
  }
  if (!p.per_head) {
    // Collapsed head mean: the tile holds the per-token head sums. Dividing by n_heads is monotone under
    // rounding, so the max over tokens of sum/n_heads is exactly (max over tokens of sum)/n_heads: one division
    // per chunk instead of one per (token, chunk). Query mean never gets here with T > 1 (rows pre-summed).
    for (int64_t c = 0; c < nc; ++c) {
      const float* row = tile + c * p.ld_tile;
      float m = row[0];
      for (int64_t t = 1; t < T; ++t) m = max_nan(m, row[t]);
      chunk_scores[c0 + c] = m / p.head_div / p.query_div;
    }
    return;
  }
  // Query reduction of the per-head path.
  for (int64_t c = 0; c < nc; ++c) {
    const float* v = tok + c * T;
    float r;
    if (T == 1) {
      r = v[0];  // query last, or a single routing token
    } else if (p.query == QueryReduce::kMax) {
      r = v[0];
      for (int64_t t = 1; t < T; ++t) r = max_nan(r, v[t]);
    } else {  // kMean (kLast always has T == 1)
      r = v[0];
      for (int64_t t = 1; t < T; ++t) r += v[t];
      r /= static_cast<float>(T);
    }
    chunk_scores[c0 + c] = r;
  }
}

}  // namespace

void decode_index_rows(const RoutingIndexView& index, int64_t c0, int64_t n, float* dst) {
  const int64_t width = index.n_kv_heads * index.head_dim;
  if (index.dtype == PageDType::kF32) {
    std::copy_n(index.keys + c0 * width, n * width, dst);
    return;
  }
  const size_t rb = page_row_bytes(index.dtype, width);
  const float* sc = index.dtype == PageDType::kInt8 ? index.scales + c0 * index.n_kv_heads : nullptr;
  decode_rows(index.dtype, index.packed + static_cast<size_t>(c0) * rb, sc, n, index.n_kv_heads, index.head_dim, dst);
}

Status score_documents(const RouterQuery& query, const RoutingIndexView& index, const RouterReductions& red,
                       std::vector<float>* scores, const ScanOptions& options) {
  MSA_RETURN_IF_ERROR(check_inputs("score_documents", query, index, red, scores));
  try {
    Plan plan;
    make_plan(query, red, &plan);
    const ScoreKernels& kern = pick_score_kernels(options.isa);
    ThreadPool& pool = options.pool ? *options.pool : ThreadPool::global();

    const int64_t n_chunks = index.n_chunks;
    std::vector<float> chunk_scores(static_cast<size_t>(n_chunks));
    const int64_t n_blocks = (n_chunks + kBlockChunks - 1) / kBlockChunks;
    std::atomic<bool> oom{false};
    const bool f32 = index.dtype == PageDType::kF32;
    const float* keys = index.keys;
    pool.parallel_for(n_blocks, 1, [&](int64_t b0, int64_t b1) {
      try {
        BlockScratch s;
        s.tile.resize(static_cast<size_t>(kBlockChunks * plan.ld_tile));
        if (plan.per_head) s.tok.resize(static_cast<size_t>(kBlockChunks * plan.n_tok));
        if (!f32) s.keys.resize(static_cast<size_t>(kBlockChunks * plan.width));
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t c0 = b * kBlockChunks;
          const int64_t nc = std::min(kBlockChunks, n_chunks - c0);
          const float* bk = keys + c0 * plan.width;
          if (!f32) {
            // Dequantise just this block (exact for bf16; q * scale for int8): a pure function of the stored
            // bytes, so scores stay bitwise independent of threads and identical after a save/open round trip.
            decode_index_rows(index, c0, nc, s.keys.data());
            bk = s.keys.data();
          }
          score_block(plan, kern, bk, c0, nc, &s, chunk_scores.data());
        }
      } catch (const std::bad_alloc&) {
        oom.store(true);  // parallel_for's function must not throw
      }
    });
    if (oom.load()) return Error(StatusCode::kOutOfMemory, "score_documents: out of memory for block scratch");
    reduce_documents(chunk_scores, index, red.chunk, scores);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "score_documents: out of memory");
  }
  return Status::Ok();
}

Status score_documents_per_head(const RouterQuery& query, const RoutingIndexView& index, const RouterReductions& red,
                                std::vector<float>* scores) {
  MSA_RETURN_IF_ERROR(check_inputs("score_documents_per_head", query, index, red, scores));
  const int64_t T = query.n_tokens, H = query.n_heads, D = query.head_dim;
  const int64_t hpg = H / query.n_kv_heads;
  const int64_t width = query.n_kv_heads * D;
  const int64_t t_first = red.query == QueryReduce::kLast ? T - 1 : 0;
  try {
    std::vector<float> chunk_scores(static_cast<size_t>(index.n_chunks));
    std::vector<float> row(static_cast<size_t>(width));
    for (int64_t c = 0; c < index.n_chunks; ++c) {
      decode_index_rows(index, c, 1, row.data());
      const float* kc = row.data();
      float qs = 0.0f;  // query reduction over the used tokens
      for (int64_t t = t_first; t < T; ++t) {
        float hs = 0.0f;  // head reduction over the n_heads query heads
        for (int64_t h = 0; h < H; ++h) {
          const float* qh = query.q + t * H * D + h * D;
          const float* kh = kc + (h / hpg) * D;  // kv head of query head h
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += qh[d] * kh[d];
          if (red.head == HeadReduce::kMean) {
            hs += dot;
          } else {
            hs = h == 0 ? dot : max_nan(hs, dot);
          }
        }
        if (red.head == HeadReduce::kMean) hs /= static_cast<float>(H);
        if (red.query == QueryReduce::kMax) {
          qs = t == t_first ? hs : max_nan(qs, hs);
        } else {
          qs += hs;  // mean: summed here, divided below; last: the single used token
        }
      }
      if (red.query == QueryReduce::kMean) qs /= static_cast<float>(T);
      chunk_scores[static_cast<size_t>(c)] = qs;
    }
    reduce_documents(chunk_scores, index, red.chunk, scores);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "score_documents_per_head: out of memory");
  }
  return Status::Ok();
}

Status select_top_k(const std::vector<float>& scores, const RoutingIndexView& bank, int64_t k,
                    std::vector<ScoredDocument>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "select_top_k: out is null");
  if (k <= 0) return Error(StatusCode::kInvalidArgument, "select_top_k: k = ", k, ", must be >= 1");
  if (static_cast<int64_t>(scores.size()) != bank.n_documents) {
    return Error(StatusCode::kInvalidArgument, "select_top_k: ", scores.size(), " scores for a bank of ",
                 bank.n_documents, " documents");
  }
  if (bank.n_documents > 0 && bank.doc_ids == nullptr) {
    return Error(StatusCode::kInvalidArgument, "select_top_k: the index has no document ids");
  }
  int64_t n_live = bank.n_documents;
  if (bank.removed) n_live -= std::count_if(bank.removed, bank.removed + bank.n_documents, [](uint8_t r) { return r != 0; });
  // "a ranks before b": numbers before NaN, higher score first, then lower id. A strict weak order (NaNs form
  // one class, ordered among themselves by id; ids are unique in a bank), so the result is fully determined.
  auto before = [&](int64_t a, int64_t b) {
    const float sa = scores[static_cast<size_t>(a)], sb = scores[static_cast<size_t>(b)];
    const bool na = std::isnan(sa), nb = std::isnan(sb);
    if (na != nb) return nb;
    if (!na && sa != sb) return sa > sb;
    return bank.doc_ids[a] < bank.doc_ids[b];
  };
  const int64_t n = static_cast<int64_t>(scores.size());
  const size_t kk = static_cast<size_t>(std::min(k, n_live));
  try {
    // Bounded heap of the best kk so far; its top is the worst of them (O(n log k), no O(n) index array).
    std::vector<int64_t> heap;
    heap.reserve(kk);
    for (int64_t i = 0; i < n && kk > 0; ++i) {
      if (bank.removed && bank.removed[i]) continue;  // tombstoned: never returned
      if (heap.size() < kk) {
        heap.push_back(i);
        std::push_heap(heap.begin(), heap.end(), before);
      } else if (before(i, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), before);
        heap.back() = i;
        std::push_heap(heap.begin(), heap.end(), before);
      }
    }
    std::sort_heap(heap.begin(), heap.end(), before);  // best first
    out->clear();
    out->reserve(kk);
    for (int64_t i : heap) {
      ScoredDocument sd;
      sd.index = i;
      sd.id = bank.doc_ids[i];
      sd.score = scores[static_cast<size_t>(i)];
      out->push_back(sd);
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "select_top_k: out of memory");
  }
  return Status::Ok();
}

void l2_normalize_heads(float* x, int64_t n_vectors, int64_t dim) {
  for (int64_t r = 0; r < n_vectors; ++r) {
    float* v = x + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(v[i]) * static_cast<double>(v[i]);
    const float norm = static_cast<float>(std::sqrt(ss));
    const float denom = std::max(norm, 1e-12f);
    for (int64_t i = 0; i < dim; ++i) v[i] = v[i] / denom;
  }
}

}  // namespace msa
