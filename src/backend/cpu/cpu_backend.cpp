#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/routing_scan.h"
#include "core/thread_pool.h"

namespace msa {

namespace {

// Per-thread scratch that grows and is never zeroed (unlike AlignedVec), 64-byte aligned. Slots keep the
// buffers of one call apart: the calling thread holds the gemv input in one slot while, as a member of the
// pool, it also uses the gemm tile slot.
enum ScratchSlot { kSlotGemvX = 0, kSlotGemmTile = 1, kSlotCount = 2 };

struct ScratchBuffers {
  struct Slot {
    float* p = nullptr;
    size_t cap = 0;
  };
  Slot slots[kSlotCount];
  ~ScratchBuffers() {
    for (Slot& s : slots) std::free(s.p);
  }
  float* get(ScratchSlot slot, size_t n) {
    Slot& s = slots[slot];
    if (n > s.cap) {
      std::free(s.p);
      s.p = nullptr;
      s.cap = 0;
      const size_t bytes = (std::max<size_t>(n, 16) * sizeof(float) + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      s.p = static_cast<float*>(p);
      s.cap = bytes / sizeof(float);
    }
    return s.p;
  }
};

float* thread_scratch(ScratchSlot slot, size_t n) {
  thread_local ScratchBuffers buffers;
  return buffers.get(slot, n);
}

// Number of items per parallel chunk so that one chunk holds at least `min_work` units of work.
int64_t grain_for(int64_t work_per_item, int64_t min_work) {
  return std::max<int64_t>(1, min_work / std::max<int64_t>(1, work_per_item));
}

}  // namespace

bool CpuBackend::cpu_has_avx2() { return cpu::cpu_has_avx2(); }

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : pool_(options.pool ? options.pool : &ThreadPool::global()) {
  const bool avx2 = options.isa != CpuIsa::kScalar && cpu::cpu_has_avx2();
  isa_ = avx2 ? CpuIsa::kAvx2 : CpuIsa::kScalar;
  kernels_ = avx2 ? &cpu::avx2_kernels() : &cpu::scalar_kernels();
}

const char* CpuBackend::name() const { return isa_ == CpuIsa::kAvx2 ? "cpu-avx2" : "cpu-scalar"; }

Status CpuBackend::matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) {
  MSA_RETURN_IF_ERROR(check_weight(w, 2, "matmul"));
  if (n_rows <= 0) return Error(StatusCode::kShape, "matmul: n_rows must be > 0, got ", n_rows);
  const int64_t n_out = w.dim(0);
  const int64_t k = w.dim(1);
  if (n_out <= 0 || k <= 0) return Error(StatusCode::kShape, "matmul: empty weight ", shape_to_string(w.shape));
  const cpu::Kernels& kr = *kernels_;
  const DType dt = w.dtype;
  const void* wd = w.data;

  if (n_rows <= cpu::kGemvMaxRows) {
    // GEMV over groups of 4 output rows (the kernel's row blocking); ~256 KiB of weights per chunk at least.
    float* xp = nullptr;
    try {
      xp = thread_scratch(kSlotGemvX, static_cast<size_t>(n_rows * k));
    } catch (const std::bad_alloc&) {
      return Error(StatusCode::kOutOfMemory, "matmul: no memory for ", n_rows * k, " inputs");
    }
    for (int64_t r = 0; r < n_rows; ++r) kr.gemv_prepare(dt, x + r * k, k, xp + r * k);
    const int64_t n_groups = (n_out + 3) / 4;
    const int64_t bytes_per_group = 4 * k * static_cast<int64_t>(dtype_size(dt));
    pool_->parallel_for(n_groups, grain_for(bytes_per_group, int64_t{1} << 18), [&](int64_t b, int64_t e) {
      kr.gemv(dt, wd, k, xp, n_rows, y, n_out, 4 * b, std::min(n_out, 4 * e));
    });
    return Status::Ok();
  }

  // GEMM over blocks of kGemmBlockRows output rows; at least ~1M multiply-adds per chunk.
  const int64_t block = cpu::kGemmBlockRows;
  const int64_t n_blocks = (n_out + block - 1) / block;
  const size_t scratch = kr.gemm_scratch(k);
  std::atomic<bool> oom{false};
  pool_->parallel_for(n_blocks, grain_for(n_rows * k * block, int64_t{1} << 20), [&](int64_t b, int64_t e) {
    float* tile = nullptr;
    try {
      tile = thread_scratch(kSlotGemmTile, scratch);
    } catch (const std::bad_alloc&) {
      oom = true;
      return;
    }
    kr.gemm(dt, wd, k, x, n_rows, y, n_out, b * block, std::min(n_out, e * block), tile);
  });
  if (oom) return Error(StatusCode::kOutOfMemory, "matmul: no memory for a ", scratch * 4, "-byte tile");
  return Status::Ok();
}

Status CpuBackend::rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                           float* y) {
  MSA_RETURN_IF_ERROR(check_weight(weight, 1, "rmsnorm"));
  if (weight.dim(0) != dim || dim <= 0) {
    return Error(StatusCode::kShape, "rmsnorm: weight ", shape_to_string(weight.shape), " for rows of ", dim);
  }
  if (n_rows <= 0) return Status::Ok();
  std::vector<float> wf(static_cast<size_t>(dim));
  cpu::to_f32(weight.dtype, weight.data, wf.data(), dim);
  pool_->parallel_for(n_rows, grain_for(dim, 1 << 16), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      // Sum of squares in double: as close to the exact value as torch's f32 cascade sum gets, or closer.
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * static_cast<double>(xr[i]);
      const float var = static_cast<float>(ss / static_cast<double>(dim));
      const float inv = 1.0f / std::sqrt(var + eps);
      for (int64_t i = 0; i < dim; ++i) yr[i] = wf[static_cast<size_t>(i)] * (xr[i] * inv);
    }
  });
  return Status::Ok();
}

