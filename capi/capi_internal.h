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

// Size in bytes of each size-tagged struct as first released (libmsa 0.1.0). Fields are only appended, so
// these never change; capi/abi_layout.cpp asserts every field's offset, size and type against them. Output
// structs (filled by the library) must be at least this large; a params struct may be smaller (older).
template <typename T>
inline constexpr uint32_t kFirstReleaseSize = 0;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_model_params> = 16;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_model_desc> = 144;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_checkpoint_params> = 40;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_tokenizer_desc> = 28;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_memory_params> = 8;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_memory_usage> = 56;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_generate_params> = 48;
template <> inline constexpr uint32_t kFirstReleaseSize<msa_timings> = 64;

// Copies a filled output struct to the caller's, honouring the caller's struct_size: an older (smaller)
// struct receives the fields it has (it must be at least the first release's size); a newer (larger) one
// receives every field this library knows and zeros up to its struct_size. On return out->struct_size is
// the number of bytes this library filled.
template <typename T>
inline msa_status fill_output(T* out, T filled, const char* fn) {
  if (!out) return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": output struct is NULL");
  const uint32_t caller = out->struct_size;
  if (caller < kFirstReleaseSize<T>)
    return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": struct_size " + std::to_string(caller) +
                                              " is smaller than any released version of the struct (set it to sizeof)");
  const uint32_t n = caller < sizeof(T) ? caller : static_cast<uint32_t>(sizeof(T));
  filled.struct_size = n;
  std::memcpy(out, &filled, n);
  if (caller > n) std::memset(reinterpret_cast<unsigned char*>(out) + n, 0, caller - n);
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

// Copies the caller's struct into a default-initialised one, honouring the caller's struct_size (an older,
// smaller struct leaves the newer fields at their defaults; a larger one is accepted only when the unknown
// tail is zero).
template <typename T>
inline msa_status copy_params(const T* in, T* out, const char* fn) {
  if (!in) return MSA_OK;
  uint32_t n = in->struct_size;
  if (n < sizeof(uint32_t)) return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": params->struct_size is 0");
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
