// msa.h, "tokenizer" section: standalone tokenizer handle, model forwards, streaming detokenizer.
//
// Handle convention: a `msa_tokenizer*` IS a `msa::Tokenizer*` (the struct is never defined; pointers are
// converted with to_handle/from_handle below). msa_model_tokenizer (capi_model.cpp) therefore returns
// `reinterpret_cast<const msa_tokenizer*>(model->model->tokenizer())`.
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "capi_internal.h"
#include "tokenizer/tokenizer.h"

using msa::capi::fail;
using msa::capi::guarded;
using msa::capi::to_c;

struct msa_detokenizer {
  msa::StreamingDecoder dec;
  explicit msa_detokenizer(const msa::Tokenizer& t, bool skip) : dec(t, skip) {}
};

namespace {

const msa::Tokenizer* from_handle(const msa_tokenizer* t) { return reinterpret_cast<const msa::Tokenizer*>(t); }
msa_tokenizer* to_handle(msa::Tokenizer* t) { return reinterpret_cast<msa_tokenizer*>(t); }

// Copies `text` into (out, cap): needs cap >= size; a NUL follows when cap > size.
msa_status put_text(const char* fn, const std::string& text, char* out, size_t cap, size_t* out_len) {
  *out_len = text.size();
  if (cap < text.size())
    return fail(MSA_ERR_BUFFER_TOO_SMALL, std::string(fn) + ": the text needs " + std::to_string(text.size()) +
                                              " bytes (+1 for the NUL), the buffer has " + std::to_string(cap));
  if (!text.empty()) std::memcpy(out, text.data(), text.size());
  if (cap > text.size()) out[text.size()] = '\0';
  msa::capi::clear_last_error();
  return MSA_OK;
}

msa_status tokenize_impl(const char* fn, const msa::Tokenizer* t, const char* text, size_t len, int add_special,
                         int32_t* out_ids, size_t cap, size_t* out_n) {
  MSA_CHECK_ARG(out_n, fn, "out_n_ids is NULL");
  *out_n = 0;
  MSA_CHECK_ARG(text || len == 0, fn, "text is NULL");
  MSA_CHECK_ARG(out_ids || cap == 0, fn, "out_ids is NULL and cap > 0");
  std::vector<int32_t> ids;
  msa::EncodeOptions o;
  o.add_special = add_special != 0;
  msa::Status s = t->encode(std::string_view(text ? text : "", len), o, &ids);
  if (!s.ok()) return fail(s);
  *out_n = ids.size();
  if (cap < ids.size())
    return fail(MSA_ERR_BUFFER_TOO_SMALL, std::string(fn) + ": " + std::to_string(ids.size()) +
                                              " ids, the buffer holds " + std::to_string(cap));
  if (!ids.empty()) std::memcpy(out_ids, ids.data(), ids.size() * sizeof(int32_t));
  msa::capi::clear_last_error();
  return MSA_OK;
}

msa_status detokenize_impl(const char* fn, const msa::Tokenizer* t, const int32_t* ids, size_t n, int skip_special,
                           char* out, size_t cap, size_t* out_len) {
  MSA_CHECK_ARG(out_len, fn, "out_len is NULL");
  *out_len = 0;
  MSA_CHECK_ARG(ids || n == 0, fn, "ids is NULL");
  MSA_CHECK_ARG(out || cap == 0, fn, "out_text is NULL and cap > 0");
  std::string text;
  msa::Status s = t->decode(ids, n, skip_special != 0, &text);
  if (!s.ok()) return fail(s);
  return put_text(fn, text, out, cap, out_len);
}

msa_status piece_impl(const char* fn, const msa::Tokenizer* t, int32_t id, char* out, size_t cap, size_t* out_len) {
  MSA_CHECK_ARG(out_len, fn, "out_len is NULL");
  *out_len = 0;
  MSA_CHECK_ARG(out || cap == 0, fn, "out is NULL and cap > 0");
  std::string_view b;
  msa::Status s = t->token_bytes(id, &b);
  if (!s.ok()) return fail(msa::Status(s.code(), std::string(fn) + ": " + s.message()));
  return put_text(fn, std::string(b), out, cap, out_len);
}

}  // namespace

