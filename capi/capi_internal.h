// Helpers shared by the capi/*.cpp files: thread-local last error, Status -> msa_status translation, and
// the exception firewall every exported function runs its body inside.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "core/status.h"
#include "msa/msa.h"

namespace msa::capi {

void set_last_error(const std::string& message);
void clear_last_error();
const char* last_error_cstr();

// Records the message and returns the C code.
msa_status fail(const Status& s);
msa_status fail(msa_status code, const std::string& message);

inline msa_status to_c(const Status& s) {
  if (s.ok()) {
    clear_last_error();
    return MSA_OK;
  }
  return fail(s);
}

// Runs `body` (returning msa_status); converts any escaping exception to an error code.
template <typename F>
msa_status guarded(const char* fn_name, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(MSA_ERR_OUT_OF_MEMORY, std::string(fn_name) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(MSA_ERR_INTERNAL, std::string(fn_name) + ": internal error: " + e.what());
  } catch (...) {
    return fail(MSA_ERR_INTERNAL, std::string(fn_name) + ": internal error (unknown exception)");
  }
}

// Copies `src` into a fixed-size char array field, always NUL-terminated.
template <size_t N>
void copy_cstr(char (&dst)[N], const std::string& src) {
  size_t n = src.size() < N - 1 ? src.size() : N - 1;
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  dst[n] = '\0';
}

// The sizes (sizeof) of every layout of each size-tagged struct that libmsa has shipped, oldest first; the
// last one is the current sizeof. Fields are only appended, so an entry is never changed or removed; a new
// field appends the new sizeof here. capi/abi_layout.cpp asserts every field's offset, size and type, and
// that the last entry is sizeof(T). A struct_size that is none of these and smaller than sizeof(T) is not a
// struct any header ever declared (e.g. 6: half a field) and is refused (MSA_ERR_INVALID_ARGUMENT).
template <typename T>
struct Layouts;  // no definition: a size-tagged struct without an entry fails to compile
#define MSA_CAPI_LAYOUTS(T, ...)                                   \
  template <>                                                      \
  struct Layouts<T> {                                              \
    static constexpr uint32_t sizes[] = {__VA_ARGS__};             \
    static constexpr size_t count = sizeof(sizes) / sizeof(sizes[0]); \
  }
MSA_CAPI_LAYOUTS(msa_model_params, 16, 32);  // 32: + device, cuda_stream
MSA_CAPI_LAYOUTS(msa_model_desc, 144, 312);  // 312: + backend, device, device_weight_bytes
MSA_CAPI_LAYOUTS(msa_checkpoint_params, 40);
MSA_CAPI_LAYOUTS(msa_tokenizer_desc, 28);
MSA_CAPI_LAYOUTS(msa_memory_params, 8, 16);     // 8: batch_tokens only; 16: + page_dtype, verify_on_open
MSA_CAPI_LAYOUTS(msa_memory_usage, 56, 80, 88);  // 80: + n_removed, content_file_bytes, page_dtype; 88: + routing_device_bytes
MSA_CAPI_LAYOUTS(msa_memory_file_desc, 192);
MSA_CAPI_LAYOUTS(msa_generate_params, 48, 64);  // 64: + logits_callback, logits_user_data
MSA_CAPI_LAYOUTS(msa_timings, 64);
#undef MSA_CAPI_LAYOUTS

// Size of the struct as first released (libmsa 0.1.0): no caller struct is smaller.
template <typename T>
inline constexpr uint32_t kFirstReleaseSize = Layouts<T>::sizes[0];

// True when `size` is the size of a released layout of T, or at least the current sizeof(T) (a newer
// layout: the caller's tail past sizeof(T) is handled by the caller of this function).
template <typename T>
constexpr bool is_layout_size(uint32_t size) {
  if (size >= sizeof(T)) return true;
  for (size_t i = 0; i < Layouts<T>::count; ++i)
    if (Layouts<T>::sizes[i] == size) return true;
  return false;
}

// The released layout sizes of T as "a, b or c", for error messages.
template <typename T>
inline std::string layout_sizes_text() {
  std::string s;
  for (size_t i = 0; i < Layouts<T>::count; ++i) {
    if (i > 0) s += i + 1 == Layouts<T>::count ? " or " : ", ";
    s += std::to_string(Layouts<T>::sizes[i]);
  }
  return s;
}

// The refusal of a struct_size that is no layout of T.
template <typename T>
inline msa_status fail_struct_size(const char* fn, const char* what, uint32_t size) {
  return fail(MSA_ERR_INVALID_ARGUMENT,
              std::string(fn) + ": " + what + "->struct_size " + std::to_string(size) +
                  " is not the size of any version of the struct (this library knows " + layout_sizes_text<T>() +
                  " bytes, or larger for a newer header; set it to sizeof)");
}

// Copies a filled output struct to the caller's, honouring the caller's struct_size: an older (smaller)
// released layout receives the fields it has; a newer (larger) one receives every field this library knows
// and zeros up to its struct_size. Any other size (smaller than the first release, or between two layouts)
// is refused. On return out->struct_size is the number of bytes this library filled.
template <typename T>
inline msa_status fill_output(T* out, T filled, const char* fn) {
  if (!out) return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": output struct is NULL");
  const uint32_t caller = out->struct_size;
  if (!is_layout_size<T>(caller)) return fail_struct_size<T>(fn, "the output struct", caller);
  const uint32_t n = caller < sizeof(T) ? caller : static_cast<uint32_t>(sizeof(T));
  filled.struct_size = n;
  std::memcpy(out, &filled, n);
  if (caller > n) std::memset(reinterpret_cast<unsigned char*>(out) + n, 0, caller - n);
  clear_last_error();
  return MSA_OK;
}

// Writes a struct of defaults into the caller's `size` bytes (msa_params_init): the fields that fit, zeros
// past the library's own size, struct_size = size.
template <typename T>
inline msa_status fill_defaults(void* out, size_t size, T defaults) {
  defaults.struct_size = static_cast<uint32_t>(size);
  const size_t n = size < sizeof(T) ? size : sizeof(T);
  std::memcpy(out, &defaults, n);
  if (size > n) std::memset(static_cast<unsigned char*>(out) + n, 0, size - n);
  clear_last_error();
  return MSA_OK;
}

// Copies the caller's struct into a default-initialised one, honouring the caller's struct_size: an older
// released layout leaves the newer fields at their defaults; a larger one is accepted only when the unknown
// tail is zero; any other size (0, smaller than the first release, or between two layouts) is refused.
template <typename T>
inline msa_status copy_params(const T* in, T* out, const char* fn) {
  if (!in) return MSA_OK;
  uint32_t n = in->struct_size;
  if (!is_layout_size<T>(n)) return fail_struct_size<T>(fn, "params", n);
  if (n > sizeof(T)) {
    const unsigned char* tail = reinterpret_cast<const unsigned char*>(in) + sizeof(T);
    for (uint32_t i = 0; i < n - sizeof(T); ++i)
      if (tail[i] != 0)
        return fail(MSA_ERR_INVALID_ARGUMENT,
                    std::string(fn) + ": params struct is newer than this library and uses fields it does not know");
    n = sizeof(T);
  }
  uint32_t keep = out->struct_size;
  std::memcpy(out, in, n);
  out->struct_size = keep;
  return MSA_OK;
}

}  // namespace msa::capi

#define MSA_CHECK_ARG(cond, fn, what)                                                        \
  do {                                                                                       \
    if (!(cond)) return ::msa::capi::fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + (what)); \
  } while (0)