void CpuBackend::grow_rope_table(int64_t head_dim, double theta, int64_t n_positions) {
  std::unique_lock<std::shared_mutex> lock(rope_mu_);
  std::unique_ptr<RopeTable>& t = rope_[std::make_pair(head_dim, theta)];
  if (t && t->n >= n_positions) return;  // another thread grew it first
  // Grow to the next power of two (at least 64 positions) so that decoding does not rebuild it per token.
  int64_t n = 64;
  while (n < n_positions) n *= 2;
  const int64_t half = head_dim / 2;
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  auto grown = std::make_unique<RopeTable>();
  grown->n = n;
  grown->cos.resize(static_cast<size_t>(n * half));
  grown->sin.resize(static_cast<size_t>(n * half));
  compute_rope_table(pos.data(), n, head_dim, theta, grown->cos.data(), grown->sin.data());
  t = std::move(grown);  // under the unique lock: rope() reads a table only under the shared lock
}

Status CpuBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                        double theta) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return Error(StatusCode::kInvalidArgument, "rope: head_dim ", head_dim, " must be even and > 0");
  }
  if (n_tokens <= 0) return Status::Ok();
  const int64_t half = head_dim / 2;
  int32_t max_pos = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (positions[t] < 0) return Error(StatusCode::kInvalidArgument, "rope: position ", positions[t], " < 0");
    max_pos = std::max(max_pos, positions[t]);
  }
  if (max_pos >= kMaxRopeTable) {
    // Far positions: a table of just this call's tokens (row t for token t) instead of growing the shared one.
    std::vector<float> own_cos(static_cast<size_t>(n_tokens * half)), own_sin(own_cos.size());
    compute_rope_table(positions, n_tokens, head_dim, theta, own_cos.data(), own_sin.data());
    std::vector<int32_t> rows(static_cast<size_t>(n_tokens));
    for (int64_t t = 0; t < n_tokens; ++t) rows[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    rope_apply(x, n_tokens, n_heads, head_dim, rows.data(), own_cos.data(), own_sin.data());
    return Status::Ok();
  }
  const auto key = std::make_pair(head_dim, theta);
  for (;;) {  // at most twice: tables only grow
    {
      std::shared_lock<std::shared_mutex> lock(rope_mu_);
      auto it = rope_.find(key);
      if (it != rope_.end() && it->second->n > max_pos) {
        rope_apply(x, n_tokens, n_heads, head_dim, positions, it->second->cos.data(), it->second->sin.data());
        return Status::Ok();
      }
    }
    grow_rope_table(head_dim, theta, int64_t{max_pos} + 1);
  }
}

