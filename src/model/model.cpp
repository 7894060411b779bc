#include "model/model.h"

#include "core/log.h"
#include "tokenizer/tokenizer.h"

namespace msa {

Model::Model() = default;
Model::~Model() = default;

Status Model::load(const std::string& dir, const ModelLoadOptions& options, std::unique_ptr<Model>* out) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  MSA_RETURN_IF_ERROR(load_model_config(dir, &m->config_));
  MSA_RETURN_IF_ERROR(SafetensorsSet::open_dir(dir, &m->files_));
  MSA_RETURN_IF_ERROR(bind_weights(m->files_, m->config_, &m->weights_));
  m->n_parameters_ = count_parameters(m->weights_, m->config_);
  if (options.load_tokenizer) MSA_RETURN_IF_ERROR(Tokenizer::load(dir, &m->tokenizer_));
  const MsaConfig& msa = m->config_.msa;
  if (msa.present) {
    log(LogLevel::kInfo, dir, ": MSA checkpoint, ", msa.router_layers.size(), " router layers, pooling ",
        msa.pooling_kernel_size, ", routing score ",
        msa.normalize_routing() ? "cosine (aux_loss_method == INFONCE)" : "scaled dot product",
        msa.scale_routing() ? " x head_dim^-0.5" : "");
  }
  *out = std::move(m);
  return Status::Ok();
}

DType Model::weight_dtype() const {
  if (weights_.layers.empty()) return weights_.embed_tokens.dtype;
  return weights_.layers[0].q_proj.dtype;
}

}  // namespace msa
