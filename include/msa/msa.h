/*
 * libmsa — embeddable inference for Memory Sparse Attention (MSA) language models.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - Every fallible function returns msa_status (MSA_OK == 0). On failure, msa_last_error() returns a
 *    message for the calling thread (valid until that thread's next libmsa call). Each function lists the
 *    codes its input can cause; any of them may also return MSA_ERR_OUT_OF_MEMORY (an allocation failed)
 *    and MSA_ERR_INTERNAL (a bug in libmsa). tests/e2e/test_error_codes_c99.c checks every listed code.
 *  - Opaque handles are created by msa_*_load/create and released by the matching msa_*_free, which
 *    accepts NULL.
 *  - Parameter structs begin with `uint32_t struct_size` and are passed by pointer; fill them with
 *    msa_params_init(kind, &params, sizeof params) (it never writes past sizeof params, also when the
 *    loaded library is newer) or msa_*_params_init(), then change fields. Fields are only ever appended.
 *    The library accepts an older struct (struct_size = the sizeof of a released layout), treating the fields
 *    past struct_size as their defaults, and a larger (newer) one only when every byte it does not know is
 *    zero; any other struct_size (0, 6: half a field, one between two layouts) is MSA_ERR_INVALID_ARGUMENT.
 *  - Output structs (msa_*_desc, msa_memory_usage, msa_timings): the caller sets
 *    struct_size to sizeof; the library fills the fields it knows up to that size, zeroes the bytes of a
 *    newer, larger struct past its own, and sets struct_size to the number of bytes it filled. A struct_size
 *    that is neither a released layout's size nor at least the library's is MSA_ERR_INVALID_ARGUMENT.
 *  - Thread-safety is stated per function. "Thread-safe" means the call may run concurrently with any
 *    other call on the same objects, except their msa_*_free.
 *  - No exception, abort or exit crosses this boundary.
 *
 * ABI: the shared library is libmsa.so.MAJOR (SONAME); within one major version symbols are never removed
 * and struct layouts only grow at the end (checked in CI by scripts/check_abi.sh). Check at start-up that
 * the loaded library serves this header: `if (!MSA_CHECK_VERSION()) ...`.
 * C++: include <msa/msa.hpp> for RAII wrappers (header-only, over this API).
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
#define MSA_VERSION_MINOR 2
#define MSA_VERSION_PATCH 0
/* The header's packed version, comparable with msa_version_number(). */
#define MSA_VERSION_NUMBER (MSA_VERSION_MAJOR * 10000 + MSA_VERSION_MINOR * 100 + MSA_VERSION_PATCH)

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
  MSA_ERR_NO_DEVICE = 20,        /* a GPU backend was requested but no device is present */
  MSA_ERR_BUSY = 21              /* another writer holds the memory bank directory (BANK/LOCK) */
} msa_status;

/* ---------------------------------------------------------------- limits
 * Every count a file or a caller can set is bounded; a larger value is refused with a clear error before
 * anything is allocated (MSA_ERR_CONFIG / MSA_ERR_TOKENIZER for files, MSA_ERR_INVALID_ARGUMENT for call
 * arguments). The values are part of the API contract and only ever grow. */
#define MSA_MAX_THREADS 1024                  /* msa_model_params.n_threads */
#define MSA_MAX_LAYERS 1024                   /* config.json num_hidden_layers */
#define MSA_MAX_VOCAB (1 << 24)               /* config.json vocab_size; tokenizer.json token ids */
#define MSA_MAX_DOCUMENTS_PER_CALL (1 << 24)  /* documents (or ids) in one add/remove call */
#define MSA_MAX_BANK_DOCUMENTS (1 << 30)      /* documents a memory bank holds (live + removed) */
#define MSA_MAX_DOCUMENT_TOKENS (1 << 24)     /* tokens of one document */
#define MSA_MAX_PROMPT_TOKENS (1 << 22)       /* tokens of one prompt / question */
#define MSA_MAX_ROUNDS 1024                   /* msa_generate_params.max_rounds (Memory Interleave) */

/* ---------------------------------------------------------------- library */

/* "MAJOR.MINOR.PATCH" of the loaded library. Static storage; never NULL. Thread-safe. */
MSA_API const char *msa_version(void);

/* Packed version of the loaded library: MAJOR*10000 + MINOR*100 + PATCH. Thread-safe. */
MSA_API uint32_t msa_version_number(void);

/* Non-zero when the loaded library serves code compiled against header version `header_version` (pass
 * MSA_VERSION_NUMBER): the same major version and a library minor version at least the header's (a newer
 * minor version may declare functions or fields an older library lacks; patch versions never change the
 * API). 0 otherwise. Thread-safe. */
MSA_API int msa_version_compatible(uint32_t header_version);

/* Evaluates to non-zero when the loaded library is compatible with the header the caller compiled with. */
#define MSA_CHECK_VERSION() msa_version_compatible((uint32_t)MSA_VERSION_NUMBER)

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

/* The parameter structs, for msa_params_init. Values are stable. */
typedef enum msa_params_kind {
  MSA_PARAMS_MODEL = 0,      /* msa_model_params */
  MSA_PARAMS_CHECKPOINT = 1, /* msa_checkpoint_params */
  MSA_PARAMS_MEMORY = 2,     /* msa_memory_params */
  MSA_PARAMS_GENERATE = 3    /* msa_generate_params */
} msa_params_kind;

