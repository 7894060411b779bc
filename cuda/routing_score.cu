// Routing scores on the GPU (routing_score.h).
#include "routing_score.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda_status.h"

namespace msa::cuda {

namespace {

constexpr int kThreads = 256;      // threads per scan block
constexpr int kSliceBytes = 128;   // key bytes of one (chunk, kv head) slice staged per step
constexpr int kMaxRowLanes = 4;    // threads sharing one chunk (each with its own query rows)

__device__ __forceinline__ float max_nan(float a, float b) { return (b > a || b != b) ? b : a; }

// Four consecutive key elements (16-byte-aligned smem offsets for f32, 8 for bf16, 4 for int8) as f32.
template <typename KT>
struct KeyVec;
template <>
struct KeyVec<int8_t> {
  static __device__ __forceinline__ float4 load(const unsigned char* p) {
    const char4 v = *reinterpret_cast<const char4*>(p);
    return make_float4(static_cast<float>(v.x), static_cast<float>(v.y), static_cast<float>(v.z),
                       static_cast<float>(v.w));
  }
};
template <>
struct KeyVec<uint16_t> {  // bf16: widening is exact
  static __device__ __forceinline__ float4 load(const unsigned char* p) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    return make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u), __uint_as_float(v.y << 16),
                       __uint_as_float(v.y & 0xffff0000u));
  }
};
template <>
struct KeyVec<float> {
  static __device__ __forceinline__ float4 load(const unsigned char* p) { return *reinterpret_cast<const float4*>(p); }
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
  static __host__ __device__ int key_bytes(int bc) { return (bc * kPitch + 15) / 16 * 16; }
  static __host__ __device__ int row_tile_bytes(int rows_per_pass) { return rows_per_pass * kSe * 4; }
  static __host__ __device__ int total(int bc, int rows_per_pass) {
    return key_bytes(bc) + row_tile_bytes(rows_per_pass) + rows_per_pass * bc * 4;
  }
};

