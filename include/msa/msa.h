/*
 * libmsa — embeddable inference for Memory Sparse Attention (MSA) language models.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - Every fallible function returns msa_status (MSA_OK == 0). On failure, msa_last_error() returns a
 *    message for the calling thread (valid until that thread's next libmsa call).
 *  - Opaque handles are created by msa_*_load/create and released by the matching msa_*_free, which
 *    accepts NULL.
 *  - Parameter structs begin with `uint32_t struct_size`; fill them with msa_*_params_init() and then
 *    change fields. Fields are only ever appended.
 *  - No exception, abort or exit crosses this boundary.
 *
 * This header is C99 and also valid C++.
 */
#ifndef MSA_MSA_H
#define MSA_MSA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(MSA_BUILDING_LIBRARY)
#    define MSA_API __declspec(dllexport)
#  else
#    define MSA_API __declspec(dllimport)
#  endif
#else
#  define MSA_API __attribute__((visibility("default")))
#endif

#define MSA_VERSION_MAJOR 0
#define MSA_VERSION_MINOR 1
#define MSA_VERSION_PATCH 0

/* ---------------------------------------------------------------- status codes (values are stable) */
typedef enum msa_status {
  MSA_OK = 0,
  MSA_ERR_INVALID_ARGUMENT = 1,  /* bad argument: NULL pointer, value out of range */
  MSA_ERR_IO = 2,                /* a file could not be opened, read, written or mapped */
  MSA_ERR_TRUNCATED = 3,         /* a file is shorter than its own contents say */
  MSA_ERR_BAD_HEADER = 4,        /* a file header is malformed (length past end, bad JSON, bad magic) */
  MSA_ERR_TENSOR_OVERLAP = 5,    /* two tensors of a safetensors file share bytes */
  MSA_ERR_DTYPE = 6,             /* unsupported or unexpected element type */
  MSA_ERR_MISSING_TENSOR = 7,    /* a tensor the model needs is absent */
  MSA_ERR_UNEXPECTED_TENSOR = 8, /* the checkpoint has tensors this model does not use */
  MSA_ERR_SHAPE = 9,             /* a tensor has the wrong shape or byte span */
  MSA_ERR_CONFIG = 10,           /* config.json is malformed or inconsistent */
  MSA_ERR_UNSUPPORTED = 11,      /* valid input that this build does not implement */
  MSA_ERR_OUT_OF_MEMORY = 12,
  MSA_ERR_BUFFER_TOO_SMALL = 13, /* output buffer too small; the needed size was reported */
  MSA_ERR_CANCELLED = 14,        /* a callback returned non-zero */
  MSA_ERR_TOKENIZER = 15,        /* tokenizer.json / tokenizer_config.json problem */
  MSA_ERR_CORRUPT = 16,          /* checksum mismatch or impossible content */
  MSA_ERR_CONTEXT_OVERFLOW = 17, /* input longer than the model's positions or the context limit */
  MSA_ERR_INVALID_UTF8 = 18,     /* text is not valid UTF-8 where UTF-8 is required */
  MSA_ERR_INTERNAL = 19,         /* a bug in libmsa; please report it */
  MSA_ERR_NO_DEVICE = 20         /* a GPU backend was requested but no device is present */
} msa_status;

/* ---------------------------------------------------------------- library */

/* "MAJOR.MINOR.PATCH" of the loaded library. Static storage; never NULL. Thread-safe. */
MSA_API const char *msa_version(void);

/* Packed version of the loaded library: MAJOR*10000 + MINOR*100 + PATCH. Thread-safe. */
MSA_API uint32_t msa_version_number(void);

/* The enum name of a status ("MSA_ERR_IO"). Static storage; never NULL. Thread-safe. */
MSA_API const char *msa_status_string(msa_status status);

/* The message of the last failed call made by this thread ("" if none). Owned by the library, valid
 * until the same thread's next libmsa call. Thread-safe (thread-local). */
MSA_API const char *msa_last_error(void);

typedef enum msa_log_level {
  MSA_LOG_DEBUG = 0,
  MSA_LOG_INFO = 1,
  MSA_LOG_WARN = 2,
  MSA_LOG_ERROR = 3
} msa_log_level;

typedef void (*msa_log_callback)(msa_log_level level, const char *message, void *user_data);

/* Routes library log messages of at least `min_level` to `callback` (NULL: stderr, the default).
 * The callback may be called from any library thread, but never concurrently. Thread-safe. */
MSA_API void msa_log_set(msa_log_callback callback, void *user_data, msa_log_level min_level);

/* ---------------------------------------------------------------- model */

typedef struct msa_model msa_model;