/* Size-safe form of the msa_*_params_init functions: fills params[0, struct_size) with the defaults of the
 * parameter struct `kind` (as this library knows it), zeroes the bytes past the library's own size, and sets
 * params->struct_size to struct_size. Pass the size of the struct you allocated (sizeof, or a binding's own
 * copy of the layout). Unlike msa_*_params_init, which write the library's sizeof, it never writes past
 * struct_size, so a program or binding built against an older, smaller struct stays safe with a newer
 * library; the struct it fills is accepted by every function taking that kind.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL params, unknown kind, a struct_size that is not the size of a released
 * layout of the struct and is smaller than the library's own).
 * Thread-safe. */
MSA_API msa_status msa_params_init(msa_params_kind kind, void *params, size_t struct_size);

/* ---------------------------------------------------------------- model */

typedef struct msa_model msa_model;

typedef enum msa_backend {
  MSA_BACKEND_CPU = 0,
  MSA_BACKEND_CUDA = 1
} msa_backend;

typedef struct msa_model_params {
  uint32_t struct_size;   /* sizeof(msa_model_params), set by msa_model_params_init */
  int32_t n_threads;      /* CPU threads of this model's work (its own pool), at most MSA_MAX_THREADS; 0
                             (default): the shared process pool of all hardware threads (or MSA_NUM_THREADS) */
  int32_t backend;        /* msa_backend; default MSA_BACKEND_CPU. The environment variable MSA_BACKEND, when
                             set, overrides MSA_BACKEND_CPU by a backend name ("cpu", "cpu-scalar", "cuda",
                             and in test builds "cpu-guarded") */
  int32_t load_tokenizer; /* non-zero (default): tokenizer.json must be present and is loaded */
  int32_t device;         /* GPU index for MSA_BACKEND_CUDA (default 0); must be 0 for the CPU (added in 0.2) */
  void *cuda_stream;      /* MSA_BACKEND_CUDA: the caller's cudaStream_t for the model's work (not owned; it must
                             outlive the model); NULL (default): a stream of the model's own. Must be NULL for
                             the CPU (added in 0.2) */
} msa_model_params;

/* Fills defaults (NULL is ignored). Writes this library's sizeof of the struct: a program that may meet a
 * newer library than its header should use msa_params_init instead. Thread-safe. */
MSA_API void msa_model_params_init(msa_model_params *params);

/* Loads a checkpoint directory (config.json, model.safetensors or model.safetensors.index.json + shards,
 * tokenizer.json). `params` may be NULL for defaults. On success *out_model owns the model; release it
 * with msa_model_free. On failure *out_model is NULL and nothing is left running (threads already started
 * for the model's pool are stopped and joined).
 * The weights are prepared on the backend once here (a GPU backend uploads them).
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL dir/out_model, unknown backend value, n_threads < 0 or > MSA_MAX_THREADS,
 * device < 0, device != 0 or a cuda_stream with the CPU backend), MSA_ERR_UNSUPPORTED (a backend this build does not have, an
 * unknown MSA_BACKEND name), MSA_ERR_NO_DEVICE (MSA_BACKEND_CUDA without a usable GPU `device`),
 * MSA_ERR_IO, MSA_ERR_CONFIG (also a count above its limit: num_hidden_layers > MSA_MAX_LAYERS, vocab_size >
 * MSA_MAX_VOCAB), MSA_ERR_BAD_HEADER, MSA_ERR_TRUNCATED, MSA_ERR_TENSOR_OVERLAP, MSA_ERR_DTYPE,
 * MSA_ERR_MISSING_TENSOR (also: the config has more layers than the weights), MSA_ERR_UNEXPECTED_TENSOR,
 * MSA_ERR_SHAPE, MSA_ERR_UNSUPPORTED, MSA_ERR_TOKENIZER (also a token id >= MSA_MAX_VOCAB or implausibly
 * large for the file), MSA_ERR_OUT_OF_MEMORY (also: the system refused to start the n_threads threads).
 * Thread-safe. A loaded model is immutable and may be used from several threads at once. */
MSA_API msa_status msa_model_load(const char *dir, const msa_model_params *params, msa_model **out_model);

/* Releases a model. NULL is accepted. No other call may be using the model, and every bank created for it
 * (msa_memory_create/open) must be freed first; its tokenizer (msa_model_tokenizer) becomes invalid. */
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
  /* added in 0.2: where the model runs */
  char backend[32];          /* backend name: "cpu-avx2", "cpu-scalar", "cuda", "cpu-guarded" */
  char device[128];          /* the device, e.g. "CPU (cpu-avx2, 2 threads)", "NVIDIA H100 80GB HBM3, 79.1 GiB" */
  int64_t device_weight_bytes; /* weights copied to device memory (0: the CPU reads the mapped file in place) */
} msa_model_desc;

/* Fills `info` up to info->struct_size bytes. Errors: MSA_ERR_INVALID_ARGUMENT (NULL, or a struct_size that is
 * no released layout's size, see the conventions above). Thread-safe. */
MSA_API msa_status msa_model_info(const msa_model *model, msa_model_desc *info);

/* Computes the logits of the last position of `tokens` (a plain causal forward of the backbone, positions
 * 0..n-1). `out_logits` must hold `cap` floats; cap >= vocab_size. Errors: MSA_ERR_INVALID_ARGUMENT
 * (NULL, n_tokens <= 0, a token id outside [0, vocab_size)), MSA_ERR_BUFFER_TOO_SMALL,
 * MSA_ERR_CONTEXT_OVERFLOW. Thread-safe (the model is only read). */
MSA_API msa_status msa_model_logits(const msa_model *model, const int32_t *tokens, int32_t n_tokens,
                                    float *out_logits, int64_t cap);

