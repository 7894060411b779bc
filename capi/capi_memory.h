// The msa_memory handle: a MemoryBank and the model handle it was built for.
#pragma once

#include <memory>
#include <mutex>

#include "engine/resident_bank.h"
#include "memory/memory_bank.h"
#include "msa/msa.h"

struct msa_memory {
  const msa_model* model = nullptr;
  std::unique_ptr<msa::MemoryBank> bank;
  // The bank's routing index and template prefix on the model's backend, shared by every generate/route call.
  std::unique_ptr<msa::ResidentBank> resident;
  msa_memory_params params;
};
