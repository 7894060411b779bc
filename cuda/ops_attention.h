// CUDA attention and mean pooling of the forward: the device twins of Backend::attention and
// Backend::mean_pool (backend/backend.h has the exact semantics). Work is issued on res.stream() and is
// asynchronous.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "core/status.h"
#include "resources.h"

namespace msa::cuda {

// Scaled-dot-product attention over [prefix; own rows] exactly as Backend::attention defines it (prefix
// visible to every query; own row r visible to query i when own_begin[i] <= r < own_end[i] and, with both
// segment arrays, kv_seg[r] == q_seg[i]; GQA; a query that sees no key gets a zero row). EVERY pointer of
// `args` (q, k, v, out, own_begin, own_end, q_seg, kv_seg) is a DEVICE pointer.
//
// One kernel covers segment-packed prefill, [template prefix; injected chunks; own tokens] prefill and decode
// (n_q = 1): a block takes a tile of queries and one kv head (all query heads of its group), streams the
// visible keys through shared memory in tiles of 32 with an online (flash-style) f32 softmax, and only
// visits the prefix plus the union of the tile's own-row windows. When there are few (query tile, kv head)
// blocks (decode), the keys are also split over blocks and the partial softmax states are merged by a
// second kernel; that scratch lives in res.workspace() (stream-ordered with cuBLAS, which is why this is
// safe) and the split count is lowered until it fits.
// Limits: head_dim in [1, 256], n_heads / n_kv_heads * head_dim <= 4096. Errors: kShape (the checks of
// CpuBackend::attention), kInvalidArgument (a null q/k/v/out), kUnsupported (beyond the limits).
Status attention(CudaResources& res, const AttentionArgs& args);

// out[c, :] = mean of x rows [c*chunk, min(n_rows, (c+1)*chunk)), summed sequentially in f32 per chunk then
// divided by the row count (bit-identical to CpuBackend::mean_pool). x: [n_rows, dim]; out:
// [ceil(n_rows / chunk), dim]. Nothing to do when n_rows <= 0 or chunk <= 0 (as on the CPU).
Status mean_pool(CudaResources& res, const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out);

}  // namespace msa::cuda