/* ---------------------------------------------------------------- random checkpoints */

typedef struct msa_checkpoint_params {
  uint32_t struct_size;          /* sizeof(msa_checkpoint_params), set by msa_checkpoint_params_init */
  const char *preset;            /* "micro" | "tiny" (default) | "msa-4b-shape" */
  uint64_t seed;                 /* default 0 */
  const char *tokenizer_dir;     /* holds tokenizer.json + tokenizer_config.json to copy; NULL: none */
  const char *msa_config_json;   /* JSON object overriding msa_config keys, e.g. {"head_reduce_method":"max"};
                                    NULL: the preset's values (router layers = latter half, pooling 64 ...) */
} msa_checkpoint_params;

/* Fills defaults (NULL is ignored). Writes this library's sizeof of the struct: a program that may meet a
 * newer library than its header should use msa_params_init instead. Thread-safe. */
MSA_API void msa_checkpoint_params_init(msa_checkpoint_params *params);

/* Writes a checkpoint with random weights in the exact MSA-4B layout into `out_dir` (created if needed):
 * config.json (model_type "msa", full msa_config block), generation_config.json, model.safetensors (bf16)
 * and the tokenizer files when params->tokenizer_dir is set. Presets (all with the full 151,936-token
 * Qwen3 vocabulary): "micro" (2 layers, hidden 32: test fixtures), "tiny" (4 layers, hidden 128, ~20 M
 * parameters: the demo), "msa-4b-shape" (the real MSA-4B shapes, ~4.3 B parameters, 8.5 GB: benchmarks).
 * The same parameters give the same bytes on every machine and thread count. `params` may be NULL for
 * defaults. Errors: MSA_ERR_INVALID_ARGUMENT (NULL out_dir, unknown preset, override JSON that is not an
 * object, an unknown key, or a value of the wrong type or out of range, e.g. pooling_kernel_size "x", -4 or
 * 0 — the message names the key; nothing is written then, and no accepted override yields a checkpoint
 * that fails to load), MSA_ERR_TOKENIZER (tokenizer files missing), MSA_ERR_IO. Thread-safe (distinct output directories). */
MSA_API msa_status msa_checkpoint_init(const msa_checkpoint_params *params, const char *out_dir);

/* ================================================================ tokenizer
 * The Qwen2/Qwen3 byte-level BPE tokenizer of tokenizer.json, byte-exact with Hugging Face `tokenizers`.
 *  - Text is UTF-8 given with its length: embedded NUL bytes are ordinary text. Invalid UTF-8 is never an
 *    error: each maximal ill-formed subsequence is replaced by U+FFFD first, exactly as Python's
 *    bytes.decode("utf-8", "replace") does before Hugging Face sees the text.
 *  - Added tokens written in the text ("<|im_end|>", "<think>") become their ids, as in Hugging Face.
 *  - The text between them is NFC-normalised (part of the model's tokenisation), so
 *    detokenize(tokenize(s)) == s for every valid UTF-8 s that is NFC outside its added tokens.
 *  - add_special: the Qwen tokenizer adds no BOS/EOS (its post-processor is ByteLevel), so this flag has
 *    no effect for it; it is kept for tokenizers that would add tokens.
 *  - Output text is always well-formed UTF-8. Text outputs follow one rule: the call needs
 *    cap >= *out_len bytes and writes a terminating NUL only when cap > *out_len (pass *out_len + 1 to
 *    get a C string). When the buffer is too small the call returns MSA_ERR_BUFFER_TOO_SMALL with the
 *    needed size in *out_len / *out_n_ids (pass cap = 0 and a NULL buffer to query the size).
 *  - A tokenizer is immutable once loaded: every msa_tokenizer_* function that takes a const pointer may
 *    be called from several threads at once. A msa_detokenizer is single-threaded state.
 */

typedef struct msa_tokenizer msa_tokenizer;

typedef struct msa_tokenizer_desc {
  uint32_t struct_size;    /* caller sets sizeof(msa_tokenizer_desc) */
  int32_t vocab_size;      /* 1 + the largest token id (model vocabulary and added tokens) */
  int32_t n_added_tokens;  /* added tokens of tokenizer.json (special or not) */
  int32_t bos_id;          /* from tokenizer_config.json; -1 when none (Qwen: none) */
  int32_t eos_id;          /* -1 when none (Qwen: 151645, <|im_end|>) */
  int32_t pad_id;          /* -1 when none (Qwen: 151643, <|endoftext|>) */
  int32_t max_token_bytes; /* longest token in bytes: one detokenizer push emits at most 3 * (this + 3) */
} msa_tokenizer_desc;

/* Loads a tokenizer.json (or a directory holding one) and, if present beside it, tokenizer_config.json
 * (special tokens). On success *out_tokenizer owns the tokenizer; release it with msa_tokenizer_free. On
 * failure *out_tokenizer is NULL. Errors: MSA_ERR_INVALID_ARGUMENT (NULL), MSA_ERR_IO (file missing or
 * unreadable), MSA_ERR_TOKENIZER (malformed file, named in msa_last_error()), MSA_ERR_UNSUPPORTED (a kind
 * of tokenizer libmsa does not implement: not byte-level BPE, other normalizers, post-processors that add
 * tokens, ...), MSA_ERR_OUT_OF_MEMORY. Thread-safe. */
MSA_API msa_status msa_tokenizer_load(const char *tokenizer_json_path, msa_tokenizer **out_tokenizer);

/* Releases a tokenizer loaded with msa_tokenizer_load (never a model's). NULL is accepted. No other call may
 * be using it, and the detokenizers made from it must be freed first. */
