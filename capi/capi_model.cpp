// msa.h: model load/free/info/logits and random checkpoints.
#include <cstddef>
#include <cstring>
#include <string>

#include "capi_internal.h"
#include "capi_model.h"
#include "core/limits.h"
#include "backend/registry.h"
#include "model/forward.h"
#include "model/init_model.h"
#include "tokenizer/tokenizer.h"

using msa::capi::fail;
using msa::capi::guarded;
using msa::capi::to_c;

extern "C" {

MSA_API void msa_model_params_init(msa_model_params* params) {
  if (!params) return;
  std::memset(params, 0, sizeof *params);
  params->struct_size = sizeof *params;
  params->n_threads = 0;
  params->backend = MSA_BACKEND_CPU;
  params->load_tokenizer = 1;
  params->device = 0;
  params->cuda_stream = nullptr;
}

// The 0.1 initialiser (tests/abi/README.md, "Growing a parameter struct"): binaries built against the 0.1
// header (a 16-byte msa_model_params, no `device`) bind to msa_model_params_init@MSA_0 and get exactly their
// size written; msa_model_params_init@@MSA_0.2 above writes the current one.
MSA_API void msa_model_params_init_v0(msa_model_params* params);
__asm__(".symver msa_model_params_init_v0, msa_model_params_init@MSA_0");
MSA_API void msa_model_params_init_v0(msa_model_params* params) {
  if (!params) return;
  msa_params_init(MSA_PARAMS_MODEL, params, offsetof(msa_model_params, device));
}

MSA_API msa_status msa_model_load(const char* dir, const msa_model_params* params, msa_model** out_model) {
  return guarded("msa_model_load", [&]() -> msa_status {
    MSA_CHECK_ARG(out_model, "msa_model_load", "out_model is NULL");
    *out_model = nullptr;
    MSA_CHECK_ARG(dir, "msa_model_load", "dir is NULL");
    msa_model_params p;
    msa_model_params_init(&p);
    if (msa_status st = msa::capi::copy_params(params, &p, "msa_model_load")) return st;
    MSA_CHECK_ARG(p.backend == MSA_BACKEND_CPU || p.backend == MSA_BACKEND_CUDA, "msa_model_load",
                  "unknown backend value (MSA_BACKEND_CPU or MSA_BACKEND_CUDA)");
    if (p.device < 0 || (p.backend == MSA_BACKEND_CPU && p.device != 0))
      return fail(MSA_ERR_INVALID_ARGUMENT, "msa_model_load: params->device must be >= 0 (and 0 for the CPU "
                                            "backend), got " + std::to_string(p.device));
    MSA_CHECK_ARG(p.backend == MSA_BACKEND_CUDA || p.cuda_stream == nullptr, "msa_model_load",
                  "params->cuda_stream is set but the backend is not MSA_BACKEND_CUDA");
    if (p.n_threads < 0 || p.n_threads > msa::limits::kMaxThreads)
      return fail(MSA_ERR_INVALID_ARGUMENT, "msa_model_load: params->n_threads must be in [0, MSA_MAX_THREADS = " +
                                                std::to_string(msa::limits::kMaxThreads) + "] (0: the shared pool), got " +
                                                std::to_string(p.n_threads));
    msa::ModelLoadOptions opts;
    opts.load_tokenizer = p.load_tokenizer != 0;
    auto handle = std::make_unique<msa_model>();
    handle->params = p;
    if (p.n_threads > 0) {
      msa::Status ps = msa::ThreadPool::create(p.n_threads, &handle->pool);
      if (!ps.ok()) return fail(msa::Status(ps.code(), "msa_model_load: " + ps.message()));
    }
    msa::BackendParams bp;
    bp.name = p.backend == MSA_BACKEND_CUDA ? "cuda" : "";  // "": MSA_BACKEND, else "cpu"
    bp.device = p.device;
    bp.cuda_stream = p.cuda_stream;
    bp.pool = handle->pool.get();
    msa::Status bs = msa::create_backend(bp, &handle->backend_owner);
    if (!bs.ok()) return fail(msa::Status(bs.code(), "msa_model_load: " + bs.message()));
    msa::Status s = msa::Model::load(dir, opts, &handle->model);
    if (!s.ok()) return fail(s);
    s = msa::DeviceModel::create(*handle->model, handle->backend(), &handle->device_model);
    if (!s.ok()) return fail(msa::Status(s.code(), dir + std::string(": ") + s.message()));
    *out_model = handle.release();
    return to_c(msa::Status::Ok());
  });
}

MSA_API void msa_model_free(msa_model* model) { delete model; }

MSA_API msa_status msa_model_info(const msa_model* model, msa_model_desc* info) {
  return guarded("msa_model_info", [&]() -> msa_status {
    MSA_CHECK_ARG(model, "msa_model_info", "model is NULL");
    MSA_CHECK_ARG(info, "msa_model_info", "info is NULL");
    const msa::ModelConfig& c = model->model->config();
    msa_model_desc d;
    std::memset(&d, 0, sizeof d);
    d.vocab_size = c.vocab_size;
    d.hidden_size = c.hidden_size;
    d.intermediate_size = c.intermediate_size;
    d.n_layers = static_cast<int32_t>(c.num_hidden_layers);
    d.n_heads = static_cast<int32_t>(c.num_attention_heads);
    d.n_kv_heads = static_cast<int32_t>(c.num_key_value_heads);
    d.head_dim = static_cast<int32_t>(c.head_dim);
    d.n_router_layers = c.msa.present ? static_cast<int32_t>(c.msa.router_layers.size()) : 0;
    d.pooling_kernel_size = c.msa.present ? c.msa.pooling_kernel_size : 0;
    d.decouple_router = c.msa.present && c.msa.decouple_router;
    d.tie_word_embeddings = c.tie_word_embeddings;
    d.n_parameters = model->model->n_parameters();
    d.max_position_embeddings = c.max_position_embeddings;
    d.rope_theta = c.rope_theta;
    d.rms_norm_eps = c.rms_norm_eps;
    msa::capi::copy_cstr(d.weight_dtype, msa::dtype_name(model->model->weight_dtype()));
    msa::capi::copy_cstr(d.aux_loss_method, c.msa.present ? c.msa.aux_loss_method : std::string());
    msa::capi::copy_cstr(d.backend, model->backend()->name());
    msa::capi::copy_cstr(d.device, model->backend()->device_description());
    d.device_weight_bytes = model->dm().weights().device_bytes();
    return msa::capi::fill_output(info, d, "msa_model_info");
  });
}

MSA_API msa_status msa_model_logits(const msa_model* model, const int32_t* tokens, int32_t n_tokens,
                                    float* out_logits, int64_t cap) {
  return guarded("msa_model_logits", [&]() -> msa_status {
    MSA_CHECK_ARG(model, "msa_model_logits", "model is NULL");
    MSA_CHECK_ARG(tokens, "msa_model_logits", "tokens is NULL");
    MSA_CHECK_ARG(out_logits, "msa_model_logits", "out_logits is NULL");
    MSA_CHECK_ARG(n_tokens > 0, "msa_model_logits", "n_tokens must be > 0");
    const msa::ModelConfig& c = model->model->config();
    if (cap < c.vocab_size)
      return fail(MSA_ERR_BUFFER_TOO_SMALL, "msa_model_logits: cap " + std::to_string(cap) + " < vocab_size " +
                                                std::to_string(c.vocab_size));
    return to_c(msa::forward_logits(model->dm().weights(), tokens, n_tokens, out_logits, false));
  });
}

MSA_API const msa_tokenizer* msa_model_tokenizer(const msa_model* model) {
  if (!model || !model->model->tokenizer()) return nullptr;
  // Handle convention of capi_tokenizer.cpp: a msa_tokenizer* is a msa::Tokenizer*.
  return reinterpret_cast<const msa_tokenizer*>(model->model->tokenizer());
}

MSA_API void msa_checkpoint_params_init(msa_checkpoint_params* params) {
  if (!params) return;
  std::memset(params, 0, sizeof *params);
  params->struct_size = sizeof *params;
  params->preset = "tiny";
}

MSA_API msa_status msa_checkpoint_init(const msa_checkpoint_params* params, const char* out_dir) {
  return guarded("msa_checkpoint_init", [&]() -> msa_status {
    MSA_CHECK_ARG(out_dir, "msa_checkpoint_init", "out_dir is NULL");
    msa_checkpoint_params p;
    msa_checkpoint_params_init(&p);
    if (msa_status st = msa::capi::copy_params(params, &p, "msa_checkpoint_init")) return st;
    MSA_CHECK_ARG(p.preset, "msa_checkpoint_init", "params->preset is NULL");
    msa::InitModelOptions o;
    o.preset = p.preset;
    o.seed = p.seed;
    o.tokenizer_dir = p.tokenizer_dir ? p.tokenizer_dir : "";
    o.msa_config_json = p.msa_config_json ? p.msa_config_json : "";
    o.out_dir = out_dir;
    return to_c(msa::init_model(o));
  });
}

}  // extern "C"
