// Routing scores on the GPU (routing_score.h).
#include "routing_score.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda_status.h"
#include "routing_kernels.cuh"

namespace msa::cuda {

namespace {

using namespace kern;  // NOLINT: the kernels of routing_kernels.cuh

template <typename KT>
Status launch_scan(const RoutePlan& plan, const ScanParams& p, cudaStream_t stream) {
  const int64_t blocks = (p.n_chunks + plan.bc - 1) / plan.bc;
  if (plan.smem > 48 * 1024) {  // the default dynamic shared-memory limit (no opt-in attribute is set)
    return Error(StatusCode::kInternal, "routing scan: plan needs ", plan.smem, " bytes of shared memory");
  }
  if (blocks > std::numeric_limits<int32_t>::max()) {
    return Error(StatusCode::kInvalidArgument, "routing scan: ", p.n_chunks, " chunks is beyond the grid limit");
  }
  if (plan.rpt == 1) {
    scan_kernel<KT, 1><<<static_cast<unsigned>(blocks), kThreads, plan.smem, stream>>>(p);
  } else {
    scan_kernel<KT, 8><<<static_cast<unsigned>(blocks), kThreads, plan.smem, stream>>>(p);
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
  MSA_RETURN_IF_ERROR(check_reductions(red, fn));
  if (index.resources() != res_) {
    return Error(StatusCode::kInvalidArgument, fn, ": the index belongs to another CudaResources");
  }
  MSA_RETURN_IF_ERROR(res_->make_current());
  cudaStream_t stream = res_->stream();

  const int64_t T = q.n_tokens, H = q.n_heads, G = q.n_kv_heads, D = q.head_dim;
  const int64_t width = G * D;
  const int64_t n_chunks = index.n_chunks();
  const int64_t n_docs = index.n_documents();
  const RoutePlan plan = plan_route(T, H, G, D, red.head, red.query, index.dtype(), n_chunks);
  const int64_t n_rows_floats = plan.n_rows * width;
  if (T * H * D > std::numeric_limits<int32_t>::max() || n_rows_floats > std::numeric_limits<int32_t>::max()) {
    return Error(StatusCode::kInvalidArgument, fn, ": ", plan.n_rows, " query rows of width ", width,
                 " exceed the 2^31-float limit of the device router");
  }

  const float* dq = q.q;
  if (!q.on_device) {
    MSA_RETURN_IF_ERROR(q_.reserve_after(static_cast<size_t>(T * H * D) * sizeof(float), stream));
    MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(q_.data(), q.q, static_cast<size_t>(T * H * D) * sizeof(float),
                                             cudaMemcpyHostToDevice, stream));
    dq = q_.as<float>();
  }
  MSA_RETURN_IF_ERROR(rows_.reserve_after(static_cast<size_t>(n_rows_floats) * sizeof(float), stream));
  MSA_RETURN_IF_ERROR(
      chunk_scores_.reserve_after(static_cast<size_t>(n_chunks > 0 ? n_chunks : 1) * sizeof(float), stream));
  MSA_RETURN_IF_ERROR(doc_scores_.reserve_after(static_cast<size_t>(n_docs > 0 ? n_docs : 1) * sizeof(float), stream));
  n_chunks_ = n_chunks;
  n_documents_ = n_docs;

  {
    const int threads = 256;
    const int64_t blocks = (plan.prep_out + threads - 1) / threads;
    prepare_rows_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        dq, rows_.as<float>(), plan.prep_out, static_cast<int>(H), static_cast<int>(G), static_cast<int>(D),
        static_cast<int>(plan.t_first), static_cast<int>(T), plan.mode);
    MSA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "routing prepare_rows kernel launch"));
  }

  if (n_chunks > 0) {
    ScanParams p = plan.p;
    p.keys = static_cast<const unsigned char*>(index.keys());
    p.scales = index.dtype() == PageDType::kInt8 ? index.scales() : nullptr;
    p.rows = rows_.as<float>();
    p.chunk_scores = chunk_scores_.as<float>();
    if (index.dtype() == PageDType::kInt8) {
      MSA_RETURN_IF_ERROR(launch_scan<int8_t>(plan, p, stream));
    } else if (index.dtype() == PageDType::kBF16) {
      MSA_RETURN_IF_ERROR(launch_scan<uint16_t>(plan, p, stream));
    } else {
      MSA_RETURN_IF_ERROR(launch_scan<float>(plan, p, stream));
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