MSA_API void msa_tokenizer_free(msa_tokenizer *tokenizer);

/* Fills `info` up to info->struct_size bytes (set it to sizeof(msa_tokenizer_desc); fields are only ever
 * appended). Errors: MSA_ERR_INVALID_ARGUMENT (NULL, or a struct_size that is no released layout's size).
 * Thread-safe. */
MSA_API msa_status msa_tokenizer_info(const msa_tokenizer *tokenizer, msa_tokenizer_desc *info);

/* Tokenizes text[0..text_len) into out_ids[0..cap); *out_n_ids receives the number of ids (also when it
 * exceeds cap: then MSA_ERR_BUFFER_TOO_SMALL and the content of out_ids is unspecified). `text` may be
 * NULL when text_len is 0; `out_ids` may be NULL when cap is 0. The caller owns both buffers.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL tokenizer or out_n_ids, NULL text with text_len > 0),
 * MSA_ERR_BUFFER_TOO_SMALL, MSA_ERR_OUT_OF_MEMORY. Thread-safe. */
MSA_API msa_status msa_tokenizer_tokenize(const msa_tokenizer *tokenizer, const char *text, size_t text_len,
                                          int add_special, int32_t *out_ids, size_t cap, size_t *out_n_ids);

/* Turns ids[0..n_ids) into UTF-8 text in out_text[0..cap) (see the buffer rule above); *out_len receives
 * the text length in bytes. skip_special != 0 leaves out added tokens marked special ("<|im_end|>"...).
 * Byte sequences that are not valid UTF-8 become U+FFFD, as in Hugging Face's decode.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL pointer, an id outside [0, vocab_size)), MSA_ERR_BUFFER_TOO_SMALL,
 * MSA_ERR_OUT_OF_MEMORY. Thread-safe. */
MSA_API msa_status msa_tokenizer_detokenize(const msa_tokenizer *tokenizer, const int32_t *ids, size_t n_ids,
                                            int skip_special, char *out_text, size_t cap, size_t *out_len);

/* The raw bytes of one token into out[0..cap) (buffer rule above; *out_len = number of bytes). A vocabulary
 * token may hold only part of a UTF-8 sequence, so the bytes are not necessarily valid UTF-8; use a
 * msa_detokenizer to turn a token stream into text. Errors: MSA_ERR_INVALID_ARGUMENT (NULL pointer, id
 * outside the vocabulary), MSA_ERR_BUFFER_TOO_SMALL. Thread-safe. */
MSA_API msa_status msa_tokenizer_token_to_piece(const msa_tokenizer *tokenizer, int32_t id, char *out, size_t cap,
                                                size_t *out_len);

/* The id of the token whose bytes (or added-token text) are exactly token[0..token_len), in *out_id (-1 on
 * failure). Errors: MSA_ERR_INVALID_ARGUMENT (NULL pointer, no such token). Thread-safe. */
MSA_API msa_status msa_tokenizer_token_to_id(const msa_tokenizer *tokenizer, const char *token, size_t token_len,
                                             int32_t *out_id);

/* The tokenizer of a model loaded with load_tokenizer != 0, or NULL. Borrowed: valid while the model lives;
 * do not free it. Thread-safe. */
MSA_API const msa_tokenizer *msa_model_tokenizer(const msa_model *model);

/* msa_tokenizer_tokenize / _detokenize / _token_to_piece on msa_model_tokenizer(model). Additional errors:
 * MSA_ERR_INVALID_ARGUMENT for a NULL model, MSA_ERR_TOKENIZER when the model has no tokenizer. Thread-safe. */
MSA_API msa_status msa_tokenize(const msa_model *model, const char *text, size_t text_len, int add_special,
                                int32_t *out_ids, size_t cap, size_t *out_n_ids);
MSA_API msa_status msa_detokenize(const msa_model *model, const int32_t *ids, size_t n_ids, int skip_special,
                                  char *out_text, size_t cap, size_t *out_len);
MSA_API msa_status msa_token_to_piece(const msa_model *model, int32_t id, char *out, size_t cap, size_t *out_len);

/* Streaming detokenizer: push generated ids one at a time; each push returns the text they complete, never
 * a partial UTF-8 sequence (up to 3 bytes are held back), and flush returns the rest (a dangling incomplete
 * sequence becomes U+FFFD). The concatenation of all outputs equals msa_tokenizer_detokenize of all ids. */
typedef struct msa_detokenizer msa_detokenizer;

/* Creates a detokenizer on `tokenizer`, which must outlive it (a model's tokenizer: the model). skip_special
 * as in msa_tokenizer_detokenize. Release with msa_detokenizer_free. Errors: MSA_ERR_INVALID_ARGUMENT,
 * MSA_ERR_OUT_OF_MEMORY. Thread-safe; the detokenizer itself is not (one per stream). */
MSA_API msa_status msa_detokenizer_create(const msa_tokenizer *tokenizer, int skip_special,
                                          msa_detokenizer **out_detokenizer);

/* Pushes one id; the text it completes goes to out_text[0..cap) (buffer rule above; often 0 bytes), its
 * length to *out_len. `out_text` may be NULL when cap is 0; the caller owns it.
 * Errors: MSA_ERR_BUFFER_TOO_SMALL (needed size in *out_len), MSA_ERR_INVALID_ARGUMENT (NULL detokenizer or
 * out_len, an id outside the vocabulary); on either the detokenizer is unchanged: retry with a larger buffer.
 * 3 * (max_token_bytes + 3) + 1 bytes always suffice. Not thread-safe: one thread at a time per detokenizer. */
