// Backend: the small set of ops the Qwen3/MSA forward needs, behind one interface (docs/ARCHITECTURE.md,
// "Backends"). The CPU implementation (backend/cpu/cpu_backend.h) computes in f32 from bf16/f16/f32
// weights; a CUDA twin implements the same ops later and is tested against the CPU one.
//
// Conventions for every op:
// * Activations are dense row-major f32 arrays in the backend's memory (host memory for the CPU backend),
//   `rows x cols`, row stride = cols unless stated. Outputs may alias inputs only where stated.
// * Weights are 2-D (matrices, [out, in] row-major as stored in safetensors) or 1-D (norm vectors)
//   TensorViews of dtype BF16, F16 or F32; they are only read, never converted as a whole.
// * Ops that read a weight, or need scratch, return a Status (kDtype for an unsupported element type, kShape
//   for a shape that does not match the sizes given, kOutOfMemory); pure elementwise f32 ops cannot fail and
//   return void.
// * A Backend object holds no per-call state: one instance may be used by several threads at once.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "core/tensor.h"

namespace msa {

class ThreadPool;

// Arguments of Backend::attention. Key rows are split in two parts:
//   keys [0, n_prefix)            the prefix (template prefix, injected memory chunks): visible to every query;
//   keys [n_prefix, n_kv)         own-token rows ("cached" rows, including the new tokens themselves).
// Query i sees the prefix plus the own rows r (0-based among own rows) with
//   own_begin[i] <= r < own_end[i]   and, when both segment arrays are given, kv_seg[r] == q_seg[i].
// A query that sees no key at all gets a zero output row.
struct AttentionArgs {
  const float* q = nullptr;  // [n_q, n_heads * head_dim]
  const float* k = nullptr;  // [n_kv, n_kv_heads * head_dim]
  const float* v = nullptr;  // [n_kv, n_kv_heads * head_dim]
  float* out = nullptr;      // [n_q, n_heads * head_dim]; must not alias q, k or v
  int64_t n_q = 0;
  int64_t n_kv = 0;
  int64_t n_prefix = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;     // n_heads % n_kv_heads == 0; q head h uses kv head h / (n_heads / n_kv_heads)
  int64_t head_dim = 0;
  float scale = 1.0f;         // softmax scale (Qwen3: 1/sqrt(head_dim))
  const int64_t* own_begin = nullptr;  // [n_q]; null: 0 for every query
  const int64_t* own_end = nullptr;    // [n_q]; null: n_kv - n_prefix for every query
  const int32_t* q_seg = nullptr;      // [n_q]; segment filtering only when q_seg and kv_seg are both set
  const int32_t* kv_seg = nullptr;     // [n_kv - n_prefix]
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Short name for logs and benchmarks ("cpu-avx2", "cpu-scalar", "cuda").
  virtual const char* name() const = 0;

  // The CPU threads this backend runs on, for host-side work that goes with it (routing scores); null: the
  // process-wide pool (ThreadPool::global()).
  virtual ThreadPool* thread_pool() const { return nullptr; }

  // y[t, o] = sum_i x[t, i] * w[o, i] for t < n_rows: Y[T, out] = X[T, in] · Wᵀ with W = `w` [out, in]
  // (BF16, F16 or F32), f32 accumulation. x: [n_rows, in], y: [n_rows, out]; y must not alias x.
  // Errors: kShape (w not 2-D or n_rows <= 0), kDtype.
  virtual Status matmul(const float* x, int64_t n_rows, const TensorView& w, float* y) = 0;

  // y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight for r < n_rows (f32, per row). weight: 1-D
  // [dim], any float dtype. y may alias x. Per-head norms (q_norm/k_norm) are this op on
  // [n_tokens * n_heads, head_dim]. Errors: kShape (weight size != dim), kDtype.
  virtual Status rmsnorm(const float* x, int64_t n_rows, int64_t dim, const TensorView& weight, float eps,
                         float* y) = 0;

  // Rotary embedding in place, rotate-half (non-interleaved) convention, on x: [n_tokens, n_heads * head_dim]:
  // for every head and i < head_dim/2, with c = cos[t, i], s = sin[t, i]:
  //   x'[i] = x[i] * c - x[i + half] * s,   x'[i + half] = x[i + half] * c + x[i] * s.
  // cos/sin: [n_tokens, head_dim/2] from compute_rope_table().
  virtual void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* cos,
                    const float* sin) = 0;

  // out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i], i < n. out may alias either input.
  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;

  // out[i] = a[i] + b[i], i < n. out may alias a or b.
  virtual void add(const float* a, const float* b, float* out, int64_t n) = 0;

  // Row-wise softmax in place on x: [n_rows, n_cols] (max-subtracted, f32).
  virtual void softmax(float* x, int64_t n_rows, int64_t n_cols) = 0;

  // out[t, :] = f32(table[ids[t], :]) for t < n. table: 2-D [vocab, dim], any float dtype.
  // Errors: kInvalidArgument (an id outside [0, vocab)), kShape, kDtype.
  virtual Status embedding(const TensorView& table, const int32_t* ids, int64_t n, float* out) = 0;

  // Scaled-dot-product attention with softmax in f32 over the visible keys (see AttentionArgs), GQA.
  // Errors: kShape (inconsistent head counts or key counts), kOutOfMemory (scratch).
  virtual Status attention(const AttentionArgs& args) = 0;

  // Mean pooling of consecutive rows into chunks: x [n_rows, dim] -> out [ceil(n_rows / chunk), dim], chunk c
  // = mean of rows [c*chunk, min(n_rows, (c+1)*chunk)). Each chunk is summed on its own, sequentially in
  // f32 (so a chunk's value does not depend on what else is pooled), then divided by its row count in f32.
  virtual void mean_pool(const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) = 0;
};

// RoPE tables (Qwen3 default type, rope_scaling null), computed the way transformers does in f32:
// inv_freq[i] = 1 / f32(theta)^(f32(2i) / f32(head_dim)), angle = f32(inv_freq[i] * f32(pos)),
// cos/sin of the f32 angle rounded to f32. cos, sin: [n_tokens, head_dim / 2]. head_dim must be even.
void compute_rope_table(const int32_t* positions, int64_t n_tokens, int64_t head_dim, double theta, float* cos,
                        float* sin);

// The process-wide default backend: the CPU backend on ThreadPool::global(), AVX2 kernels when the CPU has
// them. Thread-safe; never null.
Backend* default_backend();

}  // namespace msa