extern "C" {

MSA_API msa_status msa_tokenizer_load(const char* tokenizer_json_path, msa_tokenizer** out_tokenizer) {
  return guarded("msa_tokenizer_load", [&]() -> msa_status {
    MSA_CHECK_ARG(out_tokenizer, "msa_tokenizer_load", "out_tokenizer is NULL");
    *out_tokenizer = nullptr;
    MSA_CHECK_ARG(tokenizer_json_path, "msa_tokenizer_load", "tokenizer_json_path is NULL");
    std::unique_ptr<msa::Tokenizer> t;
    msa::Status s = msa::Tokenizer::load(tokenizer_json_path, &t);
    if (!s.ok()) return fail(s);
    *out_tokenizer = to_handle(t.release());
    return to_c(msa::Status::Ok());
  });
}

MSA_API void msa_tokenizer_free(msa_tokenizer* tokenizer) {
  delete reinterpret_cast<msa::Tokenizer*>(tokenizer);
}

MSA_API msa_status msa_tokenizer_info(const msa_tokenizer* tokenizer, msa_tokenizer_desc* info) {
  return guarded("msa_tokenizer_info", [&]() -> msa_status {
    MSA_CHECK_ARG(tokenizer, "msa_tokenizer_info", "tokenizer is NULL");
    MSA_CHECK_ARG(info, "msa_tokenizer_info", "info is NULL");
    const msa::Tokenizer* t = from_handle(tokenizer);
    msa_tokenizer_desc d;
    std::memset(&d, 0, sizeof d);
    d.vocab_size = t->vocab_size();
    d.n_added_tokens = static_cast<int32_t>(t->added_tokens().size());
    d.bos_id = t->bos_id();
    d.eos_id = t->eos_id();
    d.pad_id = t->pad_id();
    d.max_token_bytes = static_cast<int32_t>(t->max_token_bytes());
    if (msa_status st = msa::capi::fill_output(info, d, "msa_tokenizer_info")) return st;
    return to_c(msa::Status::Ok());
  });
}

MSA_API msa_status msa_tokenizer_tokenize(const msa_tokenizer* tokenizer, const char* text, size_t text_len,
                                          int add_special, int32_t* out_ids, size_t cap, size_t* out_n_ids) {
  return guarded("msa_tokenizer_tokenize", [&]() -> msa_status {
    MSA_CHECK_ARG(tokenizer, "msa_tokenizer_tokenize", "tokenizer is NULL");
    return tokenize_impl("msa_tokenizer_tokenize", from_handle(tokenizer), text, text_len, add_special, out_ids, cap,
                         out_n_ids);
  });
}

MSA_API msa_status msa_tokenizer_detokenize(const msa_tokenizer* tokenizer, const int32_t* ids, size_t n_ids,
                                            int skip_special, char* out_text, size_t cap, size_t* out_len) {
  return guarded("msa_tokenizer_detokenize", [&]() -> msa_status {
    MSA_CHECK_ARG(tokenizer, "msa_tokenizer_detokenize", "tokenizer is NULL");
    return detokenize_impl("msa_tokenizer_detokenize", from_handle(tokenizer), ids, n_ids, skip_special, out_text,
                           cap, out_len);
  });
}

MSA_API msa_status msa_tokenizer_token_to_piece(const msa_tokenizer* tokenizer, int32_t id, char* out, size_t cap,
                                                size_t* out_len) {
  return guarded("msa_tokenizer_token_to_piece", [&]() -> msa_status {
    MSA_CHECK_ARG(tokenizer, "msa_tokenizer_token_to_piece", "tokenizer is NULL");
    return piece_impl("msa_tokenizer_token_to_piece", from_handle(tokenizer), id, out, cap, out_len);
  });
}

MSA_API msa_status msa_tokenizer_token_to_id(const msa_tokenizer* tokenizer, const char* token, size_t token_len,
                                             int32_t* out_id) {
  return guarded("msa_tokenizer_token_to_id", [&]() -> msa_status {
    MSA_CHECK_ARG(out_id, "msa_tokenizer_token_to_id", "out_id is NULL");
    *out_id = -1;
    MSA_CHECK_ARG(tokenizer, "msa_tokenizer_token_to_id", "tokenizer is NULL");
    MSA_CHECK_ARG(token || token_len == 0, "msa_tokenizer_token_to_id", "token is NULL");
    int32_t id = from_handle(tokenizer)->token_to_id(std::string_view(token ? token : "", token_len));
    if (id < 0)
      return fail(MSA_ERR_INVALID_ARGUMENT, "msa_tokenizer_token_to_id: no token has exactly these bytes");
    *out_id = id;
    return to_c(msa::Status::Ok());
  });
}

static const msa::Tokenizer* model_tok(const char* fn, const msa_model* model, msa_status* st) {
  if (!model) {
    *st = fail(MSA_ERR_INVALID_ARGUMENT, std::string(fn) + ": model is NULL");
    return nullptr;
  }
  const msa_tokenizer* t = msa_model_tokenizer(model);
  if (!t) {
    *st = fail(MSA_ERR_TOKENIZER, std::string(fn) +
                                      ": the model has no tokenizer (loaded with load_tokenizer = 0, or none found)");
    return nullptr;
  }
  *st = MSA_OK;
  return from_handle(t);
}

MSA_API msa_status msa_tokenize(const msa_model* model, const char* text, size_t text_len, int add_special,
                                int32_t* out_ids, size_t cap, size_t* out_n_ids) {
  return guarded("msa_tokenize", [&]() -> msa_status {
    if (out_n_ids) *out_n_ids = 0;
    msa_status st;
    const msa::Tokenizer* t = model_tok("msa_tokenize", model, &st);
    if (!t) return st;
    return tokenize_impl("msa_tokenize", t, text, text_len, add_special, out_ids, cap, out_n_ids);
  });
}

MSA_API msa_status msa_detokenize(const msa_model* model, const int32_t* ids, size_t n_ids, int skip_special,
                                  char* out_text, size_t cap, size_t* out_len) {
  return guarded("msa_detokenize", [&]() -> msa_status {
    if (out_len) *out_len = 0;
    msa_status st;
    const msa::Tokenizer* t = model_tok("msa_detokenize", model, &st);
    if (!t) return st;
    return detokenize_impl("msa_detokenize", t, ids, n_ids, skip_special, out_text, cap, out_len);
  });
}

MSA_API msa_status msa_token_to_piece(const msa_model* model, int32_t id, char* out, size_t cap, size_t* out_len) {
  return guarded("msa_token_to_piece", [&]() -> msa_status {
    if (out_len) *out_len = 0;
    msa_status st;
    const msa::Tokenizer* t = model_tok("msa_token_to_piece", model, &st);
    if (!t) return st;
    return piece_impl("msa_token_to_piece", t, id, out, cap, out_len);
  });
}

MSA_API msa_status msa_detokenizer_create(const msa_tokenizer* tokenizer, int skip_special,
                                          msa_detokenizer** out_detokenizer) {
  return guarded("msa_detokenizer_create", [&]() -> msa_status {
    MSA_CHECK_ARG(out_detokenizer, "msa_detokenizer_create", "out_detokenizer is NULL");
    *out_detokenizer = nullptr;
    MSA_CHECK_ARG(tokenizer, "msa_detokenizer_create", "tokenizer is NULL");
    *out_detokenizer = new msa_detokenizer(*from_handle(tokenizer), skip_special != 0);
    return to_c(msa::Status::Ok());
  });
}

MSA_API msa_status msa_detokenizer_push(msa_detokenizer* detokenizer, int32_t id, char* out_text, size_t cap,
                                        size_t* out_len) {
  return guarded("msa_detokenizer_push", [&]() -> msa_status {
    MSA_CHECK_ARG(out_len, "msa_detokenizer_push", "out_len is NULL");
    *out_len = 0;
    MSA_CHECK_ARG(detokenizer, "msa_detokenizer_push", "detokenizer is NULL");
    MSA_CHECK_ARG(out_text || cap == 0, "msa_detokenizer_push", "out_text is NULL and cap > 0");
    msa::StreamingDecoder next = detokenizer->dec;  // commit only when the text fits
    std::string text;
    msa::Status s = next.push(id, &text);
    if (!s.ok()) return fail(msa::Status(s.code(), "msa_detokenizer_push: " + s.message()));
    msa_status st = put_text("msa_detokenizer_push", text, out_text, cap, out_len);
    if (st == MSA_OK) detokenizer->dec = next;
    return st;
  });
}

MSA_API msa_status msa_detokenizer_flush(msa_detokenizer* detokenizer, char* out_text, size_t cap, size_t* out_len) {
  return guarded("msa_detokenizer_flush", [&]() -> msa_status {
    MSA_CHECK_ARG(out_len, "msa_detokenizer_flush", "out_len is NULL");
    *out_len = 0;
    MSA_CHECK_ARG(detokenizer, "msa_detokenizer_flush", "detokenizer is NULL");
    MSA_CHECK_ARG(out_text || cap == 0, "msa_detokenizer_flush", "out_text is NULL and cap > 0");
    msa::StreamingDecoder next = detokenizer->dec;
    std::string text;
    next.flush(&text);
    msa_status st = put_text("msa_detokenizer_flush", text, out_text, cap, out_len);
    if (st == MSA_OK) detokenizer->dec = next;
    return st;
  });
}

MSA_API void msa_detokenizer_free(msa_detokenizer* detokenizer) { delete detokenizer; }

}  // extern "C"