MSA_API msa_status msa_detokenizer_push(msa_detokenizer *detokenizer, int32_t id, char *out_text, size_t cap,
                                        size_t *out_len);

/* Ends the stream: writes what is held back (0..3 bytes, or U+FFFD) and resets the detokenizer for a new
 * stream. Buffer rule above; 4 bytes always suffice (3 + the NUL). Errors: MSA_ERR_INVALID_ARGUMENT, MSA_ERR_BUFFER_TOO_SMALL
 * (unchanged then). Not thread-safe: one thread at a time per detokenizer. */
MSA_API msa_status msa_detokenizer_flush(msa_detokenizer *detokenizer, char *out_text, size_t cap, size_t *out_len);

/* Releases a detokenizer. NULL is accepted. No other call may be using it. */
MSA_API void msa_detokenizer_free(msa_detokenizer *detokenizer);

/* ================================================================ end of tokenizer */

/* ================================================================ memory banks
 * A memory bank holds a corpus encoded once by the model (MSA stage 1): per document its text and token
 * count, and per router layer the pooled routing keys (the routing tier: kept in RAM and made resident on the
 * model's backend — GPU memory with MSA_BACKEND_CUDA, the RAM copy itself on the CPU) and the pooled K/V pages
 * (the content tier: host RAM or compressed in the mapped bank files; the selected documents' pages are staged
 * and moved per router layer).
 * Thread-safety: a bank may be read by several threads at once (msa_generate, msa_route, msa_memory_stats,
 * msa_memory_verify, msa_memory_document_state); msa_memory_add_documents, _save, _remove_documents and
 * _compact take the bank's writer lock and wait for running readers. A bank must not be
 * freed while another call uses it. A bank keeps a pointer to its model: free the bank first. */

typedef struct msa_memory msa_memory;

/* Element type of a bank's pages (routing keys and pooled K/V), chosen at create time, recorded in the bank.
 * BF16 and INT8 (symmetric, one f32 scale per chunk and kv head) are dequantised to f32 just before use. */
typedef enum msa_page_dtype {
  MSA_PAGE_F32 = 0,   /* exact: bit-identical to the encoder's output */
  MSA_PAGE_BF16 = 1,  /* default: half the bytes of f32 */
  MSA_PAGE_INT8 = 2   /* a quarter of the bytes (+ 4 bytes of scale per chunk and kv head) */
} msa_page_dtype;

typedef struct msa_memory_params {
  uint32_t struct_size;   /* sizeof(msa_memory_params), set by msa_memory_params_init */
  int32_t batch_tokens;   /* tokens per packed encoding forward; default 4096 */
  int32_t page_dtype;     /* msa_page_dtype of a new bank (msa_memory_create); default MSA_PAGE_BF16.
                             msa_memory_open ignores it (the bank's own dtype is used) */
  int32_t verify_on_open; /* msa_memory_open: non-zero verifies every content page's checksum at open; 0
                             (default): routing keys and tables at open, each content page when first read */
} msa_memory_params;

/* Fills defaults (NULL is ignored). Writes this library's sizeof of the struct: a program that may meet a
 * newer library than its header should use msa_params_init instead. Thread-safe. */
MSA_API void msa_memory_params_init(msa_memory_params *params);

/* Creates an empty bank for `model` (computes the template-prefix K/V of every layer) holding pages in
 * params->page_dtype. `params` may be NULL. The model must be an MSA checkpoint with a tokenizer. Release with msa_memory_free.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL, batch_tokens <= 0, an unknown page_dtype, a model without router layers or tokenizer),
 * MSA_ERR_OUT_OF_MEMORY. Thread-safe. */
MSA_API msa_status msa_memory_create(const msa_model *model, const msa_memory_params *params,
                                     msa_memory **out_memory);

/* Releases a bank. NULL is accepted. No other call may be using it; free it before its model. */
MSA_API void msa_memory_free(msa_memory *memory);

/* ---- persistence (docs/FORMAT.md). A bank on disk is a directory: immutable segment files and a MANIFEST,
 * the single atomic commit point. Every change (save, add to an attached bank, remove, compact) writes new
 * files under temporary names, fsyncs them, renames them and then replaces MANIFEST atomically: a crash at any
 * point leaves either the previous bank or the new one, complete. One writer process per directory at a time,
 * enforced by a flock on BANK/LOCK: another process's write gets MSA_ERR_BUSY; readers never lock.
 * Every byte is covered by an xxHash64 checksum: corruption gives MSA_ERR_CORRUPT (or MSA_ERR_TRUNCATED)
 * with a message naming the file and the section, never a crash or a wrong answer. */

/* Opens the bank directory `path` for `model` (the model it was built for: the configuration fields that
 * shape the memory, the tokenizer and a digest of the weights must match). Routing keys are read into RAM;
 * content pages stay in the mapped segment files and are verified when read (or all at open with
 * params->verify_on_open). The bank is attached to `path`: msa_memory_add_documents and
 * msa_memory_remove_documents commit to it. `params` may be NULL. Release with msa_memory_free.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL, a bank built for another model: the message names the field that
 * differs), MSA_ERR_IO (missing directory or MANIFEST), MSA_ERR_TRUNCATED, MSA_ERR_CORRUPT,
 * MSA_ERR_UNSUPPORTED (another format version or byte order), MSA_ERR_OUT_OF_MEMORY. Thread-safe. */
MSA_API msa_status msa_memory_open(const msa_model *model, const char *path, const msa_memory_params *params,
                                   msa_memory **out_memory);

