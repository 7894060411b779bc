// The msa_model handle: a msa::Model bound to the backend msa_model_params chose (its weights prepared there
// once), plus the per-handle defaults.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "core/thread_pool.h"
#include "model/device_model.h"
#include "model/model.h"
#include "msa/msa.h"

// With params.n_threads > 0 the handle owns a pool of that many threads for its CPU backend; with 0 the
// process-wide pool (all hardware threads, or MSA_NUM_THREADS) is shared. Members are destroyed in reverse
// order: the device model (weights on the backend) before the backend, the backend before its pool.
struct msa_model {
  std::unique_ptr<msa::Model> model;
  msa_model_params params;
  std::unique_ptr<msa::ThreadPool> pool;
  std::unique_ptr<msa::Backend> backend_owner;
  std::unique_ptr<msa::DeviceModel> device_model;
  msa::Backend* backend() const { return backend_owner.get(); }
  const msa::DeviceModel& dm() const { return *device_model; }
};
