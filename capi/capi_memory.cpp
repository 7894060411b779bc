// msa.h, "memory banks": create / add documents (stage 1) / stats / free.
#include <sys/stat.h>

#include <cstring>
#include <memory>
#include <unordered_set>
#include <string>
#include <string_view>
#include <vector>

#include "capi_internal.h"
#include "capi_memory.h"
#include "capi_model.h"
#include "core/limits.h"
#include "engine/encoder.h"
#include "memory/bank_fingerprint.h"
#include "memory/memory_bank.h"

using msa::capi::fail;
using msa::capi::guarded;
using msa::capi::to_c;

extern "C" {

MSA_API void msa_memory_params_init(msa_memory_params* params) {
  if (!params) return;
  std::memset(params, 0, sizeof *params);
  params->struct_size = sizeof *params;
  params->batch_tokens = 4096;
  params->page_dtype = MSA_PAGE_BF16;
  params->verify_on_open = 0;
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
    MSA_CHECK_ARG(p.page_dtype >= MSA_PAGE_F32 && p.page_dtype <= MSA_PAGE_INT8, "msa_memory_create",
                  "page_dtype must be MSA_PAGE_F32, MSA_PAGE_BF16 or MSA_PAGE_INT8");
    const msa::Model& m = *model->model;
    if (!m.config().msa.present || m.config().msa.router_layers.empty())
      return fail(MSA_ERR_INVALID_ARGUMENT,
                  "msa_memory_create: " + m.dir() + " is not an MSA checkpoint (no msa_config router layers)");
    if (!m.tokenizer())
      return fail(MSA_ERR_INVALID_ARGUMENT, "msa_memory_create: the model was loaded without its tokenizer");
    auto mem = std::make_unique<msa_memory>();
    mem->model = model;
    mem->params = p;
    msa::Status s = msa::create_memory_bank(model->dm(), &mem->bank, static_cast<msa::PageDType>(p.page_dtype));
    if (!s.ok()) return fail(s);
    mem->resident = std::make_unique<msa::ResidentBank>(model->backend());
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
    if (n_docs > static_cast<uint64_t>(msa::limits::kMaxDocumentsPerCall))
      return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": n_docs " + std::to_string(n_docs) +
                                                " is more than MSA_MAX_DOCUMENTS_PER_CALL (" +
                                                std::to_string(msa::limits::kMaxDocumentsPerCall) +
                                                "); add the documents in several calls");
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
    if (progress) {
      opts.progress = [progress, user_data](const msa::EncodeProgress& p) {
        return progress(p.documents_done, p.documents_total, p.tokens_done, p.tokens_total, user_data);
      };
    }
    msa::Encoder enc(memory->model->dm(), opts);
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
    msa::MemoryStats st;
    int64_t resident_bytes = 0;
    {
      msa::BankReadLock lock(memory->bank.get());
      st = memory->bank->stats();
      msa::Status rs = memory->resident->sync(*memory->bank);
      if (!rs.ok()) return fail(msa::Status(rs.code(), "msa_memory_stats: " + rs.message()));
      resident_bytes = memory->resident->routing_device_bytes();
    }
    msa_memory_usage u;
    std::memset(&u, 0, sizeof u);
    u.n_documents = st.n_documents;
    u.n_chunks = st.n_chunks;
    u.n_tokens = st.n_tokens;
    u.routing_bytes = st.routing_bytes;
    u.content_bytes = st.content_bytes;
    u.text_bytes = st.text_bytes;
    u.n_removed = st.n_removed;
    u.content_file_bytes = st.content_file_bytes;
    u.page_dtype = static_cast<int32_t>(st.dtype);
    u.routing_device_bytes = resident_bytes;
    // Filled up to the caller's struct_size (an older struct gets the fields it has, a newer one a zeroed tail).
    return msa::capi::fill_output(usage, u, "msa_memory_stats");
  });
}