/* Writes the bank's live documents to directory `path` (created if needed; a bank already there is replaced
 * atomically) and attaches the bank to it. Tombstoned documents are not written. Errors:
 * MSA_ERR_INVALID_ARGUMENT, MSA_ERR_IO (the message has the path and the system error, "disk full" when the
 * disk is; a failed write leaves no temporary file), MSA_ERR_CORRUPT (a page of the source bank failed its
 * checksum), MSA_ERR_BUSY (another process is writing `path`: it holds path/LOCK; or `path` is this bank's own
 * directory and another handle or process committed to it since this handle read it: reopen the bank).
 * Thread-safety: takes the bank's writer lock. The first write of a handle to a directory (save, add, remove,
 * compact) takes the directory's writer lock (path/LOCK, shared by the handles of this process) and keeps it
 * until the handle is freed; opening and reading never need it. */
MSA_API msa_status msa_memory_save(msa_memory *memory, const char *path);

/* Tombstones the documents `ids[0..n_ids)`: all or none; routing never returns them again and
 * k = min(top_k, live documents). An attached bank commits the change before returning. Their ids stay
 * reserved until msa_memory_compact. Errors: MSA_ERR_INVALID_ARGUMENT (NULL, an id not in the bank or already
 * removed, a duplicate), MSA_ERR_IO (nothing changed; it only needs room for a new MANIFEST), MSA_ERR_BUSY
 * (another process is writing the bank's directory, or the directory changed since this handle read it:
 * reopen; nothing changed). Thread-safety: writer lock. */
MSA_API msa_status msa_memory_remove_documents(msa_memory *memory, const uint64_t *ids, size_t n_ids);

/* Drops tombstoned documents: an attached bank rewrites its directory (atomically, like save); a bank in RAM
 * only compacts its arrays. Errors: MSA_ERR_INVALID_ARGUMENT, MSA_ERR_IO, MSA_ERR_CORRUPT, MSA_ERR_BUSY (as
 * msa_memory_remove_documents: the bank is unchanged). Readers of the old files (other handles) keep working.
 * Writer lock. */
MSA_API msa_status msa_memory_compact(msa_memory *memory);

/* Full checksum pass over every content page of the attached files (routing keys and tables were verified at
 * open). Errors: MSA_ERR_INVALID_ARGUMENT, MSA_ERR_CORRUPT (message names file, section, document).
 * Thread-safe (shared lock). */
MSA_API msa_status msa_memory_verify(const msa_memory *memory);

/* *out_state = 0 (no such document), 1 (live) or 2 (tombstoned). Errors: MSA_ERR_INVALID_ARGUMENT.
 * Thread-safe (shared lock). */
MSA_API msa_status msa_memory_document_state(const msa_memory *memory, uint64_t id, int32_t *out_state);

/* What a bank directory holds, read without a model (the bank describes itself). */
typedef struct msa_memory_file_desc {
  uint32_t struct_size;        /* caller sets sizeof(msa_memory_file_desc) */
  int32_t format_version;
  int32_t page_dtype;          /* msa_page_dtype */
  int32_t n_segments;
  int64_t generation;          /* commits so far */
  int64_t n_documents;         /* live */
  int64_t n_removed;           /* tombstoned */
  int64_t n_chunks;            /* per router layer, tombstoned documents included */
  int64_t n_tokens;            /* of the live documents */
  int64_t routing_bytes;       /* routing keys (+ scales) of every router layer: the routing tier */
  int64_t content_bytes;       /* compressed content pages in the files: the content tier */
  int64_t text_bytes;
  int64_t file_bytes;          /* all files the manifest references, MANIFEST included */
  int32_t content_verified;    /* 1 when every content page was checked (verify != 0) */
  /* the model fingerprint */
  int32_t n_layers;
  int32_t n_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  int32_t n_router_layers;
  int32_t pooling_kernel_size;
  int32_t decouple_router;
  int64_t hidden_size;
  int64_t vocab_size;
  double rope_theta;
  uint64_t tokenizer_xxh64;
  uint64_t weights_digest;
  char aux_loss_method[32];
} msa_memory_file_desc;

/* Reads and checks the bank directory `path` without a model: manifest, segment headers, tables and routing
 * keys always; every content page too when `verify` is non-zero. Fills `desc` (up to desc->struct_size; a
 * newer, larger struct gets its unknown tail zeroed). Errors: MSA_ERR_INVALID_ARGUMENT (NULL, a struct_size
 * that is no released layout's size), MSA_ERR_IO, MSA_ERR_TRUNCATED, MSA_ERR_CORRUPT (message names the file
 * and the section), MSA_ERR_UNSUPPORTED. Thread-safe. */
MSA_API msa_status msa_memory_file_info(const char *path, int verify, msa_memory_file_desc *desc);

typedef struct msa_document {
  const char *text;  /* UTF-8, `text_len` bytes (need not be NUL-terminated) */
  size_t text_len;
  uint64_t id;       /* the document's id (it is written into the encoded document as "[id]. ") */
  int32_t has_id;    /* 0: the bank assigns the next id (largest id so far + 1, 0 for an empty bank) */
} msa_document;

/* Progress of msa_memory_add_documents; return non-zero to cancel. Called on the calling thread. */
typedef int (*msa_progress_callback)(int64_t documents_done, int64_t documents_total, int64_t tokens_done,
                                     int64_t tokens_total, void *user_data);

