#include "ops_attention.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "cuda_status.h"
#include "ops_attention_kernels.cuh"

namespace msa::cuda {

namespace {

using namespace kern;  // NOLINT: the kernels and launch plans of ops_attention_kernels.cuh

}  // namespace

Status attention(CudaResources& res, const AttentionArgs& a) {
  if (a.n_q <= 0) return Status::Ok();
  AttnPlan plan;
  MSA_RETURN_IF_ERROR(plan_attention(a, res.props().sharedMemPerBlockOptin, res.props().multiProcessorCount,
                                     res.workspace_bytes(), &plan));
  const AttnParams p = attention_params(a, plan, static_cast<float*>(res.workspace()));
  if (plan.lay.bytes > 48 * 1024) {
    MSA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  static_cast<int>(plan.lay.bytes)));
  }
  attention_kernel<<<dim3(static_cast<unsigned>(plan.n_blocks), static_cast<unsigned>(plan.n_splits)), kAttnThreads,
                     plan.lay.bytes, res.stream()>>>(p);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  if (plan.n_splits > 1) {
    const int64_t n_rows_all = a.n_q * a.n_heads;
    attention_combine_kernel<<<static_cast<unsigned>(n_rows_all), plan.combine_threads, 0, res.stream()>>>(
        p.part_o, p.part_m, p.part_l, plan.n_splits, n_rows_all, p.d, a.out);
    MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return Status::Ok();
}

Status mean_pool(CudaResources& res, const float* x, int64_t n_rows, int64_t dim, int64_t chunk, float* out) {
  if (n_rows <= 0 || chunk <= 0) return Status::Ok();
  if (dim <= 0) return Error(StatusCode::kShape, "cuda mean_pool: dim ", dim);
  if (x == nullptr || out == nullptr) return Error(StatusCode::kInvalidArgument, "cuda mean_pool: null pointer");
  const MeanPoolPlan plan = plan_mean_pool(n_rows, dim, chunk);
  if (plan.n_chunks > INT_MAX) return Error(StatusCode::kShape, "cuda mean_pool: ", plan.n_chunks, " chunks");
  mean_pool_kernel<<<dim3(static_cast<unsigned>(plan.n_chunks), static_cast<unsigned>(plan.gy)), plan.threads, 0,
                     res.stream()>>>(x, n_rows, dim, chunk, out);
  MSA_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace msa::cuda