MSA_API msa_status msa_memory_open(const msa_model* model, const char* path, const msa_memory_params* params,
                                   msa_memory** out_memory) {
  return guarded("msa_memory_open", [&]() -> msa_status {
    const char* fn = "msa_memory_open";
    MSA_CHECK_ARG(out_memory, fn, "out_memory is NULL");
    *out_memory = nullptr;
    MSA_CHECK_ARG(model, fn, "model is NULL");
    MSA_CHECK_ARG(path && *path, fn, "path is NULL or empty");
    msa_memory_params p;
    msa_memory_params_init(&p);
    if (msa_status st = msa::capi::copy_params(params, &p, fn)) return st;
    MSA_CHECK_ARG(p.batch_tokens > 0, fn, "batch_tokens must be > 0");
    const msa::Model& m = *model->model;
    if (!m.config().msa.present || m.config().msa.router_layers.empty())
      return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + m.dir() + " is not an MSA checkpoint");
    auto mem = std::make_unique<msa_memory>();
    mem->model = model;
    mem->params = p;
    const msa::bankfmt::Fingerprint fp = msa::model_fingerprint(m);
    msa::BankOpenOptions opts;
    opts.verify_content = p.verify_on_open != 0;
    msa::Status s = msa::MemoryBank::open(path, m.config(), &fp, opts, &mem->bank);
    if (!s.ok()) return fail(s);
    mem->params.page_dtype = static_cast<int32_t>(mem->bank->dtype());
    mem->resident = std::make_unique<msa::ResidentBank>(model->backend());
    *out_memory = mem.release();
    return to_c(msa::Status::Ok());
  });
}

MSA_API msa_status msa_memory_save(msa_memory* memory, const char* path) {
  return guarded("msa_memory_save", [&]() -> msa_status {
    MSA_CHECK_ARG(memory, "msa_memory_save", "memory is NULL");
    MSA_CHECK_ARG(path && *path, "msa_memory_save", "path is NULL or empty");
    return to_c(memory->bank->save(path));
  });
}

MSA_API msa_status msa_memory_remove_documents(msa_memory* memory, const uint64_t* ids, size_t n_ids) {
  return guarded("msa_memory_remove_documents", [&]() -> msa_status {
    const char* fn = "msa_memory_remove_documents";
    MSA_CHECK_ARG(memory, fn, "memory is NULL");
    MSA_CHECK_ARG(ids || n_ids == 0, fn, "ids is NULL");
    if (n_ids > static_cast<uint64_t>(msa::limits::kMaxDocumentsPerCall))
      return fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": n_ids " + std::to_string(n_ids) +
                                                " is more than MSA_MAX_DOCUMENTS_PER_CALL (" +
                                                std::to_string(msa::limits::kMaxDocumentsPerCall) +
                                                "); remove the documents in several calls");
    return to_c(memory->bank->remove(std::vector<uint64_t>(ids, ids + n_ids)));
  });
}

MSA_API msa_status msa_memory_compact(msa_memory* memory) {
  return guarded("msa_memory_compact", [&]() -> msa_status {
    MSA_CHECK_ARG(memory, "msa_memory_compact", "memory is NULL");
    return to_c(memory->bank->compact());
  });
}

MSA_API msa_status msa_memory_verify(const msa_memory* memory) {
  return guarded("msa_memory_verify", [&]() -> msa_status {
    MSA_CHECK_ARG(memory, "msa_memory_verify", "memory is NULL");
    return to_c(memory->bank->verify());
  });
}

MSA_API msa_status msa_memory_document_state(const msa_memory* memory, uint64_t id, int32_t* out_state) {
  return guarded("msa_memory_document_state", [&]() -> msa_status {
    MSA_CHECK_ARG(memory, "msa_memory_document_state", "memory is NULL");
    MSA_CHECK_ARG(out_state, "msa_memory_document_state", "out_state is NULL");
    memory->bank->lock_shared();
    *out_state = memory->bank->find(id) >= 0 ? 1 : memory->bank->is_removed_id(id) ? 2 : 0;
    memory->bank->unlock_shared();
    return MSA_OK;
  });
}

