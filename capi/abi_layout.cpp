// Frozen layout of every struct released in include/msa/msa.h. Each field's offset, size and type is
// asserted here, so removing, reordering, retyping or inserting a field fails the build. Fields may only be
// appended: a new field gets one MSA_ABI_FIELD line below (and the struct's first-release size in
// capi_internal.h never changes). The numbers are those of the LP64 ABIs libmsa ships for (x86-64 and
// aarch64 Linux); other targets skip the offset checks but keep the type checks.
// scripts/check_abi.sh (symbol list + abidiff) guards the same rules from the outside, on the built library.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "capi_internal.h"
#include "core/limits.h"

namespace msa::capi {
namespace {

#if defined(__LP64__) && (defined(__x86_64__) || defined(__aarch64__))
#define MSA_ABI_FIELD(T, f, off, size, ...)                                                          \
  static_assert(offsetof(T, f) == (off), #T "::" #f ": offset changed (fields are only appended)"); \
  static_assert(sizeof(T::f) == (size), #T "::" #f ": size changed");                             \
  static_assert(std::is_same<decltype(T::f), __VA_ARGS__>::value, #T "::" #f ": type changed")
#else
#define MSA_ABI_FIELD(T, f, off, size, ...) \
  static_assert(std::is_same<decltype(T::f), __VA_ARGS__>::value, #T "::" #f ": type changed")
#endif
// A size-tagged struct only grows: its released layout sizes (capi_internal.h Layouts<T>) strictly increase,
// start at the first release's size (never 0) and end at the current sizeof, so a new field must be
// recorded there as a new layout.
template <typename T>
constexpr bool layouts_grow() {
  for (size_t i = 1; i < Layouts<T>::count; ++i)
    if (Layouts<T>::sizes[i] <= Layouts<T>::sizes[i - 1]) return false;
  return true;
}
#define MSA_ABI_GROWS(T)                                                                                  \
  static_assert(kFirstReleaseSize<T> > sizeof(uint32_t), #T ": no first-release size recorded");          \
  static_assert(layouts_grow<T>(), #T ": layout sizes must strictly increase (fields are only appended)"); \
  MSA_ABI_CURRENT_SIZE(T)
#if defined(__LP64__) && (defined(__x86_64__) || defined(__aarch64__))
// (the recorded sizes are those of the LP64 ABIs)
#define MSA_ABI_CURRENT_SIZE(T)                                          \
  static_assert(Layouts<T>::sizes[Layouts<T>::count - 1] == sizeof(T), \
                #T ": sizeof changed: append the new size to Layouts<" #T "> in capi_internal.h")
#else
#define MSA_ABI_CURRENT_SIZE(T)
#endif

// msa_model_params
MSA_ABI_GROWS(msa_model_params);
MSA_ABI_FIELD(msa_model_params, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_model_params, n_threads, 4, 4, int32_t);
MSA_ABI_FIELD(msa_model_params, backend, 8, 4, int32_t);
MSA_ABI_FIELD(msa_model_params, load_tokenizer, 12, 4, int32_t);
MSA_ABI_FIELD(msa_model_params, device, 16, 4, int32_t);
MSA_ABI_FIELD(msa_model_params, cuda_stream, 24, 8, void*);

// msa_model_desc
MSA_ABI_GROWS(msa_model_desc);
MSA_ABI_FIELD(msa_model_desc, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_model_desc, vocab_size, 8, 8, int64_t);
MSA_ABI_FIELD(msa_model_desc, hidden_size, 16, 8, int64_t);
MSA_ABI_FIELD(msa_model_desc, intermediate_size, 24, 8, int64_t);
MSA_ABI_FIELD(msa_model_desc, n_layers, 32, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, n_heads, 36, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, n_kv_heads, 40, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, head_dim, 44, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, n_router_layers, 48, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, pooling_kernel_size, 52, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, decouple_router, 56, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, tie_word_embeddings, 60, 4, int32_t);
MSA_ABI_FIELD(msa_model_desc, n_parameters, 64, 8, int64_t);
MSA_ABI_FIELD(msa_model_desc, max_position_embeddings, 72, 8, int64_t);
MSA_ABI_FIELD(msa_model_desc, rope_theta, 80, 8, double);
MSA_ABI_FIELD(msa_model_desc, rms_norm_eps, 88, 8, double);
MSA_ABI_FIELD(msa_model_desc, weight_dtype, 96, 16, char[16]);
MSA_ABI_FIELD(msa_model_desc, aux_loss_method, 112, 32, char[32]);
MSA_ABI_FIELD(msa_model_desc, backend, 144, 32, char[32]);
MSA_ABI_FIELD(msa_model_desc, device, 176, 128, char[128]);
MSA_ABI_FIELD(msa_model_desc, device_weight_bytes, 304, 8, int64_t);

// msa_checkpoint_params
MSA_ABI_GROWS(msa_checkpoint_params);
MSA_ABI_FIELD(msa_checkpoint_params, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_checkpoint_params, preset, 8, 8, const char*);
MSA_ABI_FIELD(msa_checkpoint_params, seed, 16, 8, uint64_t);
MSA_ABI_FIELD(msa_checkpoint_params, tokenizer_dir, 24, 8, const char*);
MSA_ABI_FIELD(msa_checkpoint_params, msa_config_json, 32, 8, const char*);

// msa_tokenizer_desc
MSA_ABI_GROWS(msa_tokenizer_desc);
MSA_ABI_FIELD(msa_tokenizer_desc, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_tokenizer_desc, vocab_size, 4, 4, int32_t);
MSA_ABI_FIELD(msa_tokenizer_desc, n_added_tokens, 8, 4, int32_t);
MSA_ABI_FIELD(msa_tokenizer_desc, bos_id, 12, 4, int32_t);
MSA_ABI_FIELD(msa_tokenizer_desc, eos_id, 16, 4, int32_t);
MSA_ABI_FIELD(msa_tokenizer_desc, pad_id, 20, 4, int32_t);
MSA_ABI_FIELD(msa_tokenizer_desc, max_token_bytes, 24, 4, int32_t);

// msa_memory_params
MSA_ABI_GROWS(msa_memory_params);
MSA_ABI_FIELD(msa_memory_params, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_memory_params, batch_tokens, 4, 4, int32_t);
MSA_ABI_FIELD(msa_memory_params, page_dtype, 8, 4, int32_t);
MSA_ABI_FIELD(msa_memory_params, verify_on_open, 12, 4, int32_t);

// msa_memory_file_desc
MSA_ABI_GROWS(msa_memory_file_desc);
MSA_ABI_FIELD(msa_memory_file_desc, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_memory_file_desc, format_version, 4, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, page_dtype, 8, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_segments, 12, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, generation, 16, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_documents, 24, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_removed, 32, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_chunks, 40, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_tokens, 48, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, routing_bytes, 56, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, content_bytes, 64, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, text_bytes, 72, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, file_bytes, 80, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, content_verified, 88, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_layers, 92, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_heads, 96, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_kv_heads, 100, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, head_dim, 104, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, n_router_layers, 108, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, pooling_kernel_size, 112, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, decouple_router, 116, 4, int32_t);
MSA_ABI_FIELD(msa_memory_file_desc, hidden_size, 120, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, vocab_size, 128, 8, int64_t);
MSA_ABI_FIELD(msa_memory_file_desc, rope_theta, 136, 8, double);
MSA_ABI_FIELD(msa_memory_file_desc, tokenizer_xxh64, 144, 8, uint64_t);
MSA_ABI_FIELD(msa_memory_file_desc, weights_digest, 152, 8, uint64_t);
MSA_ABI_FIELD(msa_memory_file_desc, aux_loss_method, 160, 32, char[32]);

// msa_document
static_assert(sizeof(msa_document) == 32 && alignof(msa_document) == 8,
              "msa_document: array element, size is fixed");
MSA_ABI_FIELD(msa_document, text, 0, 8, const char*);
MSA_ABI_FIELD(msa_document, text_len, 8, 8, size_t);
MSA_ABI_FIELD(msa_document, id, 16, 8, uint64_t);
MSA_ABI_FIELD(msa_document, has_id, 24, 4, int32_t);

// msa_memory_usage
MSA_ABI_GROWS(msa_memory_usage);
MSA_ABI_FIELD(msa_memory_usage, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_memory_usage, n_documents, 8, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, n_chunks, 16, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, n_tokens, 24, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, routing_bytes, 32, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, content_bytes, 40, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, text_bytes, 48, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, n_removed, 56, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, content_file_bytes, 64, 8, int64_t);
MSA_ABI_FIELD(msa_memory_usage, page_dtype, 72, 4, int32_t);
MSA_ABI_FIELD(msa_memory_usage, routing_device_bytes, 80, 8, int64_t);

// msa_generate_params
MSA_ABI_GROWS(msa_generate_params);
MSA_ABI_FIELD(msa_generate_params, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_generate_params, top_k, 4, 4, int32_t);
MSA_ABI_FIELD(msa_generate_params, max_new_tokens, 8, 4, int32_t);
MSA_ABI_FIELD(msa_generate_params, temperature, 12, 4, float);
MSA_ABI_FIELD(msa_generate_params, top_p, 16, 4, float);
MSA_ABI_FIELD(msa_generate_params, sampling_top_k, 20, 4, int32_t);
MSA_ABI_FIELD(msa_generate_params, seed, 24, 8, uint64_t);
MSA_ABI_FIELD(msa_generate_params, interleave, 32, 4, int32_t);
MSA_ABI_FIELD(msa_generate_params, max_rounds, 36, 4, int32_t);
MSA_ABI_FIELD(msa_generate_params, first_position, 40, 4, int32_t);
MSA_ABI_FIELD(msa_generate_params, logits_callback, 48, 8, msa_logits_callback);
MSA_ABI_FIELD(msa_generate_params, logits_user_data, 56, 8, void*);

// msa_timings
MSA_ABI_GROWS(msa_timings);
MSA_ABI_FIELD(msa_timings, struct_size, 0, 4, uint32_t);
MSA_ABI_FIELD(msa_timings, prefill_ms, 8, 8, double);
MSA_ABI_FIELD(msa_timings, ttft_ms, 16, 8, double);
MSA_ABI_FIELD(msa_timings, decode_ms, 24, 8, double);
MSA_ABI_FIELD(msa_timings, decode_tokens_per_s, 32, 8, double);
MSA_ABI_FIELD(msa_timings, total_ms, 40, 8, double);
MSA_ABI_FIELD(msa_timings, prompt_tokens, 48, 8, int64_t);
MSA_ABI_FIELD(msa_timings, generated_tokens, 56, 8, int64_t);

// Enumerations: values are part of the ABI (msa_status is asserted against msa::StatusCode in capi_core.cpp).
static_assert(MSA_BACKEND_CPU == 0 && MSA_BACKEND_CUDA == 1, "msa_backend values are stable");
static_assert(MSA_LOG_DEBUG == 0 && MSA_LOG_INFO == 1 && MSA_LOG_WARN == 2 && MSA_LOG_ERROR == 3,
              "msa_log_level values are stable");
static_assert(MSA_OK == 0 && MSA_ERR_NO_DEVICE == 20 && MSA_ERR_BUSY == 21, "msa_status values are stable");
static_assert(MSA_PARAMS_MODEL == 0 && MSA_PARAMS_CHECKPOINT == 1 && MSA_PARAMS_MEMORY == 2 &&
                  MSA_PARAMS_GENERATE == 3,
              "msa_params_kind values are stable");
static_assert(sizeof(msa_status) == sizeof(int), "enums are int-sized");

// Limits: the public macros and the engine's constants (src/core/limits.h) are the same numbers.
static_assert(MSA_MAX_THREADS == limits::kMaxThreads && MSA_MAX_LAYERS == limits::kMaxLayers &&
                  MSA_MAX_VOCAB == limits::kMaxVocab && MSA_MAX_DOCUMENTS_PER_CALL == limits::kMaxDocumentsPerCall &&
                  MSA_MAX_BANK_DOCUMENTS == limits::kMaxBankDocuments &&
                  MSA_MAX_DOCUMENT_TOKENS == limits::kMaxDocumentTokens &&
                  MSA_MAX_PROMPT_TOKENS == limits::kMaxPromptTokens && MSA_MAX_ROUNDS == limits::kMaxRounds,
              "msa.h MSA_MAX_* and src/core/limits.h agree");

// Callback signatures.
static_assert(std::is_same<msa_log_callback, void (*)(msa_log_level, const char*, void*)>::value, "");
static_assert(std::is_same<msa_progress_callback, int (*)(int64_t, int64_t, int64_t, int64_t, void*)>::value, "");
static_assert(std::is_same<msa_token_callback, int (*)(const char*, size_t, void*)>::value, "");
static_assert(std::is_same<msa_logits_callback,
                           int (*)(int32_t, int64_t, int64_t, float*, int64_t, void*)>::value, "");

#undef MSA_ABI_FIELD
#undef MSA_ABI_GROWS
#undef MSA_ABI_CURRENT_SIZE

}  // namespace
}  // namespace msa::capi
