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
  // Serialises msa_memory_add_documents on this handle: ids of documents added without one are chosen before
  // encoding (the id is part of the encoded text), so two concurrent adders would otherwise pick the same ids.
  // Encoding shares the model's thread pool anyway, so this costs no parallelism.
  std::mutex add_mu;
};
