// CUDA row-wise and elementwise ops of the forward, the device twins of Backend::embedding, rmsnorm, rope
// (+ compute_rope_table), swiglu and add (backend/backend.h has the exact semantics). Every data
// pointer is a device pointer; work is issued on res.stream() and is asynchronous unless stated. Weights are
// raw device arrays with a DType (BF16, F16 or F32). Sizes are validated on the host; bad sizes or dtypes
// return kShape / kDtype / kInvalidArgument before anything is launched.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/status.h"
#include "resources.h"

namespace msa::cuda {

// dst[i] = f32(src[i]) for i < n; src of dtype BF16, F16 or F32 (a copy). Use it to make an f32 copy of a
// weight for matmul_f32.
Status convert_to_f32(CudaResources& res, const void* src, DType dtype, int64_t n, float* dst);

// out[t, :] = f32(table[ids[t], :]) for t < n. table: [vocab, dim] of `dtype`; ids: device int32 [n].
// Ids are checked on the device: an id outside [0, vocab) gives kInvalidArgument naming the first bad index
// and its id (that row of `out` is zeroed). SYNCHRONOUS: waits for res.stream() to read the check back.
Status embedding(CudaResources& res, const void* table, DType dtype, int64_t vocab, int64_t dim,
                 const int32_t* ids, int64_t n, float* out);

// y[r, :] = x[r, :] * (1 / sqrt(mean(x[r, :]^2) + eps)) * weight, per row, sum of squares in double (as the
// CPU does). weight: [dim] of `dtype`. y may alias x. Per-head q/k norms: n_rows = tokens * heads, dim =
// head_dim.
Status rmsnorm(CudaResources& res, const float* x, int64_t n_rows, int64_t dim, const void* weight, DType dtype,
               float eps, float* y);

// The RoPE tables of compute_rope_table (backend.h) computed on the device from int32 positions:
// inv_freq = 1 / f32(pow(theta, f32(2i) / f32(head_dim))), angle = f32(inv_freq * f32(pos)), cos/sin of
// the f32 angle evaluated in double and rounded to f32. cos, sin: [n_tokens, head_dim / 2].
// Errors: kShape (head_dim odd or <= 0, n_tokens < 0).
Status rope_table(CudaResources& res, const int32_t* positions, int64_t n_tokens, int64_t head_dim, double theta,
                  float* cos, float* sin);

// Rotate-half RoPE in place on x: [n_tokens, n_heads * head_dim], with tables from rope_table (same
// operation order as the CPU: x0*c + (-x1)*s without FMA contraction).
Status rope(CudaResources& res, float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* cos,
            const float* sin);

// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]. out may alias gate or up.
Status swiglu(CudaResources& res, const float* gate, const float* up, float* out, int64_t n);

// out[i] = a[i] + b[i]. out may alias a or b.
Status add(CudaResources& res, const float* a, const float* b, float* out, int64_t n);


}  // namespace msa::cuda
