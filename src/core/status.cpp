#include "core/status.h"

namespace msa {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "MSA_OK";
    case StatusCode::kInvalidArgument: return "MSA_ERR_INVALID_ARGUMENT";
    case StatusCode::kIo: return "MSA_ERR_IO";
    case StatusCode::kTruncated: return "MSA_ERR_TRUNCATED";
    case StatusCode::kBadHeader: return "MSA_ERR_BAD_HEADER";
    case StatusCode::kTensorOverlap: return "MSA_ERR_TENSOR_OVERLAP";
    case StatusCode::kDtype: return "MSA_ERR_DTYPE";
    case StatusCode::kMissingTensor: return "MSA_ERR_MISSING_TENSOR";
    case StatusCode::kUnexpectedTensor: return "MSA_ERR_UNEXPECTED_TENSOR";
    case StatusCode::kShape: return "MSA_ERR_SHAPE";
    case StatusCode::kConfig: return "MSA_ERR_CONFIG";
    case StatusCode::kUnsupported: return "MSA_ERR_UNSUPPORTED";
    case StatusCode::kOutOfMemory: return "MSA_ERR_OUT_OF_MEMORY";
    case StatusCode::kBufferTooSmall: return "MSA_ERR_BUFFER_TOO_SMALL";
    case StatusCode::kCancelled: return "MSA_ERR_CANCELLED";
    case StatusCode::kTokenizer: return "MSA_ERR_TOKENIZER";
    case StatusCode::kCorrupt: return "MSA_ERR_CORRUPT";
    case StatusCode::kContextOverflow: return "MSA_ERR_CONTEXT_OVERFLOW";
    case StatusCode::kInvalidUtf8: return "MSA_ERR_INVALID_UTF8";
    case StatusCode::kInternal: return "MSA_ERR_INTERNAL";
    case StatusCode::kNoDevice: return "MSA_ERR_NO_DEVICE";
    case StatusCode::kBusy: return "MSA_ERR_BUSY";
  }
  return "MSA_ERR_UNKNOWN";
}

std::string Status::to_string() const {
  if (ok()) return "MSA_OK";
  return std::string(status_code_name(code_)) + ": " + message_;
}

}  // namespace msa
