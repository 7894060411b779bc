// CUDA twins of the Backend ops that have no kernel elsewhere in cuda/ (backend/backend.h has the exact
// semantics; the kernels are in backend_kernels.cuh): scale, gather_rows, l2_normalize and the one-plane page
// decode of Backend::decode_pages. Every data pointer is a device pointer; work is issued on res.stream() and is
// asynchronous unless stated.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "memory/page_codec.h"
#include "resources.h"

namespace msa::cuda {

// x[i] *= s for i < n (bit-identical to CpuBackend::scale).
Status scale(CudaResources& res, float* x, float s, int64_t n);

// dst[i, :] = src[rows[i], :] for i < n, width floats per row. Rows are checked on the device: a row outside
// [0, n_src) gives kInvalidArgument naming the first bad index and its row (that output row is zeroed).
// SYNCHRONOUS: waits for res.stream() to read the check back. `flag`: 8 bytes of device scratch that no queued
// work uses. Errors: kShape (width <= 0 with n > 0, n_src < 0), kInvalidArgument.
Status gather_rows(CudaResources& res, const float* src, int64_t n_src, int64_t width, const int32_t* rows,
                   int64_t n, float* dst, unsigned long long* flag);

// Routing-vector normalisation in place on x: [n_vectors, dim] (bit-identical to l2_normalize_heads: the
// squared norm summed in double in element order, one thread per vector).
Status l2_normalize(CudaResources& res, float* x, int64_t n_vectors, int64_t dim);

// decode_rows (memory/page_codec.h) on the device: n_rows rows of `dtype` (rows: n_rows * page_row_bytes bytes,
// any alignment; scales: [n_rows, n_heads] f32 for kInt8) into out [n_rows, n_heads * head_dim] f32, bit for bit.
// Errors: kInvalidArgument (dtype unknown, n_rows < 0, n_heads or head_dim <= 0, null pointers).
Status decode_rows(CudaResources& res, PageDType dtype, const uint8_t* rows, const float* scales, int64_t n_rows,
                   int64_t n_heads, int64_t head_dim, float* out);

}  // namespace msa::cuda
