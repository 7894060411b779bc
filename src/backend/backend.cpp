#include "backend/backend.h"

#include <cmath>
#include <cstdlib>
#include <vector>

namespace msa {

// ------------------------------------------------------------------------------------------------ DeviceBuffer

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    be_ = o.be_;
    p_ = o.p_;
    bytes_ = o.bytes_;
    staging_ = o.staging_;
    o.be_ = nullptr;
    o.p_ = nullptr;
    o.bytes_ = 0;
    o.staging_ = false;
  }
  return *this;
}

void DeviceBuffer::reset() noexcept {
  if (p_ != nullptr && be_ != nullptr) {
    if (staging_) {
      be_->free_staging_raw(p_, bytes_);
    } else {
      be_->free_device_raw(p_, bytes_);
    }
  }
  be_ = nullptr;
  p_ = nullptr;
  bytes_ = 0;
  staging_ = false;
}

// ------------------------------------------------------------------------------------------------ Backend

std::string Backend::device_description() const { return name(); }

Status Backend::alloc(size_t bytes, DeviceBuffer* out) { return alloc_kind(bytes, false, out); }

Status Backend::alloc_staging(size_t bytes, DeviceBuffer* out) { return alloc_kind(bytes, true, out); }

Status Backend::alloc_kind(size_t bytes, bool staging, DeviceBuffer* out) {
  const char* what = staging ? "staging" : "device";
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, name(), ": alloc (", what, "): out is null");
  out->reset();
  if (bytes == 0) return Status::Ok();
  Status error = Status::Ok();
  void* p = staging ? alloc_staging_raw(bytes, &error) : alloc_device_raw(bytes, &error);
  if (p == nullptr) {
    if (!error.ok()) return error;
    return Error(StatusCode::kOutOfMemory, name(), ": cannot allocate ", bytes, " bytes of ", what, " memory");
  }
  out->be_ = this;
  out->p_ = p;
  out->bytes_ = bytes;
  out->staging_ = staging;
  return Status::Ok();
}

Status Backend::ensure(DeviceBuffer* buf, size_t bytes) {
  if (buf->bytes() >= bytes && (bytes == 0 || buf->backend() == this)) return Status::Ok();
  // Grow geometrically so that a slowly growing batch does not reallocate every call.
  const size_t grown = buf->backend() == this ? std::max(bytes, buf->bytes() + buf->bytes() / 2) : bytes;
  return alloc(grown, buf);
}

void* Backend::alloc_staging_raw(size_t bytes, Status* error) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) {
    *error = Error(StatusCode::kOutOfMemory, name(), ": cannot allocate ", bytes, " bytes of host memory");
  }
  return p;
}

void Backend::free_staging_raw(void* p, size_t) noexcept { std::free(p); }

Status Backend::prepare_weight(const TensorView& host, TensorView* out, DeviceBuffer* storage) {
  *out = host;
  storage->reset();
  if (host.data == nullptr) return Status::Ok();
  const size_t bytes = static_cast<size_t>(host.nbytes());
  MSA_RETURN_IF_ERROR(alloc(bytes, storage));
  MSA_RETURN_IF_ERROR(upload(storage->data(), host.data, bytes));
  out->data = storage->data();
  return Status::Ok();
}

bool is_float_dtype(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

Status check_weight(const TensorView& w, int ndim, const char* what) {
  if (w.data == nullptr || w.ndim() != ndim) {
    return Error(StatusCode::kShape, what, ": expected a ", ndim, "-D weight, got ", shape_to_string(w.shape),
                 w.data ? "" : " (no data)");
  }
  if (!is_float_dtype(w.dtype)) {
    return Error(StatusCode::kDtype, what, ": unsupported weight dtype ", dtype_name(w.dtype));
  }
  return Status::Ok();
}

void compute_rope_table(const int32_t* positions, int64_t n_tokens, int64_t head_dim, double theta, float* cos,
                        float* sin) {
  const int64_t half = head_dim / 2;
  // transformers (_compute_default_rope_parameters): 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all f32.
  std::vector<float> inv_freq(static_cast<size_t>(half));
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float p = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(expo)));
    inv_freq[static_cast<size_t>(i)] = 1.0f / p;
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = inv_freq[static_cast<size_t>(i)] * pos;  // one f32 product, as the K=1 matmul
      cos[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

}  // namespace msa
