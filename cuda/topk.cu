// Top-k documents on the GPU (topk.h).
#include "topk.h"

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "cuda_status.h"
#include "topk.cuh"

namespace msa::cuda {

namespace {

using namespace kern;  // NOLINT: the kernels of topk.cuh

}  // namespace

Status DeviceDocSet::create(CudaResources* res, std::unique_ptr<DeviceDocSet>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceDocSet::create: out is null");
  out->reset();
  if (res == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceDocSet::create: res is null");
  std::unique_ptr<DeviceDocSet> r(new DeviceDocSet());
  r->res_ = res;
  *out = std::move(r);
  return Status::Ok();
}

Status DeviceDocSet::set(const uint64_t* ids, const uint8_t* removed, int64_t n) {
  if (n < 0 || n >= (int64_t{1} << 31)) {
    return Error(StatusCode::kInvalidArgument, "DeviceDocSet::set: n = ", n, " outside [0, 2^31)");
  }
  if (n > 0 && ids == nullptr) return Error(StatusCode::kInvalidArgument, "DeviceDocSet::set: ids is null");
  MSA_RETURN_IF_ERROR(res_->make_current());
  try {
    // The set grown by documents with fresh ids (an add): the earlier ranks stay, only the new ones are computed
    // and copied. Anything else ranks every document again.
    const int64_t old_n = static_cast<int64_t>(ids_.size());
    std::vector<uint32_t> ranks;
    bool tail_only = n >= old_n && old_n > 0 && std::equal(ids_.begin(), ids_.end(), ids) &&
                     kern::extend_id_ranks(ids + old_n, n - old_n, old_n, max_id_, &ranks);
    if (!tail_only) ranks = kern::doc_id_ranks(ids, n);
    const int64_t first = tail_only ? old_n : 0;
    std::vector<uint8_t> rem(static_cast<size_t>(n), 0);
    int64_t live = n;
    if (removed != nullptr) {
      for (int64_t i = 0; i < n; ++i) {
        rem[static_cast<size_t>(i)] = removed[i] != 0 ? 1 : 0;
        live -= rem[static_cast<size_t>(i)];
      }
    }
    uint64_t max_id = tail_only ? max_id_ : 0;
    for (int64_t i = first; i < n; ++i) max_id = std::max(max_id, ids[i]);
    cudaStream_t s = res_->stream();
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));  // a queued top-k may still read the old set
    const size_t need = std::max<size_t>(1, static_cast<size_t>(n)) * sizeof(uint32_t);
    MSA_RETURN_IF_ERROR(tail_only ? ranks_.grow_geometric(need, static_cast<size_t>(old_n) * sizeof(uint32_t), s)
                                  : ranks_.reserve(need));
    MSA_RETURN_IF_ERROR(removed_.reserve(std::max<size_t>(1, rem.size())));
    if (!ranks.empty()) {
      MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ranks_.as<uint32_t>() + first, ranks.data(),
                                               ranks.size() * sizeof(uint32_t), cudaMemcpyHostToDevice, s));
    }
    if (n > 0) {
      MSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(removed_.data(), rem.data(), rem.size(), cudaMemcpyHostToDevice, s));
    }
    MSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
    ids_.assign(ids, ids + n);
    max_id_ = max_id;
    n_live_ = live;
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "DeviceDocSet::set: out of host memory");
  }
  return Status::Ok();
}

Status DeviceDocSet::set_from_bank(const MemoryBank& bank) {
  try {
    const int64_t n = bank.n_documents();
    std::vector<uint64_t> ids(static_cast<size_t>(n));
    std::vector<uint8_t> removed(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      ids[static_cast<size_t>(i)] = bank.document(i).id;
      removed[static_cast<size_t>(i)] = bank.is_removed(i) ? 1 : 0;
    }
    return set(ids.data(), removed.data(), n);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "DeviceDocSet::set_from_bank: out of host memory");
  }
}