void CpuBackend::rope_apply(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
                            const float* cos_t, const float* sin_t) {
  const int64_t half = head_dim / 2;
  pool_->parallel_for(n_tokens, grain_for(n_heads * head_dim, 1 << 16), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* c = cos_t + static_cast<int64_t>(positions[t]) * half;
      const float* s = sin_t + static_cast<int64_t>(positions[t]) * half;
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float x0 = v[i];
          const float x1 = v[i + half];
          // Same operations as transformers' q * cos + rotate_half(q) * sin.
          v[i] = x0 * c[i] + (-x1) * s[i];
          v[i + half] = x1 * c[i] + x0 * s[i];
        }
      }
    }
  });
}

void CpuBackend::swiglu(const float* gate, const float* up, float* out, int64_t n) {
  pool_->parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void CpuBackend::add(const float* a, const float* b, float* out, int64_t n) {
  pool_->parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
  });
}

void CpuBackend::scale(float* x, float s, int64_t n) {
  pool_->parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] *= s;
  });
}

Status CpuBackend::embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) {
  MSA_RETURN_IF_ERROR(check_weight(table, 2, "embedding"));
  const int64_t vocab = table.dim(0);
  const int64_t dim = table.dim(1);
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return Error(StatusCode::kInvalidArgument, "embedding: token id ", ids[t], " at index ", t,
                   " outside [0, ", vocab, ")");
    }
  }
  pool_->parallel_for(n, grain_for(dim, 1 << 16), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) cpu::to_f32(table.dtype, table.row_bytes(ids[t]), out + t * dim, dim);
  });
  return Status::Ok();
}

Status CpuBackend::gather_rows(const float* src, int64_t n_src, int64_t width, const int32_t* rows, int64_t n,
                               float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= n_src) {
      return Error(StatusCode::kInvalidArgument, "gather_rows: row ", rows[i], " at index ", i, " outside [0, ", n_src,
                   ")");
    }
  }
  pool_->parallel_for(n, grain_for(width, 1 << 16), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::copy_n(src + static_cast<int64_t>(rows[i]) * width, width, dst + i * width);
  });
  return Status::Ok();
}