typedef enum msa_backend {
  MSA_BACKEND_CPU = 0,
  MSA_BACKEND_CUDA = 1
} msa_backend;

typedef struct msa_model_params {
  uint32_t struct_size;   /* sizeof(msa_model_params), set by msa_model_params_init */
  int32_t n_threads;      /* CPU threads; 0 = all hardware threads (default) */
  int32_t backend;        /* msa_backend; default MSA_BACKEND_CPU */
  int32_t load_tokenizer; /* non-zero (default): tokenizer.json must be present and is loaded */
} msa_model_params;

/* Fills defaults. `params` must not be NULL. Thread-safe. */
MSA_API void msa_model_params_init(msa_model_params *params);

/* Loads a checkpoint directory (config.json, model.safetensors or model.safetensors.index.json + shards,
 * tokenizer.json). `params` may be NULL for defaults. On success *out_model owns the model; release it
 * with msa_model_free. On failure *out_model is NULL.
 * Errors: MSA_ERR_INVALID_ARGUMENT, MSA_ERR_IO, MSA_ERR_CONFIG, MSA_ERR_BAD_HEADER, MSA_ERR_TRUNCATED,
 * MSA_ERR_TENSOR_OVERLAP, MSA_ERR_DTYPE, MSA_ERR_MISSING_TENSOR, MSA_ERR_UNEXPECTED_TENSOR, MSA_ERR_SHAPE,
 * MSA_ERR_UNSUPPORTED, MSA_ERR_TOKENIZER, MSA_ERR_OUT_OF_MEMORY.
 * Thread-safe. A loaded model is immutable and may be used from several threads at once. */
MSA_API msa_status msa_model_load(const char *dir, const msa_model_params *params, msa_model **out_model);

/* Releases a model. NULL is accepted. No other call may be using the model. */
MSA_API void msa_model_free(msa_model *model);

typedef struct msa_model_desc {
  uint32_t struct_size;  /* caller sets sizeof(msa_model_desc) (or an older, smaller size) */
  int64_t vocab_size;
  int64_t hidden_size;
  int64_t intermediate_size;
  int32_t n_layers;
  int32_t n_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  int32_t n_router_layers;   /* 0 for a plain Qwen3 checkpoint */
  int32_t pooling_kernel_size;
  int32_t decouple_router;
  int32_t tie_word_embeddings;
  int64_t n_parameters;
  int64_t max_position_embeddings;
  double rope_theta;
  double rms_norm_eps;
  char weight_dtype[16];     /* "BF16", "F16", "F32" (of the projection weights) */
  char aux_loss_method[32];  /* as written in msa_config, truncated */
} msa_model_desc;

/* Fills `info` up to info->struct_size bytes. Errors: MSA_ERR_INVALID_ARGUMENT (NULL, or struct_size
 * smaller than the first release's size). Thread-safe. */
MSA_API msa_status msa_model_info(const msa_model *model, msa_model_desc *info);

/* Computes the logits of the last position of `tokens` (a plain causal forward of the backbone, positions
 * 0..n-1). `out_logits` must hold `cap` floats; cap >= vocab_size. Errors: MSA_ERR_INVALID_ARGUMENT
 * (NULL, n_tokens <= 0, a token id outside [0, vocab_size)), MSA_ERR_BUFFER_TOO_SMALL,
 * MSA_ERR_CONTEXT_OVERFLOW. Thread-safe (the model is only read). */
MSA_API msa_status msa_model_logits(const msa_model *model, const int32_t *tokens, int32_t n_tokens,
                                    float *out_logits, int64_t cap);

/* ---------------------------------------------------------------- random checkpoints */

/* Writes a checkpoint with random weights in the exact MSA-4B layout into `out_dir` (created if needed):
 * config.json (model_type "msa", full msa_config block), generation_config.json, model.safetensors (bf16)
 * and, when `tokenizer_dir` is not NULL, copies of its tokenizer.json and tokenizer_config.json.
 * `preset`: "tiny" (4 layers, hidden 128, the full 151,936-token Qwen3 vocabulary; ~20 M parameters) or
 * "msa-4b-shape" (the real MSA-4B shapes, ~4.3 B parameters, 8.5 GB: for benchmarks). The same seed gives
 * the same bytes on every machine and thread count. Errors: MSA_ERR_INVALID_ARGUMENT (NULL out_dir or
 * preset, unknown preset), MSA_ERR_TOKENIZER (tokenizer files missing), MSA_ERR_IO. Thread-safe (distinct
 * output directories). */
MSA_API msa_status msa_checkpoint_init(const char *preset, uint64_t seed, const char *tokenizer_dir,
                                       const char *out_dir);

#ifdef __cplusplus
}
#endif

#endif /* MSA_MSA_H */
