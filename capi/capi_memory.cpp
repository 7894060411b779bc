// msa.h, "memory banks": create / add documents (stage 1) / stats / free.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "capi_internal.h"
#include "capi_memory.h"
#include "capi_model.h"
#include "engine/encoder.h"

using msa::capi::fail;
using msa::capi::guarded;
using msa::capi::to_c;

extern "C" {

MSA_API void msa_memory_params_init(msa_memory_params* params) {
  if (!params) return;
  std::memset(params, 0, sizeof *params);
  params->struct_size = sizeof *params;
  params->batch_tokens = 4096;
}

MSA_API msa_status msa_memory_create(const msa_model* model, const msa_memory_params* params,
                                     msa_memory** out_memory) {
  return guarded("msa_memory_create", [&]() -> msa_status {
    MSA_CHECK_ARG(out_memory, "msa_memory_create", "out_memory is NULL");
    *out_memory = nullptr;
    MSA_CHECK_ARG(model, "msa_memory_create", "model is NULL");
    msa_memory_params p;
    msa_memory_params_init(&p);
    if (msa_status st = msa::capi::copy_params(params, &p, "msa_memory_create")) return st;
    MSA_CHECK_ARG(p.batch_tokens > 0, "msa_memory_create", "batch_tokens must be > 0");
    const msa::Model& m = *model->model;
    if (!m.config().msa.present || m.config().msa.router_layers.empty())
      return fail(MSA_ERR_INVALID_ARGUMENT,
                  "msa_memory_create: " + m.dir() + " is not an MSA checkpoint (no msa_config router layers)");
    if (!m.tokenizer())
      return fail(MSA_ERR_INVALID_ARGUMENT, "msa_memory_create: the model was loaded without its tokenizer");
    auto mem = std::make_unique<msa_memory>();
    mem->model = model;
    mem->params = p;
    msa::Status s = msa::create_memory_bank(m, model->backend(), &mem->bank);
    if (!s.ok()) return fail(s);
    *out_memory = mem.release();
    return to_c(msa::Status::Ok());
  });
}

MSA_API void msa_memory_free(msa_memory* memory) { delete memory; }

MSA_API msa_status msa_memory_add_documents(msa_memory* memory, const msa_document* docs, size_t n_docs,
                                            msa_progress_callback progress, void* user_data,
                                            uint64_t* out_ids) {
  return guarded("msa_memory_add_documents", [&]() -> msa_status {
    const char* fn = "msa_memory_add_documents";
    MSA_CHECK_ARG(memory, fn, "memory is NULL");
    MSA_CHECK_ARG(n_docs > 0, fn, "the document list is empty (n_docs == 0)");
    MSA_CHECK_ARG(docs, fn, "docs is NULL");
    std::vector<std::string_view> texts;
    std::vector<uint64_t> ids;
    texts.reserve(n_docs);
    bool any_id = false, all_ids = true;
    for (size_t i = 0; i < n_docs; ++i) {
      if (!docs[i].text && docs[i].text_len > 0)
        return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": docs[" + std::to_string(i) + "].text is NULL");
      texts.emplace_back(docs[i].text ? docs[i].text : "", docs[i].text_len);
      any_id = any_id || docs[i].has_id;
      all_ids = all_ids && docs[i].has_id;
    }
    if (any_id && !all_ids)
      return fail(MSA_ERR_INVALID_ARGUMENT,
                  std::string(fn) + ": either every document has an id (has_id) or none has");
    if (all_ids)
      for (size_t i = 0; i < n_docs; ++i) ids.push_back(docs[i].id);
    msa::EncoderOptions opts;
    opts.batch_tokens = memory->params.batch_tokens;
    opts.backend = memory->model->backend();
    if (progress) {
      opts.progress = [progress, user_data](const msa::EncodeProgress& p) {
        return progress(p.documents_done, p.documents_total, p.tokens_done, p.tokens_total, user_data);
      };
    }
    msa::Encoder enc(*memory->model->model, opts);
    std::vector<uint64_t> assigned;
    msa::Status s = enc.add_documents(memory->bank.get(), texts, all_ids ? &ids : nullptr, &assigned);
    if (!s.ok()) return fail(s);
    if (out_ids)
      for (size_t i = 0; i < assigned.size() && i < n_docs; ++i) out_ids[i] = assigned[i];
    return to_c(msa::Status::Ok());
  });
}

MSA_API msa_status msa_memory_stats(const msa_memory* memory, msa_memory_usage* usage) {
  return guarded("msa_memory_stats", [&]() -> msa_status {
    MSA_CHECK_ARG(memory, "msa_memory_stats", "memory is NULL");
    MSA_CHECK_ARG(usage, "msa_memory_stats", "usage is NULL");
    MSA_CHECK_ARG(usage->struct_size >= offsetof(msa_memory_usage, text_bytes) + sizeof(int64_t),
                  "msa_memory_stats", "usage->struct_size is smaller than sizeof(msa_memory_usage)");
    memory->bank->lock_shared();
    msa::MemoryStats st = memory->bank->stats();
    memory->bank->unlock_shared();
    msa_memory_usage u;
    std::memset(&u, 0, sizeof u);
    u.struct_size = usage->struct_size < sizeof u ? usage->struct_size : static_cast<uint32_t>(sizeof u);
    u.n_documents = st.n_documents;
    u.n_chunks = st.n_chunks;
    u.n_tokens = st.n_tokens;
    u.routing_bytes = st.routing_bytes;
    u.content_bytes = st.content_bytes;
    u.text_bytes = st.text_bytes;
    std::memcpy(usage, &u, u.struct_size);
    return MSA_OK;
  });
}

}  // extern "C"