Status CpuBackend::attention(const AttentionArgs& a) {
  if (a.n_q <= 0) return Status::Ok();
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0 || a.head_dim <= 0 ||
      a.n_prefix < 0 || a.n_kv < a.n_prefix) {
    return Error(StatusCode::kShape, "attention: bad sizes (heads ", a.n_heads, ", kv heads ", a.n_kv_heads,
                 ", head_dim ", a.head_dim, ", prefix ", a.n_prefix, ", keys ", a.n_kv, ")");
  }
  const int64_t hq = a.n_heads;
  const int64_t hkv = a.n_kv_heads;
  const int64_t d = a.head_dim;
  const int64_t group = hq / hkv;
  const int64_t qw = hq * d;
  const int64_t kvw = hkv * d;
  const int64_t n_own = a.n_kv - a.n_prefix;
  const bool use_seg = a.q_seg != nullptr && a.kv_seg != nullptr;
  const cpu::Kernels& kr = *kernels_;
  const int64_t n_tasks = a.n_q * hkv;

  // One task = one query row and one kv head with its `group` query heads, so every K/V row read serves
  // all of them.
  std::atomic<bool> oom{false};
  pool_->parallel_for(n_tasks, grain_for(a.n_kv * group * d, 1 << 16), [&](int64_t tb, int64_t te) {
    thread_local std::vector<int64_t> keys;
    thread_local std::vector<float> scores;
    try {
      keys.reserve(static_cast<size_t>(a.n_kv));
      scores.reserve(static_cast<size_t>(a.n_kv * group));
    } catch (const std::bad_alloc&) {
      oom = true;
      return;
    }
    for (int64_t task = tb; task < te; ++task) {
      const int64_t i = task / hkv;
      const int64_t g = task % hkv;
      // Visible keys: the prefix, then own rows in [begin, end) of the query's segment.
      keys.clear();
      for (int64_t j = 0; j < a.n_prefix; ++j) keys.push_back(j);
      const int64_t begin = a.own_begin ? std::max<int64_t>(0, a.own_begin[i]) : 0;
      const int64_t end = a.own_end ? std::min(n_own, a.own_end[i]) : n_own;
      for (int64_t r = begin; r < end; ++r) {
        if (use_seg && a.kv_seg[r] != a.q_seg[i]) continue;
        keys.push_back(a.n_prefix + r);
      }
      const int64_t nv = static_cast<int64_t>(keys.size());
      float* out_base = a.out + i * qw + g * group * d;
      std::fill(out_base, out_base + group * d, 0.0f);
      if (nv == 0) continue;
      scores.resize(static_cast<size_t>(group * nv));

      const float* q_base = a.q + i * qw + g * group * d;
      for (int64_t j = 0; j < nv; ++j) {
        const float* krow = a.k + keys[static_cast<size_t>(j)] * kvw + g * d;
        for (int64_t h = 0; h < group; ++h) scores[static_cast<size_t>(h * nv + j)] = kr.dot(q_base + h * d, krow, d) * a.scale;
      }
      for (int64_t h = 0; h < group; ++h) {
        float* s = scores.data() + h * nv;
        float mx = s[0];
        for (int64_t j = 1; j < nv; ++j) mx = std::max(mx, s[j]);
        float sum = 0.0f;
        for (int64_t j = 0; j < nv; ++j) {
          s[j] = std::exp(s[j] - mx);
          sum += s[j];
        }
        for (int64_t j = 0; j < nv; ++j) s[j] /= sum;
      }
      for (int64_t j = 0; j < nv; ++j) {
        const float* vrow = a.v + keys[static_cast<size_t>(j)] * kvw + g * d;
        for (int64_t h = 0; h < group; ++h) kr.axpy(scores[static_cast<size_t>(h * nv + j)], vrow, out_base + h * d, d);
      }
    }
  });
  if (oom) return Error(StatusCode::kOutOfMemory, "attention: no memory for ", a.n_kv, " scores");
  return Status::Ok();
}

void CpuBackend::mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) {
  if (n_rows <= 0 || chunk <= 0) return;
  const int64_t n_chunks = (n_rows + chunk - 1) / chunk;
  pool_->parallel_for(n_chunks, grain_for(chunk * dim, 1 << 16), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t r0 = c * chunk;
      const int64_t r1 = std::min(n_rows, r0 + chunk);
      float* o = out + c * dim;
      std::fill(o, o + dim, 0.0f);
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * dim;
        for (int64_t i = 0; i < dim; ++i) o[i] += xr[i];
      }
      const float cnt = static_cast<float>(r1 - r0);
      for (int64_t i = 0; i < dim; ++i) o[i] /= cnt;
    }
  });
}

void CpuBackend::l2_normalize(float* x, int64_t n_vectors, int64_t dim) {
  pool_->parallel_for(n_vectors, grain_for(dim, 1 << 14),
                      [&](int64_t b, int64_t e) { l2_normalize_heads(x + b * dim, e - b, dim); });
}

Status CpuBackend::decode_pages(PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows,
                                int64_t n_heads, int64_t head_dim, float* out) {
  if (!page_dtype_valid(static_cast<uint32_t>(dtype)) || n_rows < 0 || n_heads <= 0 || head_dim <= 0) {
    return Error(StatusCode::kInvalidArgument, "decode_pages: bad arguments (dtype ", static_cast<uint32_t>(dtype),
                 ", rows ", n_rows, ", heads ", n_heads, ", head_dim ", head_dim, ")");
  }
  if (dtype == PageDType::kInt8 && scales == nullptr && n_rows > 0) {
    return Error(StatusCode::kInvalidArgument, "decode_pages: int8 pages need their scales");
  }
  const size_t rb = page_row_bytes(dtype, n_heads * head_dim);
  pool_->parallel_for(n_rows, grain_for(n_heads * head_dim, 1 << 15), [&](int64_t b, int64_t e) {
    decode_rows(dtype, rows + static_cast<size_t>(b) * rb, scales ? scales + b * n_heads : nullptr, e - b, n_heads,
                head_dim, out + b * n_heads * head_dim);
  });
  return Status::Ok();
}