/* Encodes `n_docs` documents and adds them to the bank, atomically: on any error (including cancellation)
 * nothing is added. A bank attached to a directory (opened or saved) writes them as one new segment and
 * commits before returning (existing pages are not rewritten); MSA_ERR_IO then means nothing was added (no
 * temporary file is left; "disk full" when the segment did not fit). `progress` may be NULL. `out_ids` (may be
 * NULL) receives the n_docs ids used.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL, n_docs == 0, an empty document, a duplicate id — in the call, already
 * in the bank or taken by another add in progress —, more than MSA_MAX_BANK_DOCUMENTS), MSA_ERR_INVALID_UTF8 (a
 * document is not valid UTF-8), MSA_ERR_CONTEXT_OVERFLOW (a document longer than the model's positions; the
 * message gives the limit), MSA_ERR_CANCELLED, MSA_ERR_BUSY (attached: another process is writing the bank's
 * directory — the message names it and the holder's pid —, or the directory changed since this handle read
 * it: reopen; reported before any document is encoded).
 * Thread-safety: several calls may run at once on one bank: the ids are reserved before encoding (automatic
 * ids of concurrent calls never collide) and each call takes the bank's writer lock to add. */
MSA_API msa_status msa_memory_add_documents(msa_memory *memory, const msa_document *docs, size_t n_docs,
                                            msa_progress_callback progress, void *user_data,
                                            uint64_t *out_ids);

typedef struct msa_memory_usage {
  uint32_t struct_size;   /* caller sets sizeof(msa_memory_usage) */
  int64_t n_documents;
  int64_t n_chunks;       /* pooled chunks per router layer */
  int64_t n_tokens;       /* encoded tokens of all documents */
  int64_t routing_bytes;  /* routing tier: routing keys + chunk maps of all router layers, in RAM */
  int64_t content_bytes;  /* content tier: pooled K/V pages of all router layers (RAM + mapped files) */
  int64_t text_bytes;     /* document texts kept for Memory Interleave */
  int64_t n_removed;      /* tombstoned documents (not in n_documents) */
  int64_t content_file_bytes; /* part of content_bytes left compressed in mapped files (the rest is in RAM) */
  int32_t page_dtype;     /* msa_page_dtype */
  /* added in 0.2: the routing tier as the model's backend holds it */
  int64_t routing_device_bytes; /* device memory holding the routing index (0 on the CPU backend, which scans
                                   the bank's RAM copy in place; the index is made resident by the first
                                   msa_generate/msa_route, or by this call) */
} msa_memory_usage;

/* Fills `usage` up to usage->struct_size bytes. Errors: MSA_ERR_INVALID_ARGUMENT (NULL, or a struct_size that
 * is no released layout's size), MSA_ERR_OUT_OF_MEMORY or a device error (making the routing index resident). Thread-safe (shared lock). */
MSA_API msa_status msa_memory_stats(const msa_memory *memory, msa_memory_usage *usage);

/* ================================================================ generation
 * msa_generate answers a prompt over a memory bank: stage 2 routes the question in every router layer to
 * the top-k documents and attends over [template; their pooled K/V; question], stage 3 decodes. With
 * interleave on, the Memory Interleave protocol runs inside the call: the model names documents "[n]",
 * their texts are injected and the next round routes again, until "<End-of-Retrieve>"; then the question is
 * restated and the answer generated. Thread-safety: a model and a bank may be used by several msa_generate
 * calls on different threads at once; each call has its own state. */

/* Constrained decoding (a Hugging Face LogitsProcessor, a llama.cpp grammar): sees the logits[n_vocab] of
 * every sampling step before the sampler and may change them in place — -INFINITY forbids a token, leaving a
 * single finite logit forces it. `round` is the 1-based interleave round (1 in plain mode), `round_step` the
 * tokens sampled before this one in the round, `step` those sampled before it in the call. Return non-zero
 * to stop (the call returns MSA_ERR_CANCELLED with what was generated so far). A callback that leaves no
 * allowed token (every logit NaN or -INFINITY) makes the call fail with MSA_ERR_INVALID_ARGUMENT. Called on
 * the calling thread; `logits` is valid only during the call. */
typedef int (*msa_logits_callback)(int32_t round, int64_t round_step, int64_t step, float *logits,
                                   int64_t n_vocab, void *user_data);

typedef struct msa_generate_params {
  uint32_t struct_size;   /* sizeof(msa_generate_params), set by msa_generate_params_init */
  int32_t top_k;          /* documents per router layer (default 16); k = min(top_k, documents) */
  int32_t max_new_tokens; /* tokens to sample over the whole call (default 256), > 0 */
  float temperature;      /* < 0 (default): the checkpoint's generation_config.json; 0: greedy */
  float top_p;            /* used when temperature > 0; < 0 (default): generation_config.json */
  int32_t sampling_top_k; /* used when temperature > 0; < 0 (default): generation_config.json; 0: off */
  uint64_t seed;          /* sampling seed (default 0) */
  int32_t interleave;     /* non-zero (default): Memory Interleave; 0: plain routing + decoding */
  int32_t max_rounds;     /* interleave rounds per call (default 4), 1..MSA_MAX_ROUNDS */
  int32_t first_position; /* RoPE position of the first prompt token; < 0 (default): 3 + top_k */
  msa_logits_callback logits_callback; /* constrained decoding (msa_generate only); NULL (default): none */
  void *logits_user_data;              /* passed to logits_callback */
} msa_generate_params;

/* Fills defaults (NULL is ignored). Writes this library's sizeof of the struct: a program that may meet a
 * newer library than its header should use msa_params_init instead. Thread-safe. */
MSA_API void msa_generate_params_init(msa_generate_params *params);