template <typename KT, int RPT>
__global__ void __launch_bounds__(kThreads) scan_kernel(ScanParams p) {
  using L = ScanLayout<KT>;
  constexpr int kEb = L::kEb, kSe = L::kSe, kPitch = L::kPitch;
  extern __shared__ __align__(16) unsigned char smem[];
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
#pragma unroll
    for (int i = 0; i < RPT; ++i) hstate[i] = 0.0f;
    for (int g = 0; g < p.n_kv; ++g) {
      float acc[RPT];
#pragma unroll
      for (int i = 0; i < RPT; ++i) acc[i] = 0.0f;
      for (int s0 = 0; s0 < p.head_dim; s0 += kSe) {
        const int len = p.head_dim - s0 < kSe ? p.head_dim - s0 : kSe;
        const int len4 = (len + 3) & ~3;
        const int lbytes = len * kEb;
        const size_t col0 = (static_cast<size_t>(g) * p.head_dim + s0) * kEb;
        __syncthreads();  // the previous slice's readers are done
        // Keys of the tile: bc rows of lbytes, zero past the valid chunks and in [len, len4).
        if (p.load_bytes == 16) {
          const int upr = lbytes / 16;
          for (int u = tid; u < bc * upr; u += kThreads) {
            const int row = u / upr, col = u % upr;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (row < n_tile) {
              v = *reinterpret_cast<const uint4*>(p.keys + static_cast<size_t>(c0 + row) * row_bytes + col0 + col * 16);
            }
            uint32_t* d = reinterpret_cast<uint32_t*>(ktile + row * kPitch + col * 16);
            d[0] = v.x;
            d[1] = v.y;
            d[2] = v.z;
            d[3] = v.w;
          }
        } else if (p.load_bytes == 4) {
          const int upr = lbytes / 4;
          for (int u = tid; u < bc * upr; u += kThreads) {
            const int row = u / upr, col = u % upr;
            uint32_t v = 0;
            if (row < n_tile) {
              v = *reinterpret_cast<const uint32_t*>(p.keys + static_cast<size_t>(c0 + row) * row_bytes + col0 + col * 4);
            }
            *reinterpret_cast<uint32_t*>(ktile + row * kPitch + col * 4) = v;
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
        __syncthreads();
        const unsigned char* krow = ktile + ci * kPitch;
        const float* rbase = rtile + ri * RPT * kSe;
        for (int e = 0; e < len4; e += 4) {
          const float4 k = KeyVec<KT>::load(krow + e * kEb);
#pragma unroll
          for (int i = 0; i < RPT; ++i) {
            const float4 a = *reinterpret_cast<const float4*>(rbase + i * kSe + e);
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
#pragma unroll
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
#pragma unroll
    for (int i = 0; i < RPT; ++i) rowval[(ri * RPT + i) * bc + ci] = hstate[i];
    __syncthreads();
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
__global__ void prepare_rows_kernel(const float* q, float* rows, int64_t n_out, int n_heads, int n_kv,
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
    for (int j = 1; j < hpg; ++j) s = __fadd_rn(s, src[static_cast<int64_t>(j) * head_dim]);
    return s;
  };
  if (mode == 0) {
    rows[idx] = group_sum(t_first + r);
    return;
  }
  float acc = 0.0f;
  for (int t = 0; t < n_tokens; ++t) acc = __fadd_rn(acc, group_sum(t));
  rows[idx] = acc;
}

__global__ void reduce_documents_kernel(const float* chunk_scores, const int32_t* offsets, const int32_t* chunks,
                                        int n_docs, int mean, float* out) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= n_docs) return;
  const int b = offsets[d], e = offsets[d + 1];
  float s = -INFINITY;
  if (e > b) {
    if (mean) {
      float sum = 0.0f;
      for (int i = b; i < e; ++i) sum = __fadd_rn(sum, chunk_scores[chunks[i]]);
      s = __fdiv_rn(sum, static_cast<float>(e - b));
    } else {
      for (int i = b; i < e; ++i) s = max_nan(s, chunk_scores[chunks[i]]);
    }
  }
  out[d] = s;
}

template <typename KT>
Status launch_scan(const ScanParams& p0, int rpt, cudaStream_t stream) {
  ScanParams p = p0;
  using L = ScanLayout<KT>;
  const int bc = kThreads / p.row_lanes;
  const int rows_per_pass = p.row_lanes * rpt;
  const int smem = L::total(bc, rows_per_pass);
  const int64_t blocks = (p.n_chunks + bc - 1) / bc;
  if (blocks > std::numeric_limits<int32_t>::max()) {
    return Error(StatusCode::kInvalidArgument, "routing scan: ", p.n_chunks, " chunks is beyond the grid limit");
  }
  if (rpt == 1) {
    scan_kernel<KT, 1><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(p);
  } else {
    scan_kernel<KT, 8><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(p);
  }
  return cuda_status(cudaGetLastError(), "routing scan kernel launch");
}

}  // namespace

Status RoutingScorer::create(CudaResources* res, std::unique_ptr<RoutingScorer>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "RoutingScorer::create: out is null");
  out->reset();
  if (res == nullptr) return Error(StatusCode::kInvalidArgument, "RoutingScorer::create: res is null");
  std::unique_ptr<RoutingScorer> r(new RoutingScorer());
  r->res_ = res;
  *out = std::move(r);
  return Status::Ok();
}

Status RoutingScorer::score(const DeviceRouterQuery& q, const DeviceRoutingIndex& index,
                            const RouterReductions& red) {
  const char* fn = "RoutingScorer::score";
  if (q.q == nullptr) return Error(StatusCode::kInvalidArgument, fn, ": query.q is null");
  if (q.n_tokens < 1 || q.n_tokens > (int64_t{1} << 24)) {
    return Error(StatusCode::kInvalidArgument, fn, ": the query has ", q.n_tokens, " routing tokens (need 1..2^24)");
  }
  if (q.n_heads < 1 || q.n_kv_heads < 1 || q.head_dim < 1 || q.n_heads > (int64_t{1} << 16) ||
      q.n_heads % q.n_kv_heads != 0) {
    return Error(StatusCode::kInvalidArgument, fn, ": bad query shape n_heads ", q.n_heads, ", n_kv_heads ",
                 q.n_kv_heads, " (n_heads must be a positive multiple of n_kv_heads)");
  }
  if (q.n_kv_heads != index.n_kv_heads() || q.head_dim != index.head_dim()) {
    return Error(StatusCode::kInvalidArgument, fn, ": query n_kv_heads ", q.n_kv_heads, " x head_dim ", q.head_dim,
                 " does not match the index (", index.n_kv_heads(), " x ", index.head_dim(), ")");
  }
  if (red.head != HeadReduce::kMean && red.head != HeadReduce::kMax) {
    return Error(StatusCode::kInvalidArgument, fn, ": head reduction ", static_cast<int>(red.head), " unknown");
  }
  if (red.query != QueryReduce::kMax && red.query != QueryReduce::kMean && red.query != QueryReduce::kLast) {
    return Error(StatusCode::kInvalidArgument, fn, ": query reduction ", static_cast<int>(red.query), " unknown");
  }
  if (red.chunk != ChunkReduce::kMax && red.chunk != ChunkReduce::kMean) {
    return Error(StatusCode::kInvalidArgument, fn, ": chunk reduction ", static_cast<int>(red.chunk), " unknown");
  }
  if (index.resources() != res_) {
    return Error(StatusCode::kInvalidArgument, fn, ": the index belongs to another CudaResources");
  }
  MSA_RETURN_IF_ERROR(res_->make_current());
  cudaStream_t stream = res_->stream();

  const int64_t T = q.n_tokens, H = q.n_heads, G = q.n_kv_heads, D = q.head_dim;
  const int64_t hpg = H / G;
  const int64_t width = G * D;
  const bool head_max = red.head == HeadReduce::kMax;
  const int64_t t_first = red.query == QueryReduce::kLast ? T - 1 : 0;
  const int64_t n_used = T - t_first;
  int mode;
  int64_t n_rows;
  if (head_max) {
    mode = 2;
    n_rows = n_used * hpg;
  } else if (red.query == QueryReduce::kMean) {
    mode = 1;
    n_rows = 1;
  } else {
    mode = 0;
    n_rows = n_used;
  }
  const int64_t n_rows_floats = n_rows * width;
  if (T * H * D > std::numeric_limits<int32_t>::max() || n_rows_floats > std::numeric_limits<int32_t>::max()) {
    return Error(StatusCode::kInvalidArgument, fn, ": ", n_rows, " query rows of width ", width,
                 " exceed the 2^31-float limit of the device router");
  }

  const float* dq = q.q;
  if (!q.on_device) {
    MSA_RETURN_IF_ERROR(q_.reserve(static_cast<size_t>(T * H * D) * sizeof(float)));
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(q_.data(), q.q, static_cast<size_t>(T * H * D) * sizeof(float),
                                             cudaMemcpyHostToDevice, stream));
    dq = q_.as<float>();
  }
  const int64_t n_chunks = index.n_chunks();
  const int64_t n_docs = index.n_documents();
  MSA_RETURN_IF_ERROR(rows_.reserve(static_cast<size_t>(n_rows_floats) * sizeof(float)));
  MSA_RETURN_IF_ERROR(chunk_scores_.reserve(static_cast<size_t>(n_chunks > 0 ? n_chunks : 1) * sizeof(float)));
  MSA_RETURN_IF_ERROR(doc_scores_.reserve(static_cast<size_t>(n_docs > 0 ? n_docs : 1) * sizeof(float)));
  n_chunks_ = n_chunks;
  n_documents_ = n_docs;

  {
    const int threads = 256;
    const int64_t n_out = mode == 1 ? width : n_rows_floats;
    const int64_t blocks = (n_out + threads - 1) / threads;
    prepare_rows_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        dq, rows_.as<float>(), n_out, static_cast<int>(H), static_cast<int>(G), static_cast<int>(D),
        static_cast<int>(t_first), static_cast<int>(T), mode);
    MSA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "routing prepare_rows kernel launch"));
  }

  if (n_chunks > 0) {
    ScanParams p{};
    p.keys = static_cast<const unsigned char*>(index.keys());
    p.scales = index.dtype() == PageDType::kInt8 ? index.scales() : nullptr;
    p.rows = rows_.as<float>();
    p.chunk_scores = chunk_scores_.as<float>();
    p.n_chunks = n_chunks;
    p.n_kv = static_cast<int>(G);
    p.head_dim = static_cast<int>(D);
    p.width = static_cast<int>(width);
    p.n_rows = static_cast<int>(n_rows);
    p.rows_per_token = head_max ? static_cast<int>(hpg) : 1;
    p.head_max = head_max ? 1 : 0;
    p.query = static_cast<int>(red.query);
    p.head_div = static_cast<float>(H);
    p.query_div = mode == 1 ? static_cast<float>(T) : 1.0f;
    p.token_div = static_cast<float>(T);
    const int rpt = n_rows == 1 ? 1 : 8;
    p.row_lanes = n_rows <= 8 ? 1 : (n_rows <= 16 ? 2 : kMaxRowLanes);
    const size_t eb = page_elem_bytes(index.dtype());
    const size_t head_bytes = static_cast<size_t>(D) * eb;
    p.load_bytes = head_bytes % 16 == 0 ? 16 : (head_bytes % 4 == 0 ? 4 : 1);
    if (index.dtype() == PageDType::kInt8) {
      MSA_RETURN_IF_ERROR(launch_scan<int8_t>(p, rpt, stream));
    } else if (index.dtype() == PageDType::kBF16) {
      MSA_RETURN_IF_ERROR(launch_scan<uint16_t>(p, rpt, stream));
    } else {
      MSA_RETURN_IF_ERROR(launch_scan<float>(p, rpt, stream));
    }
  }
  if (n_docs > 0) {
    const int threads = 256;
    const int64_t blocks = (n_docs + threads - 1) / threads;
    reduce_documents_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        chunk_scores_.as<float>(), index.doc_offsets(), index.doc_chunks(), static_cast<int>(n_docs),
        red.chunk == ChunkReduce::kMean ? 1 : 0, doc_scores_.as<float>());
    MSA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "routing reduce_documents kernel launch"));
  }
  return Status::Ok();
}

Status RoutingScorer::download(std::vector<float>* scores) const {
  if (scores == nullptr) return Error(StatusCode::kInvalidArgument, "RoutingScorer::download: scores is null");
  MSA_RETURN_IF_ERROR(res_->make_current());
  try {
    scores->assign(static_cast<size_t>(n_documents_), 0.0f);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "RoutingScorer::download: out of host memory");
  }
  if (n_documents_ > 0) {
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scores->data(), doc_scores_.data(),
                                             static_cast<size_t>(n_documents_) * sizeof(float),
                                             cudaMemcpyDeviceToHost, res_->stream()));
  }
  return res_->synchronize();
}

}  // namespace msa::cuda
