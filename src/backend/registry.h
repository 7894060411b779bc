// The backend registry: backends by name, created on demand (no process-wide default instance).
//   "cpu"          CpuBackend (AVX2 when the CPU has it) on the given thread pool;
//   "cpu-scalar"   CpuBackend with the portable kernels;
//   "cuda"         the CUDA backend (device `device`): kNoDevice without a usable GPU, kUnsupported in a build
//                  without CUDA;
//   "cpu-guarded"  only in builds with MSA_GUARDED_BACKEND (the test builds): the CPU backend with its memory
//                  kept inaccessible (PROT_NONE) outside its own ops (backend/guarded/guarded_backend.h).
// The environment variable MSA_BACKEND, when set and non-empty, names the backend of every BackendParams whose
// name is empty (the C API's MSA_BACKEND_CPU default included): that is how the test suite runs on the
// guarded backend, and how a user forces one device without rebuilding.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"

namespace msa {

class ThreadPool;

struct BackendParams {
  std::string name;            // "" : $MSA_BACKEND, else "cpu"
  int device = 0;              // GPU index (cuda)
  ThreadPool* pool = nullptr;  // CPU backends: their threads (null: ThreadPool::global()); not owned
  void* cuda_stream = nullptr; // cuda: the caller's cudaStream_t (not owned); null: an own stream
};

// Errors: kUnsupported (an unknown name, or a backend this build does not have; the message lists the names
// it has), kNoDevice (no such GPU), kInvalidArgument (device < 0), the backend's own errors.
Status create_backend(const BackendParams& params, std::unique_ptr<Backend>* out);

// The names this build can create ("cpu", "cpu-scalar", then the optional ones).
std::vector<std::string> backend_names();

// The name create_backend would use for an empty params.name.
std::string default_backend_name();

}  // namespace msa
