/* The error codes of msa.h as a specification: every MSA_API function that returns msa_status is driven into
 * each error its doc comment lists (where a test can provoke it from outside: NULLs, bad sizes and values,
 * missing or corrupt files made here in a temporary directory from tests/data/models and from random micro
 * checkpoints, small buffers, cancelling callbacks, overlong inputs), and the exact code is checked, with a
 * non-empty msa_last_error(). Each check is one row of the table printed at the end: function, condition,
 * expected code, returned code.
 *
 * Not provoked here (a comment names each at its function): MSA_ERR_OUT_OF_MEMORY (needs an allocator that
 * fails), MSA_ERR_UNSUPPORTED from a bank of another format version (needs a file with a valid xxh64 header
 * checksum; tests/unit/test_bank_file.cpp covers it), MSA_ERR_BUSY (another helper's lock, tested with it),
 * MSA_ERR_NO_DEVICE (a CUDA build without a device).
 * usage: test_error_codes_c99 <tests/data dir> */
#define _POSIX_C_SOURCE 200809L
#include <msa/msa.h>

#include "e2e_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------- the table */
typedef struct {
  const char *function;
  const char *condition;
  msa_status expected;
  msa_status got;
} row;

static row table[400];
static int n_rows = 0;

static void expect(const char *function, const char *condition, msa_status expected, msa_status got) {
  const char *msg = msa_last_error();
  int ok = got == expected && (expected == MSA_OK || (msg != NULL && msg[0] != '\0'));
  if (n_rows < (int)(sizeof table / sizeof table[0])) {
    table[n_rows].function = function;
    table[n_rows].condition = condition;
    table[n_rows].expected = expected;
    table[n_rows].got = got;
    n_rows++;
  }
  if (!ok) {
    fprintf(stderr, "FAIL %s: %s: expected %s, got %s (last error: \"%s\")\n", function, condition,
            msa_status_string(expected), msa_status_string(got), msg ? msg : "(null)");
    failures++;
  }
}
#define EXPECT(function, condition, code, call) expect(function, condition, code, (call))

/* ------------------------------------------------------------------------------------------- files */
static char tmp[256];

static const char *path_in(char *buf, size_t cap, const char *dir, const char *name) {
  int r = snprintf(buf, cap, "%s/%s", dir, name);
  if (r < 0 || (size_t)r >= cap) fprintf(stderr, "path too long: %s/%s\n", dir, name);
  return buf;
}

static unsigned char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf;
  long n;
  *len = 0;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = (unsigned char *)malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[n] = 0;
    *len = (size_t)n;
  }
  return buf;
}

static int write_all(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  int ok;
  if (!f) return 0;
  ok = fwrite(data, 1, len, f) == len;
  return fclose(f) == 0 && ok;
}

static int copy_file(const char *from, const char *to) {
  size_t n;
  unsigned char *b = read_all(from, &n);
  int ok = b != NULL && write_all(to, b, n);
  free(b);
  return ok;
}

/* Copies the regular files of directory `from` into a new directory `to`. */
static int copy_dir(const char *from, const char *to) {
  DIR *d = opendir(from);
  struct dirent *e;
  char a[1024], b[1024];
  int ok = 1;
  if (!d || mkdir(to, 0755) != 0) {
    if (d) closedir(d);
    return 0;
  }
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    path_in(a, sizeof a, from, e->d_name);
    if (stat(a, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ok &= copy_file(a, path_in(b, sizeof b, to, e->d_name));
  }
  closedir(d);
  return ok;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[1024];
  if (!d) {
    remove(dir);
    return;
  }
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    path_in(p, sizeof p, dir, e->d_name);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(p);
    else
      remove(p);
  }
  closedir(d);
  rmdir(dir);
}

/* Replaces the first occurrence of `what` in the text file `path` by `with`. */
static int edit_text(const char *path, const char *what, const char *with) {
  size_t n;
  unsigned char *b = read_all(path, &n);
  char *hit, *out;
  size_t at, wl = strlen(what), nl = strlen(with);
  int ok;
  if (!b) return 0;
  hit = strstr((char *)b, what);
  if (!hit) {
    free(b);
    return 0;
  }
  at = (size_t)(hit - (char *)b);
  out = (char *)malloc(n - wl + nl);
  memcpy(out, b, at);
  memcpy(out + at, with, nl);
  memcpy(out + at + nl, b + at + wl, n - at - wl);
  ok = write_all(path, out, n - wl + nl);
  free(out);
  free(b);
  return ok;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
static void put_u64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

/* Rewrites dir/model.safetensors (copied from a test checkpoint) with its JSON header changed: `what` ->
 * `with` (same length; when what != NULL), `insert` placed before the header's final '}' (when != NULL),
 * `extra` zero bytes appended to the data, and the data cut to `keep_data` bytes (when > 0). */
static int edit_safetensors(const char *dir, const char *what, const char *with, const char *insert, size_t extra,
                            size_t keep_data) {
  char p[1024], ins[512], *hdr, *hit, *end;
  size_t n, hl, data_len, nh;
  unsigned char *b, *out;
  int ok;
  path_in(p, sizeof p, dir, "model.safetensors");
  b = read_all(p, &n);
  if (!b || n < 8) return 0;
  hl = (size_t)get_u64(b);
  data_len = n - 8 - hl;
  hdr = (char *)malloc(hl + 1024);
  memcpy(hdr, b + 8, hl);
  hdr[hl] = 0;
  while (hl > 0 && hdr[hl - 1] == ' ') hdr[--hl] = 0; /* padding */
  if (what) {
    hit = strstr(hdr, what);
    if (!hit || strlen(what) != strlen(with)) return 0;
    memcpy(hit, with, strlen(with));
  }
  if (insert) {
    snprintf(ins, sizeof ins, "%s", insert);
    end = strrchr(hdr, '}');
    if (!end) return 0;
    memmove(end + strlen(ins), end, strlen(end) + 1);
    memcpy(end, ins, strlen(ins));
  }
  nh = strlen(hdr);
  if (keep_data > 0 && keep_data < data_len) data_len = keep_data;
  out = (unsigned char *)calloc(8 + nh + data_len + extra, 1);
  put_u64(out, nh);
  memcpy(out + 8, hdr, nh);
  memcpy(out + 8 + nh, b + 8 + get_u64(b), data_len);
  ok = write_all(p, out, 8 + nh + data_len + extra);
  free(out);
  free(hdr);
  free(b);
  return ok;
}

/* A fresh copy of checkpoint `src` named `name` under the temporary directory. */
static const char *fresh_copy(char *buf, size_t cap, const char *src, const char *name) {
  path_in(buf, cap, tmp, name);
  if (!copy_dir(src, buf)) fprintf(stderr, "cannot copy %s to %s\n", src, buf);
  return buf;
}

/* The name of the first segment file (not MANIFEST) of bank directory `dir`. */
static int first_segment(const char *dir, char *out, size_t cap) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int found = 0;
  if (!d) return 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "MANIFEST") == 0 || strcmp(e->d_name, "LOCK") == 0) continue;
    path_in(out, cap, dir, e->d_name);
    found = 1;
    break;
  }
  closedir(d);
  return found;
}

