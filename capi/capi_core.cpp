// msa.h: library-level functions (version, status names, last error, logging).
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include "capi_internal.h"
#include "core/log.h"

static_assert(MSA_OK == static_cast<int>(msa::StatusCode::kOk), "status codes must agree");
static_assert(MSA_ERR_INVALID_ARGUMENT == static_cast<int>(msa::StatusCode::kInvalidArgument), "");
static_assert(MSA_ERR_IO == static_cast<int>(msa::StatusCode::kIo), "");
static_assert(MSA_ERR_TRUNCATED == static_cast<int>(msa::StatusCode::kTruncated), "");
static_assert(MSA_ERR_BAD_HEADER == static_cast<int>(msa::StatusCode::kBadHeader), "");
static_assert(MSA_ERR_TENSOR_OVERLAP == static_cast<int>(msa::StatusCode::kTensorOverlap), "");
static_assert(MSA_ERR_DTYPE == static_cast<int>(msa::StatusCode::kDtype), "");
static_assert(MSA_ERR_MISSING_TENSOR == static_cast<int>(msa::StatusCode::kMissingTensor), "");
static_assert(MSA_ERR_UNEXPECTED_TENSOR == static_cast<int>(msa::StatusCode::kUnexpectedTensor), "");
static_assert(MSA_ERR_SHAPE == static_cast<int>(msa::StatusCode::kShape), "");
static_assert(MSA_ERR_CONFIG == static_cast<int>(msa::StatusCode::kConfig), "");
static_assert(MSA_ERR_UNSUPPORTED == static_cast<int>(msa::StatusCode::kUnsupported), "");
static_assert(MSA_ERR_OUT_OF_MEMORY == static_cast<int>(msa::StatusCode::kOutOfMemory), "");
static_assert(MSA_ERR_BUFFER_TOO_SMALL == static_cast<int>(msa::StatusCode::kBufferTooSmall), "");
static_assert(MSA_ERR_CANCELLED == static_cast<int>(msa::StatusCode::kCancelled), "");
static_assert(MSA_ERR_TOKENIZER == static_cast<int>(msa::StatusCode::kTokenizer), "");
static_assert(MSA_ERR_CORRUPT == static_cast<int>(msa::StatusCode::kCorrupt), "");
static_assert(MSA_ERR_CONTEXT_OVERFLOW == static_cast<int>(msa::StatusCode::kContextOverflow), "");
static_assert(MSA_ERR_INVALID_UTF8 == static_cast<int>(msa::StatusCode::kInvalidUtf8), "");
static_assert(MSA_ERR_INTERNAL == static_cast<int>(msa::StatusCode::kInternal), "");
static_assert(MSA_ERR_NO_DEVICE == static_cast<int>(msa::StatusCode::kNoDevice), "");
static_assert(MSA_ERR_BUSY == static_cast<int>(msa::StatusCode::kBusy), "");

namespace msa::capi {

namespace {
thread_local std::string tls_last_error;
}

void set_last_error(const std::string& message) { tls_last_error = message; }
const char* last_error_cstr() { return tls_last_error.c_str(); }
void clear_last_error() { tls_last_error.clear(); }

msa_status fail(const Status& s) {
  tls_last_error = s.message();
  return static_cast<msa_status>(static_cast<int>(s.code()));
}

msa_status fail(msa_status code, const std::string& message) {
  tls_last_error = message;
  return code;
}

}  // namespace msa::capi

namespace {
struct LogTarget {
  std::mutex mu;
  msa_log_callback cb = nullptr;
  void* user = nullptr;
};
void log_trampoline(msa::LogLevel level, const char* message, void* user) {
  auto* t = static_cast<LogTarget*>(user);
  msa_log_callback cb;
  void* ud;
  {
    std::lock_guard<std::mutex> lk(t->mu);
    cb = t->cb;
    ud = t->user;
  }
  if (cb) cb(static_cast<msa_log_level>(static_cast<int>(level)), message, ud);
}
}  // namespace

#define MSA_STR2(x) #x
#define MSA_STR(x) MSA_STR2(x)

namespace {
// The int a C caller passed as an enum parameter. C allows any int there; in C++ a value outside the
// enumerators' range is undefined behaviour to load as the enum type, so the bits are copied instead.
template <typename E>
int enum_value(const E& e) {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized on our ABIs");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}
}  // namespace

extern "C" {

MSA_API const char* msa_version(void) {
  return MSA_STR(MSA_VERSION_MAJOR) "." MSA_STR(MSA_VERSION_MINOR) "." MSA_STR(MSA_VERSION_PATCH);
}

MSA_API uint32_t msa_version_number(void) {
  return MSA_VERSION_MAJOR * 10000u + MSA_VERSION_MINOR * 100u + MSA_VERSION_PATCH;
}

MSA_API int msa_version_compatible(uint32_t header_version) {
  const uint32_t lib = msa_version_number();
  // Same major version; a minor version adds API, a patch version never changes it.
  return header_version / 10000u == lib / 10000u && header_version / 100u <= lib / 100u;
}

MSA_API msa_status msa_params_init(msa_params_kind kind_arg, void* params, size_t struct_size) {
  const int kind = enum_value(kind_arg);
  return msa::capi::guarded("msa_params_init", [&]() -> msa_status {
    MSA_CHECK_ARG(params, "msa_params_init", "params is NULL");
    MSA_CHECK_ARG(struct_size <= UINT32_MAX, "msa_params_init", "struct_size does not fit in uint32_t");
    const uint32_t size = static_cast<uint32_t>(struct_size);
    // Only the size of a layout some header declared (or a newer, larger one): the struct filled here must
    // be accepted by every function taking that kind.
    auto fill = [&](auto defaults) -> msa_status {
      using T = decltype(defaults);
      if (!msa::capi::is_layout_size<T>(size)) return msa::capi::fail_struct_size<T>("msa_params_init", "params", size);
      return msa::capi::fill_defaults(params, struct_size, defaults);
    };
    switch (kind) {
      case MSA_PARAMS_MODEL: {
        msa_model_params p;
        msa_model_params_init(&p);
        return fill(p);
      }
      case MSA_PARAMS_CHECKPOINT: {
        msa_checkpoint_params p;
        msa_checkpoint_params_init(&p);
        return fill(p);
      }
      case MSA_PARAMS_MEMORY: {
        msa_memory_params p;
        msa_memory_params_init(&p);
        return fill(p);
      }
      case MSA_PARAMS_GENERATE: {
        msa_generate_params p;
        msa_generate_params_init(&p);
        return fill(p);
      }
    }
    return msa::capi::fail(MSA_ERR_INVALID_ARGUMENT,
                           "msa_params_init: unknown kind " + std::to_string(kind));
  });
}

MSA_API const char* msa_status_string(msa_status status) {
  return msa::status_code_name(static_cast<msa::StatusCode>(enum_value(status)));
}

MSA_API const char* msa_last_error(void) { return msa::capi::last_error_cstr(); }

MSA_API void msa_log_set(msa_log_callback callback, void* user_data, msa_log_level min_level) {
  int lvl = enum_value(min_level);
  if (lvl < 0) lvl = 0;
  if (lvl > 3) lvl = 3;
  msa::set_log_level(static_cast<msa::LogLevel>(lvl));
  if (!callback) {
    msa::set_log_callback(nullptr, nullptr);
    return;
  }
  // The C callback and its user data travel together through the hook's user pointer.
  static LogTarget target;
  {
    std::lock_guard<std::mutex> lk(target.mu);
    target.cb = callback;
    target.user = user_data;
  }
  msa::set_log_callback(&log_trampoline, &target);
}

}  // extern "C"
