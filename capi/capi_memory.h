// The msa_memory handle: a MemoryBank and the model handle it was built for.
#pragma once

#include <memory>
#include <mutex>

#include "memory/memory_bank.h"
#include "msa/msa.h"

struct msa_memory {
  const msa_model* model = nullptr;
  std::unique_ptr<msa::MemoryBank> bank;
  msa_memory_params params;
};
