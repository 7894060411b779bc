// DeviceWeights: a checkpoint's tensors as backend weights, prepared once (Backend::prepare_weight) after the
// shapes were checked against the configuration once — no forward re-checks them. DeviceModel: a Model bound
// to a Backend (its weights prepared there), what Session, Encoder and forward() run on.
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace msa {

class Model;

class DeviceWeights {
 public:
  // Checks every tensor the forward reads (and the router projections of router layers with decouple_router)
  // against `config`, then prepares each on `backend` (not owned; must outlive the weights).
  // Errors: kConfig (inconsistent head counts, odd head_dim), kShape (a tensor of the wrong shape, or unbound),
  // kMissingTensor (a router projection), kDtype, kOutOfMemory, device errors.
  static Status prepare(const ModelWeights& host, const ModelConfig& config, Backend* backend,
                        std::unique_ptr<DeviceWeights>* out);

  const ModelWeights& views() const { return w_; }  // backend memory
  const ModelConfig& config() const { return config_; }
  Backend* backend() const { return be_; }
  int64_t device_bytes() const { return device_bytes_; }
  // lm_head, or the embedding when tied.
  const TensorView& head() const { return w_.lm_head.empty() ? w_.embed_tokens : w_.lm_head; }

 private:
  DeviceWeights() = default;
  ModelConfig config_;
  ModelWeights w_;
  std::vector<DeviceBuffer> storage_;
  Backend* be_ = nullptr;
  int64_t device_bytes_ = 0;
};

// kConfig unless the head counts and head_dim are usable by the forward.
Status check_forward_config(const ModelConfig& c);

class DeviceModel {
 public:
  // backend null: a backend of its own from the registry (backend/registry.h, the default: MSA_BACKEND or
  // "cpu"). The model must outlive the DeviceModel. Errors: those of DeviceWeights::prepare and create_backend.
  static Status create(const Model& model, Backend* backend, std::unique_ptr<DeviceModel>* out);

  const Model& model() const { return model_; }
  const ModelConfig& config() const;
  const DeviceWeights& weights() const { return *weights_; }
  Backend* backend() const { return weights_->backend(); }

 private:
  explicit DeviceModel(const Model& m) : model_(m) {}
  const Model& model_;
  std::unique_ptr<Backend> owned_;
  std::unique_ptr<DeviceWeights> weights_;
};

}  // namespace msa
