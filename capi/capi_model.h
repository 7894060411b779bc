// The msa_model handle: a msa::Model plus the per-handle defaults from msa_model_params.
#pragma once

#include <memory>

#include "model/model.h"
#include "msa/msa.h"

struct msa_model {
  std::unique_ptr<msa::Model> model;
  msa_model_params params;
};