/* Flips one byte in every 16 of every content data section (kind 6, FORMAT.md) of a segment file: the tables
 * and routing keys checked at open stay intact, every content frame fails its checksum when read. */
static int corrupt_content(const char *segment) {
  size_t n, i, s;
  unsigned char *b = read_all(segment, &n);
  uint32_t n_sections;
  int hit = 0, ok;
  if (!b || n < 64) return 0;
  n_sections = (uint32_t)b[16] | (uint32_t)b[17] << 8 | (uint32_t)b[18] << 16 | (uint32_t)b[19] << 24;
  for (s = 0; s < n_sections && 64 + 40 * (s + 1) <= n; ++s) {
    const unsigned char *e = b + 64 + 40 * s;
    uint32_t kind = (uint32_t)e[0] | (uint32_t)e[1] << 8;
    uint64_t off = get_u64(e + 8), len = get_u64(e + 16);
    if (kind != 6 || off + len > n) continue;
    for (i = 0; i < len; i += 16) b[off + i] ^= 0x5A;
    hit = 1;
  }
  ok = hit && write_all(segment, b, n);
  free(b);
  return ok;
}

/* ------------------------------------------------------------------------------------------- callbacks */
static int cancel_progress(int64_t done, int64_t total, int64_t td, int64_t tt, void *user) {
  (void)done; (void)total; (void)td; (void)tt; (void)user;
  return 1;
}
static int cancel_token(const char *piece, size_t len, void *user) {
  (void)piece; (void)len; (void)user;
  return 1;
}
static int nan_logits(int32_t round, int64_t round_step, int64_t step, float *logits, int64_t n_vocab, void *user) {
  int64_t i;
  (void)round; (void)round_step; (void)step; (void)user;
  for (i = 0; i < n_vocab; ++i) logits[i] = (float)NAN;
  return 0;
}
static int cancel_logits(int32_t round, int64_t round_step, int64_t step, float *logits, int64_t n_vocab,
                         void *user) {
  (void)round; (void)round_step; (void)step; (void)logits; (void)n_vocab; (void)user;
  return 1;
}