Status TopKSelector::create(CudaResources* res, std::unique_ptr<TopKSelector>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "TopKSelector::create: out is null");
  out->reset();
  if (res == nullptr) return Error(StatusCode::kInvalidArgument, "TopKSelector::create: res is null");
  std::unique_ptr<TopKSelector> r(new TopKSelector());
  r->res_ = res;
  *out = std::move(r);
  return Status::Ok();
}

Status TopKSelector::select(const float* d_scores, int64_t n, const DeviceDocSet& docs, int64_t k,
                            std::vector<ScoredDocument>* out) {
  const char* fn = "TopKSelector::select";
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, fn, ": out is null");
  if (k <= 0) return Error(StatusCode::kInvalidArgument, fn, ": k = ", k, ", must be >= 1");
  if (n != docs.n_documents()) {
    return Error(StatusCode::kInvalidArgument, fn, ": ", n, " scores for a set of ", docs.n_documents(), " documents");
  }
  if (n > 0 && d_scores == nullptr) return Error(StatusCode::kInvalidArgument, fn, ": scores is null");
  if (docs.resources() != res_) {
    return Error(StatusCode::kInvalidArgument, fn, ": the document set belongs to another CudaResources");
  }
  out->clear();
  const int64_t kk = std::min(k, docs.n_live());
  if (kk <= 0) return Status::Ok();
  MSA_RETURN_IF_ERROR(res_->make_current());
  cudaStream_t s = res_->stream();
  const int ni = static_cast<int>(n);
  const int low_bits = topk_low_bits(n);
  const int end_bit = 32 + low_bits;

  MSA_RETURN_IF_ERROR(keys_in_.reserve_after(static_cast<size_t>(n) * 8, s));
  MSA_RETURN_IF_ERROR(keys_out_.reserve_after(static_cast<size_t>(n) * 8, s));
  MSA_RETURN_IF_ERROR(vals_in_.reserve_after(static_cast<size_t>(n) * 4, s));
  MSA_RETURN_IF_ERROR(vals_out_.reserve_after(static_cast<size_t>(n) * 4, s));
  MSA_RETURN_IF_ERROR(picked_.reserve_after(static_cast<size_t>(kk) * 8, s));
  MSA_RETURN_IF_ERROR(host_.reserve(static_cast<size_t>(kk) * 8));

  auto* kin = keys_in_.as<unsigned long long>();
  auto* kout = keys_out_.as<unsigned long long>();
  int* vin = vals_in_.as<int>();
  int* vout = vals_out_.as<int>();
  size_t temp_bytes = 0;
  MSA_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, kin, kout, vin, vout, ni, 0, end_bit, s));
  MSA_RETURN_IF_ERROR(temp_.reserve_after(std::max<size_t>(temp_bytes, 1), s));

  const int threads = 256;
  make_keys_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, s>>>(
      d_scores, docs.ranks(), docs.removed(), ni, low_bits, kin, vin);
  MSA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "top-k make_keys kernel launch"));
  MSA_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortPairs(temp_.data(), temp_bytes, kin, kout, vin, vout, ni, 0, end_bit, s));
  const int kki = static_cast<int>(kk);
  pick_kernel<<<static_cast<unsigned>((kk + threads - 1) / threads), threads, 0, s>>>(vout, d_scores, kki,
                                                                                     picked_.as<int>());
  MSA_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "top-k pick kernel launch"));
  MSA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host_.data(), picked_.data(), static_cast<size_t>(kk) * 8, cudaMemcpyDeviceToHost, s));
  MSA_RETURN_IF_ERROR(res_->synchronize());
  const int* h = host_.as<int>();
  try {
    out->reserve(static_cast<size_t>(kk));
    for (int i = 0; i < kki; ++i) {
      ScoredDocument sd;
      sd.index = h[i];
      sd.id = docs.ids()[static_cast<size_t>(h[i])];
      const int bits = h[kki + i];
      std::memcpy(&sd.score, &bits, 4);
      out->push_back(sd);
    }
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, fn, ": out of host memory");
  }
  return Status::Ok();
}

}  // namespace msa::cuda