namespace {

// The CPU's resident routing index: the host view itself (zero-copy).
class CpuRoutingIndex final : public ResidentRoutingIndex {
 public:
  explicit CpuRoutingIndex(const RoutingIndexView& v) : view(v) {}
  int64_t n_chunks() const override { return view.n_chunks; }
  int64_t n_documents() const override { return view.n_documents; }
  int64_t device_bytes() const override { return 0; }
  RoutingIndexView view;
};

}  // namespace

Status CpuBackend::upload_routing_index(const RoutingIndexView& host, std::unique_ptr<ResidentRoutingIndex>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "upload_routing_index: out is null");
  MSA_RETURN_IF_ERROR(check_routing_view(host, "upload_routing_index"));
  *out = std::make_unique<CpuRoutingIndex>(host);
  return Status::Ok();
}

Status CpuBackend::update_routing_index(const RoutingIndexView& host, ResidentRoutingIndex* index) {
  auto* ci = dynamic_cast<CpuRoutingIndex*>(index);
  if (ci == nullptr) {
    return Error(StatusCode::kInvalidArgument, "update_routing_index: the index is not resident on ", name());
  }
  const RoutingIndexView& v = ci->view;
  MSA_RETURN_IF_ERROR(check_routing_update(host, v.dtype, v.n_kv_heads, v.head_dim, v.n_chunks, v.n_documents,
                                           "update_routing_index"));
  ci->view = host;  // zero-copy: the grown host arrays (which may have moved) are the index
  return Status::Ok();
}

Status CpuBackend::route(const RouteRequest& req, const ResidentRoutingIndex& index, RouteSelection* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "route: out is null");
  const auto* ci = dynamic_cast<const CpuRoutingIndex*>(&index);
  if (ci == nullptr) return Error(StatusCode::kInvalidArgument, "route: the index is not resident on ", name());
  if (req.k <= 0) return Error(StatusCode::kInvalidArgument, "route: k = ", req.k, ", must be >= 1");
  ScanOptions so;
  so.pool = pool_;
  so.isa = isa_;
  std::vector<float> scores;
  MSA_RETURN_IF_ERROR(score_documents(req.query, ci->view, req.reductions, &scores, so));
  MSA_RETURN_IF_ERROR(select_top_k(scores, ci->view, req.k, &out->top));
  if (req.want_scores) {
    out->scores = std::move(scores);
  } else {
    out->scores.clear();
  }
  return Status::Ok();
}

std::string CpuBackend::device_description() const {
  return std::string("CPU (") + name() + ", " + std::to_string(pool_->size()) + " threads)";
}

namespace {
// The three transfers of the CPU backend: one memcpy; bytes == 0 is a no-op, null pointers otherwise an error.
Status cpu_transfer(void* dst, const void* src, size_t bytes, const char* what) {
  if (bytes == 0) return Status::Ok();
  if (dst == nullptr || src == nullptr) return Error(StatusCode::kInvalidArgument, what, ": null pointer");
  std::memcpy(dst, src, bytes);
  return Status::Ok();
}
}  // namespace

Status CpuBackend::upload(void* dst, const void* src, size_t bytes) { return cpu_transfer(dst, src, bytes, "upload"); }

Status CpuBackend::download(void* dst, const void* src, size_t bytes) {
  return cpu_transfer(dst, src, bytes, "download");
}

Status CpuBackend::copy(void* dst, const void* src, size_t bytes) { return cpu_transfer(dst, src, bytes, "copy"); }

Status CpuBackend::prepare_weight(const TensorView& host, TensorView* out, DeviceBuffer* storage) {
  if (host.data != nullptr && !is_float_dtype(host.dtype)) {
    return Error(StatusCode::kDtype, name(), ": cannot compute with ", dtype_name(host.dtype), " weights");
  }
  *out = host;
  storage->reset();
  return Status::Ok();
}

// Device memory is host memory: the same 64-byte aligned allocation as staging memory.
void* CpuBackend::alloc_device_raw(size_t bytes, Status* error) { return alloc_staging_raw(bytes, error); }

void CpuBackend::free_device_raw(void* p, size_t bytes) noexcept { free_staging_raw(p, bytes); }

}  // namespace msa
