// msa.h, "generation": msa_generate (stages 2-3 + Memory Interleave), msa_route, and msa_result accessors.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "capi_internal.h"
#include "capi_memory.h"
#include "capi_model.h"
#include "core/limits.h"
#include "engine/session.h"

using msa::capi::fail;
using msa::capi::guarded;
using msa::capi::to_c;

struct msa_result {
  std::string answer, generated_text, transcript, stop_reason;
  std::vector<int32_t> tokens;
  struct Round {
    std::vector<uint64_t> documents;
  };
  std::vector<Round> rounds;
  struct Layer {
    int32_t layer = 0;
    std::vector<uint64_t> ids;
    std::vector<float> scores;
  };
  std::vector<Layer> layers;
  msa_timings timings{};
};

namespace {

void fill_layers(const std::vector<msa::LayerRouting>& routing, msa_result* r) {
  for (const msa::LayerRouting& lr : routing) {
    msa_result::Layer l;
    l.layer = lr.layer;
    for (const msa::ScoredDocument& d : lr.top) {
      l.ids.push_back(d.id);
      l.scores.push_back(d.score);
    }
    r->layers.push_back(std::move(l));
  }
}

msa_status check_common(const char* fn, const msa_model* model, const msa_memory* memory, const char* prompt,
                        msa_result** out_result, const msa_generate_params* params, msa_generate_params* p) {
  MSA_CHECK_ARG(out_result, fn, "out_result is NULL");
  *out_result = nullptr;
  MSA_CHECK_ARG(model, fn, "model is NULL");
  MSA_CHECK_ARG(prompt, fn, "prompt is NULL");
  msa_generate_params_init(p);
  if (msa_status st = msa::capi::copy_params(params, p, fn)) return st;
  if (memory && memory->model->model.get() != model->model.get())
    return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": the memory bank was built for another model");
  if (p->top_k <= 0) return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": params->top_k must be > 0, got " +
                                                               std::to_string(p->top_k));
  // first_position < 0 is the default (3 + top_k); a larger one must still leave room for the prompt, which
  // the session checks against the context limit (MSA_ERR_CONTEXT_OVERFLOW).
  return MSA_OK;
}

std::string num(float x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(x));
  return buf;
}

// The fields only msa_generate uses (msa_route ignores them).
msa_status check_generate_fields(const char* fn, const msa_generate_params& p) {
  const std::string f = std::string(fn) + ": params->";
  if (p.max_new_tokens <= 0)
    return fail(MSA_ERR_INVALID_ARGUMENT, f + "max_new_tokens must be > 0, got " + std::to_string(p.max_new_tokens));
  if (p.max_rounds <= 0 || p.max_rounds > msa::limits::kMaxRounds)
    return fail(MSA_ERR_INVALID_ARGUMENT, f + "max_rounds must be in [1, MSA_MAX_ROUNDS = " +
                                              std::to_string(msa::limits::kMaxRounds) + "], got " +
                                              std::to_string(p.max_rounds));
  if (std::isnan(p.temperature) || std::isinf(p.temperature))
    return fail(MSA_ERR_INVALID_ARGUMENT,
                f + "temperature must be finite (< 0: generation_config.json, 0: greedy), got " + num(p.temperature));
  if (std::isnan(p.top_p) || (p.top_p >= 0 && !(p.top_p > 0 && p.top_p <= 1)))
    return fail(MSA_ERR_INVALID_ARGUMENT,
                f + "top_p must be in (0, 1] (or < 0: generation_config.json), got " + num(p.top_p));
  // sampling_top_k: every value is meaningful (< 0: generation_config.json, 0: off, k >= vocab: everything);
  // seed: any; interleave: a flag.
  return MSA_OK;
}

}  // namespace

