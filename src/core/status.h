// msa::Status — an error code plus a message. Every fallible internal function returns one; the C API
// translates it into msa_status + the thread-local last-error message. No exceptions cross module
// boundaries that face the C API.
#pragma once

#include <string>
#include <utility>

namespace msa {

// Numeric values are identical to the public `msa_status` enum (capi static_asserts this).
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,   // a caller passed a bad value (NULL pointer, out-of-range parameter)
  kIo = 2,                // open/read/write/mmap/rename failed (errno text in the message)
  kTruncated = 3,         // a file is shorter than its own contents say
  kBadHeader = 4,         // a file header is malformed (length past EOF, bad JSON, bad magic)
  kTensorOverlap = 5,     // two tensors of a safetensors file share bytes
  kDtype = 6,             // unsupported or unexpected element type
  kMissingTensor = 7,     // a tensor the model needs is absent
  kUnexpectedTensor = 8,  // a tensor the model does not know is present
  kShape = 9,             // a tensor has the wrong shape / byte span
  kConfig = 10,           // config.json (or another config file) is malformed or inconsistent
  kUnsupported = 11,      // valid input that this build does not implement (say which)
  kOutOfMemory = 12,
  kBufferTooSmall = 13,   // caller buffer too small; the needed size was reported
  kCancelled = 14,        // a callback asked to stop
  kTokenizer = 15,        // tokenizer.json / tokenizer_config.json problem
  kCorrupt = 16,          // checksum mismatch or structurally impossible content
  kContextOverflow = 17,  // input longer than the model's positions / the configured context
  kInvalidUtf8 = 18,      // text input that is not valid UTF-8 where UTF-8 is required
  kInternal = 19,         // a bug: an invariant of the library itself failed
  kNoDevice = 20,         // a GPU backend was requested but no device is present
  kBusy = 21,             // another writer holds the memory bank directory (BANK/LOCK)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CODE_NAME: message"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Concatenates its arguments with operator<< into a message.
template <typename... Args>
Status Error(StatusCode code, Args&&... args);

}  // namespace msa

#define MSA_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::msa::Status msa_status_tmp_ = (expr);       \
    if (!msa_status_tmp_.ok()) return msa_status_tmp_; \
  } while (0)

#include <sstream>

namespace msa {
template <typename... Args>
Status Error(StatusCode code, Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return Status(code, os.str());
}
}  // namespace msa