/* ------------------------------------------------------------------------------------------- main */
int main(int argc, char **argv) {
  char tokdir[2048], tiny[2048], micro[1024], micro64[1024], other[1024], p[1024], q[1024], seg[1024];
  const char *texts[3] = {"The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
                          "Bananas are rich in potassium."};
  msa_checkpoint_params cp;
  msa_model_params mp;
  msa_memory_params memp;
  msa_generate_params gp;
  msa_model *model = NULL, *bare = NULL, *small = NULL, *other_model = NULL, *m = NULL;
  msa_memory *mem = NULL, *mem2 = NULL, *other_mem = NULL;
  msa_result *res = NULL;
  msa_tokenizer *tk = NULL;
  const msa_tokenizer *mtok;
  msa_detokenizer *dt = NULL;
  msa_document docs[3], doc;
  uint64_t ids[3];
  int32_t tok_ids[8], id, state;
  char text[64];
  size_t n;
  int i;

  if (argc < 2) return 2;
  snprintf(tokdir, sizeof tokdir, "%s/../../../shared/data/qwen3-tokenizer", argv[1]);
  snprintf(tiny, sizeof tiny, "%s/models/tiny_tied_f32", argv[1]);
  snprintf(tmp, sizeof tmp, "/tmp/msa_error_codes_XXXXXX");
  if (!mkdtemp(tmp)) return 2;

  /* ================================================================ library */
  /* msa_version, msa_version_number, msa_version_compatible, msa_status_string, msa_last_error and
   * msa_log_set return no status. Every code has its name. */
  CHECK(strcmp(msa_status_string(MSA_ERR_INVALID_ARGUMENT), "MSA_ERR_INVALID_ARGUMENT") == 0);
  CHECK(strcmp(msa_status_string(MSA_ERR_BUSY), "MSA_ERR_BUSY") == 0);
  {
    unsigned char buf[256];
    EXPECT("msa_params_init", "params NULL", MSA_ERR_INVALID_ARGUMENT,
           msa_params_init(MSA_PARAMS_MODEL, NULL, sizeof(msa_model_params)));
    EXPECT("msa_params_init", "unknown kind 99", MSA_ERR_INVALID_ARGUMENT,
           msa_params_init((msa_params_kind)99, buf, sizeof buf));
    EXPECT("msa_params_init", "struct_size 2 (< sizeof(uint32_t))", MSA_ERR_INVALID_ARGUMENT,
           msa_params_init(MSA_PARAMS_GENERATE, buf, 2));
    EXPECT("msa_params_init", "struct_size 6 (half a field)", MSA_ERR_INVALID_ARGUMENT,
           msa_params_init(MSA_PARAMS_MODEL, buf, 6));
    EXPECT("msa_params_init", "struct_size 36 (between two layouts)", MSA_ERR_INVALID_ARGUMENT,
           msa_params_init(MSA_PARAMS_GENERATE, buf, 36));
    EXPECT("msa_params_init", "struct_size 48 (the first release's layout)", MSA_OK,
           msa_params_init(MSA_PARAMS_GENERATE, buf, 48));
    EXPECT("msa_params_init", "struct_size sizeof + 16 (a newer header)", MSA_OK,
           msa_params_init(MSA_PARAMS_GENERATE, buf, sizeof(msa_generate_params) + 16));
  }

  /* ================================================================ random checkpoints */
  msa_checkpoint_params_init(&cp);
  cp.preset = "micro";
  cp.seed = 3;
  cp.tokenizer_dir = tokdir;
  path_in(micro, sizeof micro, tmp, "micro");
  EXPECT("msa_checkpoint_init", "valid micro checkpoint", MSA_OK, msa_checkpoint_init(&cp, micro));
  EXPECT("msa_checkpoint_init", "out_dir NULL", MSA_ERR_INVALID_ARGUMENT, msa_checkpoint_init(&cp, NULL));
  cp.preset = "huge";
  EXPECT("msa_checkpoint_init", "unknown preset", MSA_ERR_INVALID_ARGUMENT,
         msa_checkpoint_init(&cp, path_in(p, sizeof p, tmp, "bad_preset")));
  cp.preset = "micro";
  cp.msa_config_json = "{not json";
  EXPECT("msa_checkpoint_init", "bad override JSON", MSA_ERR_INVALID_ARGUMENT,
         msa_checkpoint_init(&cp, path_in(p, sizeof p, tmp, "bad_json")));
  cp.msa_config_json = "{\"no_such_key\": 1}";
  EXPECT("msa_checkpoint_init", "unknown override key", MSA_ERR_INVALID_ARGUMENT,
         msa_checkpoint_init(&cp, path_in(p, sizeof p, tmp, "bad_key")));
  cp.msa_config_json = NULL;
  cp.tokenizer_dir = tmp; /* holds no tokenizer.json */
  EXPECT("msa_checkpoint_init", "tokenizer files missing", MSA_ERR_TOKENIZER,
         msa_checkpoint_init(&cp, path_in(p, sizeof p, tmp, "no_tok")));
  cp.tokenizer_dir = tokdir;
  write_all(path_in(q, sizeof q, tmp, "a_file"), "x", 1);
  EXPECT("msa_checkpoint_init", "out_dir below a regular file", MSA_ERR_IO,
         msa_checkpoint_init(&cp, path_in(p, sizeof p, q, "sub")));
  cp.struct_size = 6;
  EXPECT("msa_checkpoint_init", "params->struct_size 6", MSA_ERR_INVALID_ARGUMENT,
         msa_checkpoint_init(&cp, path_in(p, sizeof p, tmp, "size6")));
  cp.struct_size = sizeof cp;
  cp.seed = 4; /* another model with the same shapes: its banks are not ours */
  path_in(other, sizeof other, tmp, "other");
  CHECK(msa_checkpoint_init(&cp, other) == MSA_OK);

  /* ================================================================ model */
  EXPECT("msa_model_load", "valid micro checkpoint", MSA_OK, msa_model_load(micro, NULL, &model));
  if (!model) return 1;
  msa_model_params_init(&mp);
  mp.load_tokenizer = 0;
  EXPECT("msa_model_load", "load_tokenizer = 0", MSA_OK, msa_model_load(micro, &mp, &bare));
  CHECK(msa_model_load(other, NULL, &other_model) == MSA_OK);
  /* micro with max_position_embeddings 64: cheap context overflows */
  fresh_copy(micro64, sizeof micro64, micro, "micro64");
  CHECK(edit_text(path_in(p, sizeof p, micro64, "config.json"), "262144", "64"));
  CHECK(msa_model_load(micro64, NULL, &small) == MSA_OK);

  EXPECT("msa_model_load", "out_model NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, NULL, NULL));
  EXPECT("msa_model_load", "dir NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_load(NULL, NULL, &m));
  CHECK(m == NULL);
  msa_model_params_init(&mp);
  mp.n_threads = -1;
  EXPECT("msa_model_load", "n_threads -1", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.n_threads = MSA_MAX_THREADS + 1;
  EXPECT("msa_model_load", "n_threads MSA_MAX_THREADS + 1", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.n_threads = 0;
  mp.backend = 7;
  EXPECT("msa_model_load", "backend 7", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.backend = MSA_BACKEND_CUDA;
  {
    /* The CUDA backend: MSA_ERR_NO_DEVICE in a CUDA build without a usable GPU (CI), MSA_ERR_UNSUPPORTED in a
     * build without CUDA; a machine with a GPU loads the model. Either error names the CUDA backend. */
    const msa_status st = msa_model_load(micro, &mp, &m);
    if (st == MSA_OK) {
      msa_model_free(m);
      m = NULL;
      EXPECT("msa_model_load", "backend CUDA (a GPU is present)", MSA_OK, st);
    } else {
      const char *msg = msa_last_error();
      EXPECT("msa_model_load", "backend CUDA without a GPU (CUDA build) or without CUDA",
             st == MSA_ERR_UNSUPPORTED ? MSA_ERR_UNSUPPORTED : MSA_ERR_NO_DEVICE, st);
      if (strstr(msg, "cuda") == NULL && strstr(msg, "CUDA") == NULL) {
        fprintf(stderr, "FAIL msa_model_load: the CUDA error does not name CUDA: \"%s\"\n", msg);
        failures++;
      }
    }
  }
  mp.device = -1;
  EXPECT("msa_model_load", "backend CUDA, device -1", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.device = 0;
  mp.backend = MSA_BACKEND_CPU;
  mp.device = 1;
  EXPECT("msa_model_load", "backend CPU, device 1", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.device = 0;
  mp.cuda_stream = &mp;
  EXPECT("msa_model_load", "backend CPU with a cuda_stream", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.cuda_stream = NULL;
  mp.struct_size = 6;
  EXPECT("msa_model_load", "params->struct_size 6", MSA_ERR_INVALID_ARGUMENT, msa_model_load(micro, &mp, &m));
  mp.struct_size = (uint32_t)offsetof(msa_model_params, load_tokenizer);
  EXPECT("msa_model_load", "params->struct_size 12 (no such layout)", MSA_ERR_INVALID_ARGUMENT,
         msa_model_load(micro, &mp, &m));
  msa_model_params_init(&mp);
  mp.load_tokenizer = 0;
  EXPECT("msa_model_load", "directory missing", MSA_ERR_IO,
         msa_model_load(path_in(p, sizeof p, tmp, "nowhere"), &mp, &m));
  fresh_copy(p, sizeof p, tiny, "cfg_bad");
  write_all(path_in(q, sizeof q, p, "config.json"), "{not json", 9);
  EXPECT("msa_model_load", "config.json malformed", MSA_ERR_CONFIG, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "shape");
  CHECK(edit_text(path_in(q, sizeof q, p, "config.json"), "\"intermediate_size\": 128", "\"intermediate_size\": 256"));
  EXPECT("msa_model_load", "tensor shape != config", MSA_ERR_SHAPE, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "bad_header");
  CHECK(edit_safetensors(p, "{\"__metadata__\"", "[\"__metadata__\"", NULL, 0, 0));
  EXPECT("msa_model_load", "safetensors header not a JSON object", MSA_ERR_BAD_HEADER, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "truncated");
  CHECK(edit_safetensors(p, NULL, NULL, NULL, 0, 1000));
  EXPECT("msa_model_load", "safetensors data cut", MSA_ERR_TRUNCATED, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "overlap");
  CHECK(edit_safetensors(p, NULL, NULL, ",\"extra.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 0,
                         0));
  EXPECT("msa_model_load", "two tensors share bytes", MSA_ERR_TENSOR_OVERLAP, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "dtype");
  CHECK(edit_safetensors(p, "\"model.norm.weight\":{\"dtype\":\"F32\"", "\"model.norm.weight\":{\"dtype\":\"I32\"",
                         NULL, 0, 0));
  EXPECT("msa_model_load", "a weight of dtype I32", MSA_ERR_DTYPE, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "missing");
  CHECK(edit_safetensors(p, "\"model.norm.weight\"", "\"model.norm.weighX\"", NULL, 0, 0));
  EXPECT("msa_model_load", "model.norm.weight absent", MSA_ERR_MISSING_TENSOR, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "unexpected");
  {
    size_t len;
    unsigned char *b = read_all(path_in(q, sizeof q, p, "model.safetensors"), &len);
    char ins[256];
    unsigned long d = b ? (unsigned long)(len - 8 - get_u64(b)) : 0;
    free(b);
    snprintf(ins, sizeof ins, ",\"extra.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%lu,%lu]}", d, d + 4);
    CHECK(edit_safetensors(p, NULL, NULL, ins, 4, 0));
  }
  EXPECT("msa_model_load", "a tensor the model does not use", MSA_ERR_UNEXPECTED_TENSOR, msa_model_load(p, &mp, &m));
  fresh_copy(p, sizeof p, tiny, "bad_tok");
  write_all(path_in(q, sizeof q, p, "tokenizer.json"), "{}", 2);
  msa_model_params_init(&mp);
  EXPECT("msa_model_load", "tokenizer.json malformed", MSA_ERR_TOKENIZER, msa_model_load(p, &mp, &m));
  CHECK(m == NULL);
  /* MSA_ERR_OUT_OF_MEMORY: not provoked (see the top). */

  {
    msa_model_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    EXPECT("msa_model_info", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_info(NULL, &d));
    EXPECT("msa_model_info", "info NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_info(model, NULL));
    d.struct_size = 6;
    EXPECT("msa_model_info", "struct_size 6", MSA_ERR_INVALID_ARGUMENT, msa_model_info(model, &d));
    d.struct_size = sizeof d - 8;
    EXPECT("msa_model_info", "struct_size sizeof - 8 (no such layout)", MSA_ERR_INVALID_ARGUMENT,
           msa_model_info(model, &d));
    d.struct_size = sizeof d;
    EXPECT("msa_model_info", "struct_size sizeof", MSA_OK, msa_model_info(model, &d));
  }
  {
    static float logits[151936];
    static int32_t many[65];
    int32_t t1[1] = {785}, bad_id[1] = {151936};
    EXPECT("msa_model_logits", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_logits(NULL, t1, 1, logits, 151936));
    EXPECT("msa_model_logits", "tokens NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_logits(model, NULL, 1, logits, 151936));
    EXPECT("msa_model_logits", "out_logits NULL", MSA_ERR_INVALID_ARGUMENT, msa_model_logits(model, t1, 1, NULL, 151936));
    EXPECT("msa_model_logits", "n_tokens 0", MSA_ERR_INVALID_ARGUMENT, msa_model_logits(model, t1, 0, logits, 151936));
    EXPECT("msa_model_logits", "token id == vocab_size", MSA_ERR_INVALID_ARGUMENT,
           msa_model_logits(model, bad_id, 1, logits, 151936));
    EXPECT("msa_model_logits", "cap < vocab_size", MSA_ERR_BUFFER_TOO_SMALL, msa_model_logits(model, t1, 1, logits, 100));
    EXPECT("msa_model_logits", "65 tokens, max_position_embeddings 64", MSA_ERR_CONTEXT_OVERFLOW,
           msa_model_logits(small, many, 65, logits, 151936));
    EXPECT("msa_model_logits", "valid", MSA_OK, msa_model_logits(model, t1, 1, logits, 151936));
  }

  /* ================================================================ tokenizer */
  mtok = msa_model_tokenizer(model);
  CHECK(mtok != NULL && msa_model_tokenizer(bare) == NULL && msa_model_tokenizer(NULL) == NULL);
  EXPECT("msa_tokenizer_load", "path NULL", MSA_ERR_INVALID_ARGUMENT, msa_tokenizer_load(NULL, &tk));
  EXPECT("msa_tokenizer_load", "out_tokenizer NULL", MSA_ERR_INVALID_ARGUMENT, msa_tokenizer_load(tokdir, NULL));
  EXPECT("msa_tokenizer_load", "file missing", MSA_ERR_IO,
         msa_tokenizer_load(path_in(p, sizeof p, tmp, "none.json"), &tk));
  write_all(path_in(p, sizeof p, tmp, "bad_tokenizer.json"), "{}", 2);
  EXPECT("msa_tokenizer_load", "no model object", MSA_ERR_TOKENIZER, msa_tokenizer_load(p, &tk));
  {
    const char *wp = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}";
    write_all(path_in(p, sizeof p, tmp, "wordpiece.json"), wp, strlen(wp));
    EXPECT("msa_tokenizer_load", "a WordPiece tokenizer", MSA_ERR_UNSUPPORTED, msa_tokenizer_load(p, &tk));
  }
  CHECK(tk == NULL);
  {
    msa_tokenizer_desc td;
    memset(&td, 0, sizeof td);
    td.struct_size = sizeof td;
    EXPECT("msa_tokenizer_info", "tokenizer NULL", MSA_ERR_INVALID_ARGUMENT, msa_tokenizer_info(NULL, &td));
    EXPECT("msa_tokenizer_info", "info NULL", MSA_ERR_INVALID_ARGUMENT, msa_tokenizer_info(mtok, NULL));
    td.struct_size = 8;
    EXPECT("msa_tokenizer_info", "struct_size 8", MSA_ERR_INVALID_ARGUMENT, msa_tokenizer_info(mtok, &td));
  }
  EXPECT("msa_tokenizer_tokenize", "tokenizer NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_tokenize(NULL, "a", 1, 0, tok_ids, 8, &n));
  EXPECT("msa_tokenizer_tokenize", "out_n_ids NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_tokenize(mtok, "a", 1, 0, tok_ids, 8, NULL));
  EXPECT("msa_tokenizer_tokenize", "text NULL, text_len 3", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_tokenize(mtok, NULL, 3, 0, tok_ids, 8, &n));
  EXPECT("msa_tokenizer_tokenize", "cap 0", MSA_ERR_BUFFER_TOO_SMALL,
         msa_tokenizer_tokenize(mtok, "Hello world", 11, 0, NULL, 0, &n));
  CHECK(n == 2);
  tok_ids[0] = 9707;
  EXPECT("msa_tokenizer_detokenize", "tokenizer NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_detokenize(NULL, tok_ids, 1, 0, text, sizeof text, &n));
  EXPECT("msa_tokenizer_detokenize", "out_len NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_detokenize(mtok, tok_ids, 1, 0, text, sizeof text, NULL));
  tok_ids[1] = -1;
  EXPECT("msa_tokenizer_detokenize", "id -1", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_detokenize(mtok, tok_ids, 2, 0, text, sizeof text, &n));
  EXPECT("msa_tokenizer_detokenize", "cap 0", MSA_ERR_BUFFER_TOO_SMALL,
         msa_tokenizer_detokenize(mtok, tok_ids, 1, 0, NULL, 0, &n));
  EXPECT("msa_tokenizer_token_to_piece", "tokenizer NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_token_to_piece(NULL, 9707, text, sizeof text, &n));
  EXPECT("msa_tokenizer_token_to_piece", "id outside the vocabulary", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_token_to_piece(mtok, 1 << 30, text, sizeof text, &n));
  EXPECT("msa_tokenizer_token_to_piece", "cap 0", MSA_ERR_BUFFER_TOO_SMALL,
         msa_tokenizer_token_to_piece(mtok, 9707, NULL, 0, &n));
  EXPECT("msa_tokenizer_token_to_id", "out_id NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_token_to_id(mtok, "Hello", 5, NULL));
  EXPECT("msa_tokenizer_token_to_id", "tokenizer NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_token_to_id(NULL, "Hello", 5, &id));
  EXPECT("msa_tokenizer_token_to_id", "no such token", MSA_ERR_INVALID_ARGUMENT,
         msa_tokenizer_token_to_id(mtok, "no such token at all", 20, &id));
  CHECK(id == -1);
  EXPECT("msa_tokenize", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_tokenize(NULL, "a", 1, 0, tok_ids, 8, &n));
  EXPECT("msa_tokenize", "model without tokenizer", MSA_ERR_TOKENIZER, msa_tokenize(bare, "a", 1, 0, tok_ids, 8, &n));
  EXPECT("msa_tokenize", "cap 0", MSA_ERR_BUFFER_TOO_SMALL, msa_tokenize(model, "Hello world", 11, 0, NULL, 0, &n));
  tok_ids[0] = 9707;
  EXPECT("msa_detokenize", "model NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_detokenize(NULL, tok_ids, 1, 0, text, sizeof text, &n));
  EXPECT("msa_detokenize", "model without tokenizer", MSA_ERR_TOKENIZER,
         msa_detokenize(bare, tok_ids, 1, 0, text, sizeof text, &n));
  EXPECT("msa_detokenize", "cap 0", MSA_ERR_BUFFER_TOO_SMALL, msa_detokenize(model, tok_ids, 1, 0, NULL, 0, &n));
  EXPECT("msa_token_to_piece", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_token_to_piece(NULL, 9707, text, 64, &n));
  EXPECT("msa_token_to_piece", "model without tokenizer", MSA_ERR_TOKENIZER,
         msa_token_to_piece(bare, 9707, text, 64, &n));
  EXPECT("msa_token_to_piece", "cap 0", MSA_ERR_BUFFER_TOO_SMALL, msa_token_to_piece(model, 9707, NULL, 0, &n));
  EXPECT("msa_detokenizer_create", "tokenizer NULL", MSA_ERR_INVALID_ARGUMENT, msa_detokenizer_create(NULL, 0, &dt));
  EXPECT("msa_detokenizer_create", "out_detokenizer NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_detokenizer_create(mtok, 0, NULL));
  EXPECT("msa_detokenizer_create", "valid", MSA_OK, msa_detokenizer_create(mtok, 0, &dt));
  EXPECT("msa_detokenizer_push", "detokenizer NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_detokenizer_push(NULL, 9707, text, sizeof text, &n));
  EXPECT("msa_detokenizer_push", "out_len NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_detokenizer_push(dt, 9707, text, sizeof text, NULL));
  EXPECT("msa_detokenizer_push", "id outside the vocabulary", MSA_ERR_INVALID_ARGUMENT,
         msa_detokenizer_push(dt, -5, text, sizeof text, &n));
  EXPECT("msa_detokenizer_push", "cap 0 for \"Hello\"", MSA_ERR_BUFFER_TOO_SMALL, msa_detokenizer_push(dt, 9707, NULL, 0, &n));
  CHECK(n == 5);
  /* a dangling lead byte: flush must write U+FFFD (3 bytes) */
  EXPECT("msa_tokenizer_token_to_id", "the byte 0xE4", MSA_OK, msa_tokenizer_token_to_id(mtok, "\xe4", 1, &id));
  EXPECT("msa_detokenizer_push", "a lead byte (nothing complete)", MSA_OK, msa_detokenizer_push(dt, id, NULL, 0, &n));
  EXPECT("msa_detokenizer_flush", "detokenizer NULL", MSA_ERR_INVALID_ARGUMENT, msa_detokenizer_flush(NULL, text, 64, &n));
  EXPECT("msa_detokenizer_flush", "out_len NULL", MSA_ERR_INVALID_ARGUMENT, msa_detokenizer_flush(dt, text, 64, NULL));
  EXPECT("msa_detokenizer_flush", "cap 2 for U+FFFD", MSA_ERR_BUFFER_TOO_SMALL, msa_detokenizer_flush(dt, text, 2, &n));
  CHECK(n == 3);
  msa_detokenizer_free(dt);

  /* ================================================================ memory banks */
  memset(docs, 0, sizeof docs);
  for (i = 0; i < 3; ++i) {
    docs[i].text = texts[i];
    docs[i].text_len = strlen(texts[i]);
  }
  msa_memory_params_init(&memp);
  EXPECT("msa_memory_create", "out_memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_create(model, NULL, NULL));
  EXPECT("msa_memory_create", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_create(NULL, NULL, &mem));
  memp.batch_tokens = 0;
  EXPECT("msa_memory_create", "batch_tokens 0", MSA_ERR_INVALID_ARGUMENT, msa_memory_create(model, &memp, &mem));
  msa_memory_params_init(&memp);
  memp.page_dtype = 9;
  EXPECT("msa_memory_create", "page_dtype 9", MSA_ERR_INVALID_ARGUMENT, msa_memory_create(model, &memp, &mem));
  msa_memory_params_init(&memp);
  memp.struct_size = 6;
  EXPECT("msa_memory_create", "params->struct_size 6", MSA_ERR_INVALID_ARGUMENT, msa_memory_create(model, &memp, &mem));
  EXPECT("msa_memory_create", "model without tokenizer", MSA_ERR_INVALID_ARGUMENT, msa_memory_create(bare, NULL, &mem));
  /* (a model without router layers: a plain Qwen3 checkpoint, not made by msa_checkpoint_init) */
  CHECK(mem == NULL);
  msa_memory_params_init(&memp);
  memp.page_dtype = MSA_PAGE_F32;
  EXPECT("msa_memory_create", "valid", MSA_OK, msa_memory_create(model, &memp, &mem));
  if (!mem) return 1;

  EXPECT("msa_memory_add_documents", "memory NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(NULL, docs, 3, NULL, NULL, NULL));
  EXPECT("msa_memory_add_documents", "n_docs 0", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(mem, docs, 0, NULL, NULL, NULL));
  EXPECT("msa_memory_add_documents", "docs NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(mem, NULL, 3, NULL, NULL, NULL));
  EXPECT("msa_memory_add_documents", "n_docs MSA_MAX_DOCUMENTS_PER_CALL + 1", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(mem, docs, (size_t)MSA_MAX_DOCUMENTS_PER_CALL + 1, NULL, NULL, NULL));
  EXPECT("msa_memory_add_documents", "n_docs SIZE_MAX", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(mem, docs, (size_t)-1, NULL, NULL, NULL));
  doc = docs[0];
  doc.text_len = 0;
  EXPECT("msa_memory_add_documents", "an empty document", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(mem, &doc, 1, NULL, NULL, NULL));
  {
    msa_document two[2];
    two[0] = docs[0];
    two[1] = docs[1];
    two[0].has_id = two[1].has_id = 1;
    two[0].id = two[1].id = 7;
    EXPECT("msa_memory_add_documents", "a duplicate id in the call", MSA_ERR_INVALID_ARGUMENT,
           msa_memory_add_documents(mem, two, 2, NULL, NULL, NULL));
  }
  doc = docs[0];
  doc.text = "abc\xff\xfe";
  doc.text_len = 5;
  EXPECT("msa_memory_add_documents", "invalid UTF-8", MSA_ERR_INVALID_UTF8,
         msa_memory_add_documents(mem, &doc, 1, NULL, NULL, NULL));
  EXPECT("msa_memory_add_documents", "progress callback returns 1", MSA_ERR_CANCELLED,
         msa_memory_add_documents(mem, docs, 3, cancel_progress, NULL, NULL));
  EXPECT("msa_memory_add_documents", "valid", MSA_OK, msa_memory_add_documents(mem, docs, 3, NULL, NULL, ids));
  doc = docs[0];
  doc.has_id = 1;
  doc.id = ids[1];
  EXPECT("msa_memory_add_documents", "an id already in the bank", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_add_documents(mem, &doc, 1, NULL, NULL, NULL));
  {
    /* a document longer than max_position_embeddings (64) */
    msa_memory *small_mem = NULL;
    char longtext[2048];
    for (i = 0; i < 200; ++i) memcpy(longtext + 5 * i, "word ", 5);
    doc = docs[0];
    doc.text = longtext;
    doc.text_len = 1000;
    CHECK(msa_memory_create(small, NULL, &small_mem) == MSA_OK);
    EXPECT("msa_memory_add_documents", "a document longer than max_position_embeddings", MSA_ERR_CONTEXT_OVERFLOW,
           msa_memory_add_documents(small_mem, &doc, 1, NULL, NULL, NULL));
    msa_memory_free(small_mem);
  }

  {
    msa_memory_usage u;
    memset(&u, 0, sizeof u);
    u.struct_size = sizeof u;
    EXPECT("msa_memory_stats", "memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_stats(NULL, &u));
    EXPECT("msa_memory_stats", "usage NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_stats(mem, NULL));
    u.struct_size = 60;
    EXPECT("msa_memory_stats", "struct_size 60 (between two layouts)", MSA_ERR_INVALID_ARGUMENT,
           msa_memory_stats(mem, &u));
    u.struct_size = 56;
    EXPECT("msa_memory_stats", "struct_size 56 (the first release's)", MSA_OK, msa_memory_stats(mem, &u));
    CHECK(u.struct_size == 56 && u.n_documents == 3);
  }
  EXPECT("msa_memory_document_state", "memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_document_state(NULL, 0, &state));
  EXPECT("msa_memory_document_state", "out_state NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_document_state(mem, 0, NULL));
  EXPECT("msa_memory_verify", "memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_verify(NULL));

  /* persistence */
  EXPECT("msa_memory_save", "memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_save(NULL, "x"));
  EXPECT("msa_memory_save", "path NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_save(mem, NULL));
  EXPECT("msa_memory_save", "path below a regular file", MSA_ERR_IO,
         msa_memory_save(mem, path_in(p, sizeof p, q, "bank")));
  path_in(p, sizeof p, tmp, "bank");
  EXPECT("msa_memory_save", "valid", MSA_OK, msa_memory_save(mem, p));
  EXPECT("msa_memory_remove_documents", "memory NULL", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_remove_documents(NULL, ids, 1));
  EXPECT("msa_memory_remove_documents", "ids NULL, n_ids 1", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_remove_documents(mem, NULL, 1));
  EXPECT("msa_memory_remove_documents", "n_ids SIZE_MAX", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_remove_documents(mem, ids, (size_t)-1));
  {
    uint64_t bad_ids[2] = {999, 0};
    EXPECT("msa_memory_remove_documents", "an id not in the bank", MSA_ERR_INVALID_ARGUMENT,
           msa_memory_remove_documents(mem, bad_ids, 1));
    bad_ids[0] = ids[0];
    bad_ids[1] = ids[0];
    EXPECT("msa_memory_remove_documents", "a duplicate id", MSA_ERR_INVALID_ARGUMENT,
           msa_memory_remove_documents(mem, bad_ids, 2));
  }
  EXPECT("msa_memory_remove_documents", "valid", MSA_OK, msa_memory_remove_documents(mem, ids, 1));
  EXPECT("msa_memory_remove_documents", "an id already removed", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_remove_documents(mem, ids, 1));
  EXPECT("msa_memory_compact", "memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_compact(NULL));
  EXPECT("msa_memory_compact", "valid", MSA_OK, msa_memory_compact(mem));

  /* the attached directory replaced by a regular file: every commit fails with MSA_ERR_IO */
  fresh_copy(q, sizeof q, p, "bank_gone");
  CHECK(msa_memory_open(model, q, NULL, &mem2) == MSA_OK);
  if (mem2) {
    remove_tree(q);
    write_all(q, "x", 1);
    EXPECT("msa_memory_add_documents", "attached directory gone", MSA_ERR_IO,
           msa_memory_add_documents(mem2, docs, 1, NULL, NULL, NULL));
    EXPECT("msa_memory_remove_documents", "attached directory gone", MSA_ERR_IO,
           msa_memory_remove_documents(mem2, ids + 1, 1));
    EXPECT("msa_memory_compact", "attached directory gone", MSA_ERR_IO, msa_memory_compact(mem2));
    msa_memory_free(mem2);
    mem2 = NULL;
  }

  EXPECT("msa_memory_open", "out_memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_open(model, p, NULL, NULL));
  EXPECT("msa_memory_open", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_open(NULL, p, NULL, &mem2));
  EXPECT("msa_memory_open", "path NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_open(model, NULL, NULL, &mem2));
  msa_memory_params_init(&memp);
  memp.struct_size = 12;
  EXPECT("msa_memory_open", "params->struct_size 12 (no such layout)", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_open(model, p, &memp, &mem2));
  EXPECT("msa_memory_open", "a bank of another model (other weights)", MSA_ERR_INVALID_ARGUMENT,
         msa_memory_open(other_model, p, NULL, &mem2));
  EXPECT("msa_memory_open", "directory missing", MSA_ERR_IO,
         msa_memory_open(model, path_in(q, sizeof q, tmp, "no_bank"), NULL, &mem2));
  {
    size_t len;
    unsigned char *b = read_all(path_in(q, sizeof q, p, "MANIFEST"), &len);
    fresh_copy(seg, sizeof seg, p, "bank_trunc");
    write_all(path_in(q, sizeof q, seg, "MANIFEST"), b, len / 2);
    EXPECT("msa_memory_open", "MANIFEST cut in half", MSA_ERR_TRUNCATED, msa_memory_open(model, seg, NULL, &mem2));
    fresh_copy(seg, sizeof seg, p, "bank_flip");
    if (b && len > 70) b[70] ^= 1;
    write_all(path_in(q, sizeof q, seg, "MANIFEST"), b, len);
    EXPECT("msa_memory_open", "a bit flipped in MANIFEST", MSA_ERR_CORRUPT, msa_memory_open(model, seg, NULL, &mem2));
    free(b);
  }
  /* MSA_ERR_UNSUPPORTED (another format version): see the top. */
  CHECK(mem2 == NULL);

  {
    msa_memory_file_desc fd;
    struct {
      msa_memory_file_desc d;
      unsigned char future[16];
    } fdn;
    memset(&fd, 0, sizeof fd);
    fd.struct_size = sizeof fd;
    EXPECT("msa_memory_file_info", "path NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_file_info(NULL, 0, &fd));
    EXPECT("msa_memory_file_info", "desc NULL", MSA_ERR_INVALID_ARGUMENT, msa_memory_file_info(p, 0, NULL));
    fd.struct_size = 6;
    EXPECT("msa_memory_file_info", "struct_size 6", MSA_ERR_INVALID_ARGUMENT, msa_memory_file_info(p, 0, &fd));
    fd.struct_size = sizeof fd;
    EXPECT("msa_memory_file_info", "directory missing", MSA_ERR_IO,
           msa_memory_file_info(path_in(q, sizeof q, tmp, "no_bank"), 0, &fd));
    EXPECT("msa_memory_file_info", "MANIFEST cut in half", MSA_ERR_TRUNCATED,
           msa_memory_file_info(path_in(q, sizeof q, tmp, "bank_trunc"), 0, &fd));
    EXPECT("msa_memory_file_info", "a bit flipped in MANIFEST", MSA_ERR_CORRUPT,
           msa_memory_file_info(path_in(q, sizeof q, tmp, "bank_flip"), 0, &fd));
    EXPECT("msa_memory_file_info", "valid", MSA_OK, msa_memory_file_info(p, 1, &fd));
    CHECK(fd.struct_size == sizeof fd && fd.n_documents == 2);
    /* a newer, larger struct: the tail this library does not know is zeroed */
    memset(&fdn, 0xAB, sizeof fdn);
    fdn.d.struct_size = sizeof fdn;
    EXPECT("msa_memory_file_info", "a newer, larger struct", MSA_OK, msa_memory_file_info(p, 0, &fdn.d));
    CHECK(fdn.d.struct_size == sizeof(msa_memory_file_desc) && fdn.d.n_documents == 2);
    for (i = 0; i < (int)sizeof fdn.future; ++i) CHECK(fdn.future[i] == 0);
  }

  /* a bank whose content pages are corrupt (routing keys and tables intact): lazy open succeeds, every read
   * of a page fails */
  fresh_copy(seg, sizeof seg, p, "bank_content");
  CHECK(first_segment(seg, q, sizeof q) && corrupt_content(q));
  EXPECT("msa_memory_open", "corrupt content pages, lazy", MSA_OK, msa_memory_open(model, seg, NULL, &mem2));
  msa_memory_params_init(&memp);
  memp.verify_on_open = 1;
  {
    msa_memory *mv = NULL;
    EXPECT("msa_memory_open", "corrupt content pages, verify_on_open", MSA_ERR_CORRUPT,
           msa_memory_open(model, seg, &memp, &mv));
  }
  {
    msa_memory_file_desc fd;
    memset(&fd, 0, sizeof fd);
    fd.struct_size = sizeof fd;
    EXPECT("msa_memory_file_info", "corrupt content pages, verify", MSA_ERR_CORRUPT, msa_memory_file_info(seg, 1, &fd));
  }

  /* ================================================================ generation */
  msa_generate_params_init(&gp);
  gp.top_k = 2;
  gp.max_new_tokens = 3;
  gp.temperature = 0.0f;
  gp.interleave = 0;
  EXPECT("msa_generate", "valid", MSA_OK, msa_generate(model, mem, "How tall is Everest?", &gp, NULL, NULL, &res));
  msa_result_free(res);
  res = NULL;
  if (mem2) {
    EXPECT("msa_memory_verify", "corrupt content pages", MSA_ERR_CORRUPT, msa_memory_verify(mem2));
    EXPECT("msa_generate", "corrupt content pages of the routed documents", MSA_ERR_CORRUPT,
           msa_generate(model, mem2, "How tall is Everest?", &gp, NULL, NULL, &res));
    CHECK(res == NULL);
    EXPECT("msa_memory_save", "corrupt content pages", MSA_ERR_CORRUPT,
           msa_memory_save(mem2, path_in(q, sizeof q, tmp, "bank_resaved")));
    EXPECT("msa_memory_remove_documents", "valid (on the corrupt bank)", MSA_OK,
           msa_memory_remove_documents(mem2, ids + 1, 1));
    EXPECT("msa_memory_compact", "corrupt content pages", MSA_ERR_CORRUPT, msa_memory_compact(mem2));
    msa_memory_free(mem2);
    mem2 = NULL;
  }
  EXPECT("msa_generate", "out_result NULL", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, "q", &gp, NULL, NULL, NULL));
  EXPECT("msa_generate", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_generate(NULL, mem, "q", &gp, NULL, NULL, &res));
  EXPECT("msa_generate", "prompt NULL", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, NULL, &gp, NULL, NULL, &res));
  EXPECT("msa_generate", "empty prompt", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, "", &gp, NULL, NULL, &res));
  gp.top_k = 0;
  EXPECT("msa_generate", "top_k 0", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.top_k = 2;
  gp.max_new_tokens = 0;
  EXPECT("msa_generate", "max_new_tokens 0", MSA_ERR_INVALID_ARGUMENT,
         msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.max_new_tokens = 3;
  gp.max_rounds = 0;
  EXPECT("msa_generate", "max_rounds 0", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.max_rounds = MSA_MAX_ROUNDS + 1;
  EXPECT("msa_generate", "max_rounds MSA_MAX_ROUNDS + 1", MSA_ERR_INVALID_ARGUMENT,
         msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.max_rounds = 4;
  gp.temperature = (float)NAN;
  EXPECT("msa_generate", "temperature NaN", MSA_ERR_INVALID_ARGUMENT,
         msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.temperature = 0.7f;
  gp.top_p = 0.0f;
  EXPECT("msa_generate", "top_p 0", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.top_p = 1.5f;
  EXPECT("msa_generate", "top_p 1.5", MSA_ERR_INVALID_ARGUMENT, msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.top_p = -1.0f;
  gp.temperature = 0.0f;
  gp.struct_size = 6;
  EXPECT("msa_generate", "params->struct_size 6", MSA_ERR_INVALID_ARGUMENT,
         msa_generate(model, mem, "q", &gp, NULL, NULL, &res));
  gp.struct_size = sizeof gp;
  CHECK(msa_memory_create(other_model, NULL, &other_mem) == MSA_OK);
  EXPECT("msa_generate", "a bank of another model", MSA_ERR_INVALID_ARGUMENT,
         msa_generate(model, other_mem, "q", &gp, NULL, NULL, &res));
  EXPECT("msa_generate", "prompt not UTF-8", MSA_ERR_INVALID_UTF8,
         msa_generate(model, mem, "bad \xff utf8", &gp, NULL, NULL, &res));
  gp.first_position = 2147483600;
  EXPECT("msa_generate", "prompt past the positions (first_position 2^31 - 48)", MSA_ERR_CONTEXT_OVERFLOW,
         msa_generate(model, mem, "How tall is Everest?", &gp, NULL, NULL, &res));
  gp.first_position = -1;
  EXPECT("msa_generate", "prompt longer than max_position_embeddings 64", MSA_ERR_CONTEXT_OVERFLOW,
         msa_generate(small, NULL,
                      "How tall is Everest? How tall is Everest? How tall is Everest? How tall is Everest? "
                      "How tall is Everest? How tall is Everest? How tall is Everest? How tall is Everest?",
                      &gp, NULL, NULL, &res));
  /* (more than MSA_MAX_PROMPT_TOKENS tokens: tests/unit/test_engine_session.cpp, a 42 MB prompt) */
  EXPECT("msa_generate", "token callback returns 1", MSA_ERR_CANCELLED,
         msa_generate(model, mem, "How tall is Everest?", &gp, cancel_token, NULL, &res));
  CHECK(res != NULL); /* a cancelled call keeps its result */
  msa_result_free(res);
  res = NULL;
  gp.logits_callback = cancel_logits;
  EXPECT("msa_generate", "logits callback returns 1", MSA_ERR_CANCELLED,
         msa_generate(model, mem, "How tall is Everest?", &gp, NULL, NULL, &res));
  msa_result_free(res);
  res = NULL;
  gp.logits_callback = nan_logits;
  EXPECT("msa_generate", "logits callback writes NaN everywhere", MSA_ERR_INVALID_ARGUMENT,
         msa_generate(model, mem, "How tall is Everest?", &gp, NULL, NULL, &res));
  CHECK(strstr(msa_last_error(), "no finite logit") != NULL);
  CHECK(res == NULL);
  gp.logits_callback = NULL;
  EXPECT("msa_generate", "model without tokenizer", MSA_ERR_TOKENIZER,
         msa_generate(bare, NULL, "How tall is Everest?", &gp, NULL, NULL, &res));
  /* MSA_ERR_OUT_OF_MEMORY: not provoked (see the top). */

  EXPECT("msa_route", "valid", MSA_OK, msa_route(model, mem, "How tall is Everest?", &gp, &res));
  {
    msa_timings t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    EXPECT("msa_result_timings", "result NULL", MSA_ERR_INVALID_ARGUMENT, msa_result_timings(NULL, &t));
    EXPECT("msa_result_timings", "timings NULL", MSA_ERR_INVALID_ARGUMENT, msa_result_timings(res, NULL));
    t.struct_size = 12;
    EXPECT("msa_result_timings", "struct_size 12", MSA_ERR_INVALID_ARGUMENT, msa_result_timings(res, &t));
    t.struct_size = sizeof t;
    EXPECT("msa_result_timings", "valid", MSA_OK, msa_result_timings(res, &t));
  }
  msa_result_free(res);
  res = NULL;
  EXPECT("msa_route", "memory NULL", MSA_ERR_INVALID_ARGUMENT, msa_route(model, NULL, "q", &gp, &res));
  EXPECT("msa_route", "out_result NULL", MSA_ERR_INVALID_ARGUMENT, msa_route(model, mem, "q", &gp, NULL));
  EXPECT("msa_route", "model NULL", MSA_ERR_INVALID_ARGUMENT, msa_route(NULL, mem, "q", &gp, &res));
  EXPECT("msa_route", "prompt NULL", MSA_ERR_INVALID_ARGUMENT, msa_route(model, mem, NULL, &gp, &res));
  EXPECT("msa_route", "empty prompt", MSA_ERR_INVALID_ARGUMENT, msa_route(model, mem, "", &gp, &res));
  gp.top_k = -1;
  EXPECT("msa_route", "top_k -1", MSA_ERR_INVALID_ARGUMENT, msa_route(model, mem, "q", &gp, &res));
  gp.top_k = 2;
  EXPECT("msa_route", "a bank of another model", MSA_ERR_INVALID_ARGUMENT, msa_route(model, other_mem, "q", &gp, &res));
  EXPECT("msa_route", "prompt not UTF-8", MSA_ERR_INVALID_UTF8, msa_route(model, mem, "bad \xff", &gp, &res));
  gp.first_position = 2147483600;
  EXPECT("msa_route", "prompt past the positions", MSA_ERR_CONTEXT_OVERFLOW,
         msa_route(model, mem, "How tall is Everest?", &gp, &res));
  gp.first_position = -1;
  gp.struct_size = 6;
  EXPECT("msa_route", "params->struct_size 6", MSA_ERR_INVALID_ARGUMENT, msa_route(model, mem, "q", &gp, &res));
  gp.struct_size = sizeof gp;
  CHECK(res == NULL);

  /* ================================================================ the table */
  printf("%-32s %-58s %-26s %s\n", "function", "condition", "expected", "returned");
  for (i = 0; i < n_rows; ++i)
    printf("%-32s %-58s %-26s %s\n", table[i].function, table[i].condition, msa_status_string(table[i].expected),
           msa_status_string(table[i].got));

  msa_memory_free(other_mem);
  msa_memory_free(mem);
  msa_model_free(other_model);
  msa_model_free(small);
  msa_model_free(bare);
  msa_model_free(model);
  remove_tree(tmp);
  if (failures) {
    fprintf(stderr, "%d check(s) failed of %d rows\n", failures, n_rows);
    return 1;
  }
  printf("test_error_codes_c99: %d rows, all as documented\n", n_rows);
  return 0;
}