extern "C" {

MSA_API void msa_generate_params_init(msa_generate_params* params) {
  if (!params) return;
  std::memset(params, 0, sizeof *params);
  params->struct_size = sizeof *params;
  params->top_k = 16;
  params->max_new_tokens = 256;
  params->temperature = -1.0f;
  params->top_p = -1.0f;
  params->sampling_top_k = -1;
  params->seed = 0;
  params->interleave = 1;
  params->max_rounds = 4;
  params->first_position = -1;
}

MSA_API msa_status msa_generate(const msa_model* model, const msa_memory* memory, const char* prompt,
                                const msa_generate_params* params, msa_token_callback on_token, void* user_data,
                                msa_result** out_result) {
  return guarded("msa_generate", [&]() -> msa_status {
    const char* fn = "msa_generate";
    msa_generate_params p;
    if (msa_status st = check_common(fn, model, memory, prompt, out_result, params, &p)) return st;
    if (msa_status st = check_generate_fields(fn, p)) return st;
    const msa::Model& m = *model->model;
    msa::GenerateOptions o;
    o.mode = (p.interleave && memory) ? msa::GenerateMode::kInterleave : msa::GenerateMode::kPlain;
    o.doc_top_k = p.top_k;
    o.first_position = p.first_position;
    o.max_new_tokens = p.max_new_tokens;
    o.max_rounds = p.max_rounds;
    const msa::GenerationDefaults& g = m.config().generation;
    o.sampling.seed = p.seed;
    if (p.temperature < 0) {
      o.sampling.use_model_defaults = true;
    } else {
      o.sampling.use_model_defaults = false;
      o.sampling.do_sample = p.temperature > 0;
      o.sampling.temperature = p.temperature;
      o.sampling.top_p = p.top_p < 0 ? (g.present ? g.top_p : 1.0f) : p.top_p;
      o.sampling.top_k = p.sampling_top_k < 0 ? (g.present ? g.top_k : 0) : p.sampling_top_k;
    }
    if (p.logits_callback) {
      o.on_logits = [cb = p.logits_callback, ud = p.logits_user_data](const msa::LogitsStep& st, float* logits,
                                                                      int64_t vocab) {
        return cb(st.round, st.round_index, st.index, logits, vocab, ud);
      };
    }
    if (on_token) {
      o.on_token = [on_token, user_data](std::string_view piece) {
        return on_token(piece.data(), piece.size(), user_data);
      };
    }
    msa::Session session(model->dm(), memory ? memory->bank.get() : nullptr,
                         memory ? memory->resident.get() : nullptr);
    msa::GenerateResult res;
    msa::Status s = session.generate(prompt, o, &res);
    if (!s.ok() && s.code() != msa::StatusCode::kCancelled) return fail(s);
    auto r = std::make_unique<msa_result>();
    r->answer = res.answer;
    r->generated_text = res.generated_text;
    r->transcript = res.transcript;
    r->tokens = res.generated_ids;
    r->stop_reason = msa::stop_reason_name(res.stop);
    for (const msa::RoundRecord& rr : res.rounds) r->rounds.push_back({rr.documents_read});
    fill_layers(res.routing, r.get());
    r->timings.struct_size = sizeof r->timings;
    r->timings.prefill_ms = res.timings.prefill_ms;
    r->timings.ttft_ms = res.timings.ttft_ms;
    r->timings.decode_ms = res.timings.decode_ms;
    r->timings.decode_tokens_per_s = res.timings.decode_tokens_per_s;
    r->timings.total_ms = res.timings.total_ms;
    r->timings.prompt_tokens = res.timings.prompt_tokens;
    r->timings.generated_tokens = static_cast<int64_t>(res.generated_ids.size());
    *out_result = r.release();
    return s.ok() ? to_c(s) : fail(s);
  });
}

MSA_API msa_status msa_route(const msa_model* model, const msa_memory* memory, const char* prompt,
                             const msa_generate_params* params, msa_result** out_result) {
  return guarded("msa_route", [&]() -> msa_status {
    const char* fn = "msa_route";
    msa_generate_params p;
    if (msa_status st = check_common(fn, model, memory, prompt, out_result, params, &p)) return st;
    MSA_CHECK_ARG(memory, fn, "memory is NULL (routing needs a memory bank)");
    msa::Session session(model->dm(), memory->bank.get(), memory->resident.get());
    msa::RouteOptions o;
    o.doc_top_k = p.top_k;
    o.first_position = p.first_position;
    o.record_scores = false;
    msa::RouteResult res;
    msa::Status s = session.route(prompt, o, &res);
    if (!s.ok()) return fail(s);
    auto r = std::make_unique<msa_result>();
    fill_layers(res.layers, r.get());
    r->timings.struct_size = sizeof r->timings;
    r->timings.prompt_tokens = res.prompt_tokens;
    *out_result = r.release();
    return to_c(s);
  });
}

MSA_API const char* msa_result_text(const msa_result* r) { return r ? r->answer.c_str() : ""; }
MSA_API const char* msa_result_generated_text(const msa_result* r) { return r ? r->generated_text.c_str() : ""; }
MSA_API const char* msa_result_transcript(const msa_result* r) { return r ? r->transcript.c_str() : ""; }
MSA_API const char* msa_result_stop_reason(const msa_result* r) { return r ? r->stop_reason.c_str() : ""; }

MSA_API int64_t msa_result_tokens(const msa_result* r, const int32_t** ids) {
  if (ids) *ids = r && !r->tokens.empty() ? r->tokens.data() : nullptr;
  return r ? static_cast<int64_t>(r->tokens.size()) : 0;
}

MSA_API int32_t msa_result_n_rounds(const msa_result* r) { return r ? static_cast<int32_t>(r->rounds.size()) : 0; }

MSA_API int64_t msa_result_round_documents(const msa_result* r, int32_t round, const uint64_t** ids) {
  if (ids) *ids = nullptr;
  if (!r || round < 0 || static_cast<size_t>(round) >= r->rounds.size()) return -1;
  const std::vector<uint64_t>& d = r->rounds[static_cast<size_t>(round)].documents;
  if (ids) *ids = d.empty() ? nullptr : d.data();
  return static_cast<int64_t>(d.size());
}

MSA_API int32_t msa_result_n_router_layers(const msa_result* r) {
  return r ? static_cast<int32_t>(r->layers.size()) : 0;
}

MSA_API int32_t msa_result_router_layer(const msa_result* r, int32_t slot) {
  if (!r || slot < 0 || static_cast<size_t>(slot) >= r->layers.size()) return -1;
  return r->layers[static_cast<size_t>(slot)].layer;
}

MSA_API int64_t msa_result_layer_topk(const msa_result* r, int32_t slot, const uint64_t** ids,
                                      const float** scores) {
  if (ids) *ids = nullptr;
  if (scores) *scores = nullptr;
  if (!r || slot < 0 || static_cast<size_t>(slot) >= r->layers.size()) return -1;
  const msa_result::Layer& l = r->layers[static_cast<size_t>(slot)];
  if (ids) *ids = l.ids.empty() ? nullptr : l.ids.data();
  if (scores) *scores = l.scores.empty() ? nullptr : l.scores.data();
  return static_cast<int64_t>(l.ids.size());
}

MSA_API msa_status msa_result_timings(const msa_result* r, msa_timings* t) {
  return guarded("msa_result_timings", [&]() -> msa_status {
    MSA_CHECK_ARG(r, "msa_result_timings", "result is NULL");
    MSA_CHECK_ARG(t, "msa_result_timings", "timings is NULL");
    if (msa_status st = msa::capi::fill_output(t, r->timings, "msa_result_timings")) return st;
    return msa::capi::to_c(msa::Status::Ok());
  });
}

MSA_API void msa_result_free(msa_result* r) { delete r; }

}  // extern "C"
