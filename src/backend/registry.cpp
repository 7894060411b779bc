#include "backend/registry.h"

#include <cstdlib>

#include "backend/cpu/cpu_backend.h"
#if defined(MSA_GUARDED_BACKEND)
#include "backend/guarded/guarded_backend.h"
#endif
#if defined(MSA_HAVE_CUDA)
#include "cuda_backend.h"
#endif

namespace msa {

std::vector<std::string> backend_names() {
  std::vector<std::string> names{"cpu", "cpu-scalar"};
#if defined(MSA_HAVE_CUDA)
  names.emplace_back("cuda");
#endif
#if defined(MSA_GUARDED_BACKEND)
  names.emplace_back("cpu-guarded");
#endif
  return names;
}

std::string default_backend_name() {
  const char* env = std::getenv("MSA_BACKEND");
  if (env != nullptr && env[0] != '\0') return env;
  return "cpu";
}

Status create_backend(const BackendParams& params, std::unique_ptr<Backend>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "create_backend: out is null");
  out->reset();
  if (params.device < 0) {
    return Error(StatusCode::kInvalidArgument, "create_backend: device index ", params.device, " < 0");
  }
  const std::string name = params.name.empty() ? default_backend_name() : params.name;
  if (params.cuda_stream != nullptr && name != "cuda") {
    return Error(StatusCode::kInvalidArgument, "create_backend: a CUDA stream was given for backend \"", name, "\"");
  }
  if (name == "cpu" || name == "cpu-scalar") {
    CpuBackendOptions o;
    o.pool = params.pool;
    o.isa = name == "cpu" ? CpuIsa::kAuto : CpuIsa::kScalar;
    *out = std::make_unique<CpuBackend>(o);
    return Status::Ok();
  }
  if (name == "cuda") {
#if defined(MSA_HAVE_CUDA)
    return create_cuda_backend(params.device, params.cuda_stream, out);
#else
    return Error(StatusCode::kUnsupported, "backend \"cuda\": this build of libmsa has no CUDA backend (configure "
                 "with -DMSA_CUDA=ON on a machine with the CUDA toolkit)");
#endif
  }
#if defined(MSA_GUARDED_BACKEND)
  if (name == "cpu-guarded") {
    CpuBackendOptions o;
    o.pool = params.pool;
    *out = std::make_unique<GuardedBackend>(o);
    return Status::Ok();
  }
#endif
  std::string known;
  for (const std::string& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  return Error(StatusCode::kUnsupported, "unknown backend \"", name, "\"",
               params.name.empty() ? " (from MSA_BACKEND)" : "", "; this build has: ", known);
}

}  // namespace msa
