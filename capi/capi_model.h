// The msa_model handle: a msa::Model plus the per-handle defaults from msa_model_params.
#pragma once

#include <memory>

#include "backend/cpu/cpu_backend.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "msa/msa.h"

// With params.n_threads > 0 the handle owns a pool of that many threads and a CPU backend on it, used by
// every forward, encoding and routing made through this handle; with 0 the process-wide pool (all hardware
// threads, or MSA_NUM_THREADS) is shared.
struct msa_model {
  std::unique_ptr<msa::Model> model;
  msa_model_params params;
  std::unique_ptr<msa::ThreadPool> pool;
  std::unique_ptr<msa::CpuBackend> cpu_backend;
  // The backend of this handle's work; null: the process default (default_backend()).
  msa::Backend* backend() const { return cpu_backend.get(); }
};