MSA_API msa_status msa_memory_file_info(const char* path, int verify, msa_memory_file_desc* desc) {
  return guarded("msa_memory_file_info", [&]() -> msa_status {
    const char* fn = "msa_memory_file_info";
    MSA_CHECK_ARG(path && *path, fn, "path is NULL or empty");
    MSA_CHECK_ARG(desc, fn, "desc is NULL");
    // Checked before the files are read: a bad size is an argument error whatever the directory holds.
    if (!msa::capi::is_layout_size<msa_memory_file_desc>(desc->struct_size))
      return msa::capi::fail_struct_size<msa_memory_file_desc>(fn, "desc", desc->struct_size);
    msa::BankFiles bf;
    msa::Status s = msa::read_bank_files(path, verify != 0, &bf);
    if (!s.ok()) return fail(s);
    const msa::bankfmt::Manifest& m = bf.manifest;
    const msa::bankfmt::Fingerprint& f = m.fp;
    msa_memory_file_desc d;
    std::memset(&d, 0, sizeof d);
    d.format_version = static_cast<int32_t>(msa::bankfmt::kFormatVersion);
    d.page_dtype = static_cast<int32_t>(f.page_dtype);
    d.n_segments = static_cast<int32_t>(bf.segments.size());
    d.generation = static_cast<int64_t>(m.generation);
    const std::unordered_set<uint64_t> tomb(m.tombstones.begin(), m.tombstones.end());
    struct stat st;
    if (::stat((std::string(path) + "/MANIFEST").c_str(), &st) == 0) d.file_bytes += st.st_size;
    for (const auto& seg : bf.segments) {
      d.file_bytes += static_cast<int64_t>(seg->file_size());
      d.n_chunks += static_cast<int64_t>(seg->n_chunks());
      d.content_bytes += static_cast<int64_t>(seg->content_bytes());
      const int64_t width = seg->n_kv_heads() * seg->head_dim();
      d.routing_bytes += static_cast<int64_t>(seg->n_chunks()) * seg->n_router_layers() *
                         static_cast<int64_t>(msa::page_row_bytes(seg->dtype(), width) +
                                              msa::page_row_scales(seg->dtype(), seg->n_kv_heads()) * sizeof(float));
      for (const auto& doc : seg->docs()) {
        if (tomb.count(doc.id)) {
          ++d.n_removed;
          continue;
        }
        ++d.n_documents;
        d.n_tokens += static_cast<int64_t>(doc.n_tokens);
        d.text_bytes += static_cast<int64_t>(doc.text.size());
      }
    }
    d.content_verified = verify != 0;
    d.n_layers = static_cast<int32_t>(f.num_hidden_layers);
    d.n_heads = static_cast<int32_t>(f.num_attention_heads);
    d.n_kv_heads = static_cast<int32_t>(f.num_key_value_heads);
    d.head_dim = static_cast<int32_t>(f.head_dim);
    d.n_router_layers = static_cast<int32_t>(f.n_router_layers);
    d.pooling_kernel_size = static_cast<int32_t>(f.pooling_kernel_size);
    d.decouple_router = static_cast<int32_t>(f.decouple_router);
    d.hidden_size = static_cast<int64_t>(f.hidden_size);
    d.vocab_size = static_cast<int64_t>(f.vocab_size);
    d.rope_theta = f.rope_theta;
    d.tokenizer_xxh64 = f.tokenizer_xxh64;
    d.weights_digest = f.weights_digest;
    msa::capi::copy_cstr(d.aux_loss_method, std::string(f.aux_loss_method, strnlen(f.aux_loss_method, 32)));
    // Up to the caller's struct_size; a newer, larger struct gets its unknown tail zeroed.
    return msa::capi::fill_output(desc, d, fn);
  });
}

}  // extern "C"