/* Receives generated text as it is produced: `piece` holds `len` bytes of UTF-8 (never a partial
 * character; not NUL-terminated). Return non-zero to stop generation (the call returns MSA_ERR_CANCELLED
 * and its result holds what was generated so far). Called on the calling thread. */
typedef int (*msa_token_callback)(const char *piece, size_t len, void *user_data);

typedef struct msa_result msa_result;

/* Generates an answer to `prompt` (UTF-8, NUL-terminated). `memory` may be NULL (plain generation, no
 * routing, no interleave). `params` may be NULL for defaults; `on_token` may be NULL. On success and on
 * MSA_ERR_CANCELLED, *out_result owns a result (free it with msa_result_free); otherwise it is NULL.
 * Errors: MSA_ERR_INVALID_ARGUMENT (NULL model/prompt/out_result, an empty prompt, bad params: struct_size,
 * top_k <= 0, max_new_tokens <= 0, max_rounds outside [1, MSA_MAX_ROUNDS], a temperature that is not finite,
 * top_p outside (0, 1] and not < 0; a bank of another model; a logits callback that leaves no allowed
 * token), MSA_ERR_INVALID_UTF8, MSA_ERR_CONTEXT_OVERFLOW (the prompt is more than MSA_MAX_PROMPT_TOKENS
 * tokens or does not fit the model's positions from first_position), MSA_ERR_CANCELLED, MSA_ERR_TOKENIZER
 * (model loaded without tokenizer), MSA_ERR_CORRUPT (a content page of an opened bank fails its checksum when
 * read), MSA_ERR_OUT_OF_MEMORY.
 * Thread-safe: several calls may share a model and a bank (each has its own state); the bank's readers'
 * lock is held for the call, so msa_memory_add_documents on the same bank waits for it. */
MSA_API msa_status msa_generate(const msa_model *model, const msa_memory *memory, const char *prompt,
                                const msa_generate_params *params, msa_token_callback on_token, void *user_data,
                                msa_result **out_result);

/* Retrieval only: routes `prompt` in every router layer (stage 2 without decoding) and returns the top-k
 * documents and the scores of every layer in a result (free it with msa_result_free; NULL on failure).
 * Uses params->top_k and first_position only (the other fields are not checked). Errors: as msa_generate
 * (content pages are not read: no MSA_ERR_CORRUPT), and MSA_ERR_INVALID_ARGUMENT when `memory` is NULL.
 * Thread-safe, as msa_generate. */
MSA_API msa_status msa_route(const msa_model *model, const msa_memory *memory, const char *prompt,
                             const msa_generate_params *params, msa_result **out_result);

/* Result accessors. Returned pointers are owned by the result and valid until msa_result_free. All accept
 * a NULL result (returning "" / 0). Thread-safe on a result that is not being freed. */

/* The answer: plain mode, everything generated; interleave mode, the text after "The answer to the
 * question is:" (or everything generated after the question restatement). NUL-terminated UTF-8. */
MSA_API const char *msa_result_text(const msa_result *result);
/* Everything the model generated in this call, all rounds, special tokens kept. */
MSA_API const char *msa_result_generated_text(const msa_result *result);
/* The final round's full sequence from the question block on (documents injected, special tokens kept). */
MSA_API const char *msa_result_transcript(const msa_result *result);
/* Sampled token ids of the whole call (a final EOS included); *ids may be NULL when only the count is wanted. */
MSA_API int64_t msa_result_tokens(const msa_result *result, const int32_t **ids);
/* Interleave rounds (1 in plain mode) and the document ids read (injected) at the end of round `round`
 * (0-based); returns the count, -1 for a round out of range. */
MSA_API int32_t msa_result_n_rounds(const msa_result *result);
MSA_API int64_t msa_result_round_documents(const msa_result *result, int32_t round, const uint64_t **ids);
/* Router layers of the first round's routing (0 without a bank). `slot` is 0..n-1; the decoder layer index
 * is returned by msa_result_router_layer (-1 for a slot out of range). msa_result_layer_topk returns k and
 * points *ids / *scores (each may be NULL) at the top-k document ids and their scores, best first; -1 for a
 * slot out of range. */
MSA_API int32_t msa_result_n_router_layers(const msa_result *result);
MSA_API int32_t msa_result_router_layer(const msa_result *result, int32_t slot);
MSA_API int64_t msa_result_layer_topk(const msa_result *result, int32_t slot, const uint64_t **ids,
                                      const float **scores);

typedef struct msa_timings {
  uint32_t struct_size;        /* caller sets sizeof(msa_timings) */
  double prefill_ms;           /* first round's prompt prefill (with routing) */
  double ttft_ms;              /* call start to first sampled token */
  double decode_ms;            /* single-token decode steps */
  double decode_tokens_per_s;
  double total_ms;
  int64_t prompt_tokens;       /* first round's prompt */
  int64_t generated_tokens;
} msa_timings;

/* Fills `timings` up to timings->struct_size bytes (set it to sizeof). Errors: MSA_ERR_INVALID_ARGUMENT
 * (NULL, or a struct_size that is no released layout's size). Thread-safe. */
MSA_API msa_status msa_result_timings(const msa_result *result, msa_timings *timings);

/* Why generation stopped: "eos", "max_new_tokens", "context_limit", "max_rounds", "cancelled", "answer",
 * or "" (route results). */
MSA_API const char *msa_result_stop_reason(const msa_result *result);

/* Releases a result and every pointer its accessors returned. NULL is accepted. No other call may be using
 * it. */
MSA_API void msa_result_free(msa_result *result);

#ifdef __cplusplus
}
#endif

#endif /* MSA_MSA_H */
