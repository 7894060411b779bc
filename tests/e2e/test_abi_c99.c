/* ABI rules of msa.h checked through the shared library from a C99 program: the version check, params
 * structs of an older released layout get defaults for the missing tail, a size that is no layout (half a
 * field, between two layouts) is refused, a newer (larger) one is accepted only with a zero tail, and
 * output structs are filled up to the caller's struct_size (a released layout, or larger).
 * usage: test_abi_c99 <tests/data dir> */
#define _GNU_SOURCE /* dlvsym: the versioned msa_model_params_init of the 0.1 ABI */
#include <msa/msa.h>

#include "e2e_util.h"

#include <dlfcn.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A struct from a future header: the current one plus fields this library does not know. */
typedef struct {
  msa_model_params p;
  uint64_t future_field;
} model_params_next;
typedef struct {
  msa_memory_params p;
  int32_t future_field;
} memory_params_next;
typedef struct {
  msa_generate_params p;
  uint64_t future_field;
} generate_params_next;
typedef struct {
  msa_checkpoint_params p;
  const char *future_field;
} checkpoint_params_next;
typedef struct {
  msa_model_desc d;
  unsigned char future[24];
} model_desc_next;
typedef struct {
  msa_timings t;
  unsigned char future[24];
} timings_next;

/* A logits callback that forbids every token. */
static int forbid_all(int32_t round, int64_t round_step, int64_t step, float *logits, int64_t n_vocab, void *user) {
  int64_t i;
  (void)round; (void)round_step; (void)step; (void)user;
  for (i = 0; i < n_vocab; ++i) logits[i] = -INFINITY;
  return 0;
}

static int all_zero(const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (p[i]) return 0;
  return 1;
}

int main(int argc, char **argv) {
  char tokdir[4096], version[64];
  const char *dir = "abi_c99_model";
  const char *text = "Mount Everest is 8849 metres tall.";
  msa_checkpoint_params cp;
  checkpoint_params_next cpn;
  msa_model_params mp;
  model_params_next mpn;
  msa_memory_params memp;
  memory_params_next mempn;
  msa_generate_params gp;
  generate_params_next gpn;
  msa_model_desc desc;
  model_desc_next descn;
  msa_timings tm;
  timings_next tmn;
  msa_document doc;
  msa_model *model = NULL, *m2 = NULL;
  msa_memory *mem = NULL, *mem2 = NULL;
  msa_result *res = NULL;

  if (argc < 2) return 2;

  /* versions: header and library agree; another major or a newer header are refused */
  snprintf(version, sizeof version, "%d.%d.%d", MSA_VERSION_MAJOR, MSA_VERSION_MINOR, MSA_VERSION_PATCH);
  CHECK(strcmp(msa_version(), version) == 0);
  CHECK(msa_version_number() == (uint32_t)MSA_VERSION_NUMBER);
  CHECK(MSA_CHECK_VERSION());
  CHECK(msa_version_compatible((uint32_t)MSA_VERSION_MAJOR * 10000u));
  CHECK(msa_version_compatible((uint32_t)MSA_VERSION_NUMBER + 1u)); /* a newer patch: same API */
  CHECK(!msa_version_compatible((uint32_t)MSA_VERSION_NUMBER + 100u));
  CHECK(!msa_version_compatible((uint32_t)MSA_VERSION_NUMBER + 10000u));

  snprintf(tokdir, sizeof tokdir, "%s/../../../shared/data/qwen3-tokenizer", argv[1]);

  /* checkpoint params: a newer struct with a non-zero unknown field is refused before anything is written */
  memset(&cpn, 0, sizeof cpn);
  msa_checkpoint_params_init(&cpn.p);
  cpn.p.struct_size = sizeof cpn;
  cpn.p.preset = "micro";
  cpn.p.tokenizer_dir = tokdir;
  cpn.future_field = "set";
  CHECK(msa_checkpoint_init(&cpn.p, dir) == MSA_ERR_INVALID_ARGUMENT);
  msa_checkpoint_params_init(&cp);
  cp.preset = "micro";
  cp.seed = 5;
  cp.tokenizer_dir = tokdir;
  CHECK(msa_checkpoint_init(&cp, dir) == MSA_OK);

  /* model params: the current size honours load_tokenizer = 0 ... */
  msa_model_params_init(&mp);
  mp.load_tokenizer = 0;
  CHECK(msa_model_load(dir, &mp, &model) == MSA_OK);
  CHECK(model != NULL && msa_model_tokenizer(model) == NULL);
  msa_model_free(model);
  model = NULL;
  /* the 0.1 layout (16 bytes, no device) is a released one: accepted, device defaults to 0 */
  msa_model_params_init(&mp);
  mp.struct_size = (uint32_t)offsetof(msa_model_params, device);
  mp.device = 7; /* past the caller's struct: never read */
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_OK && m2 != NULL);
  msa_model_free(m2);
  m2 = NULL;
  /* device must be 0 with the CPU backend; an unknown backend value is refused */
  msa_model_params_init(&mp);
  mp.device = 1;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  mp.device = -1;
  mp.backend = MSA_BACKEND_CUDA;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  mp.device = 0;
  mp.backend = 7;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  /* a CUDA stream for the CPU backend is refused */
  msa_model_params_init(&mp);
  mp.cuda_stream = &mp;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  CHECK(strstr(msa_last_error(), "cuda_stream") != NULL);
  /* 24 bytes: device, but cuda_stream cut off: no layout */
  msa_model_params_init(&mp);
  mp.struct_size = 24;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  /* a program built against the 0.1 header binds msa_model_params_init@MSA_0, which writes exactly its 16
   * bytes; the default version (@@MSA_0.2) writes the current size */
  {
    unsigned char buf[sizeof(msa_model_params) + 8];
    void *sym = dlvsym(RTLD_DEFAULT, "msa_model_params_init", "MSA_0");
    void (*init_v0)(msa_model_params *) = NULL;
    CHECK(sym != NULL);
    if (sym) {
      memcpy(&init_v0, &sym, sizeof sym);
      memset(buf, 0xAB, sizeof buf);
      init_v0((msa_model_params *)(void *)buf);
      CHECK(((msa_model_params *)(void *)buf)->struct_size == offsetof(msa_model_params, device));
      CHECK(buf[offsetof(msa_model_params, device)] == 0xAB && buf[sizeof buf - 1] == 0xAB);
      CHECK(((msa_model_params *)(void *)buf)->load_tokenizer == 1);
    }
    sym = dlvsym(RTLD_DEFAULT, "msa_model_params_init", "MSA_0.2");
    CHECK(sym != NULL);
    memset(buf, 0xAB, sizeof buf);
    msa_model_params_init((msa_model_params *)(void *)buf);
    CHECK(((msa_model_params *)(void *)buf)->struct_size == sizeof(msa_model_params));
    CHECK(((msa_model_params *)(void *)buf)->device == 0 && buf[sizeof buf - 1] == 0xAB);
  }
  /* ... a size that is no layout of the struct (16 and 32 bytes are; 20 ends inside the padding before
   * cuda_stream and 24 cuts it off) is refused: 12 ends
   * before load_tokenizer, 6 is half of n_threads, 0 is not a struct */
  mp.struct_size = (uint32_t)offsetof(msa_model_params, load_tokenizer);
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  CHECK(strstr(msa_last_error(), "struct_size 12") != NULL);
  mp.struct_size = 6;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  mp.struct_size = 0;
  CHECK(msa_model_load(dir, &mp, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  msa_model_params_init(&mp);
  CHECK(msa_model_load(dir, &mp, &model) == MSA_OK);
  CHECK(model != NULL && msa_model_tokenizer(model) != NULL);
  /* a newer struct: refused with a non-zero unknown tail, accepted with a zero one */
  memset(&mpn, 0, sizeof mpn);
  msa_model_params_init(&mpn.p);
  mpn.p.struct_size = sizeof mpn;
  mpn.future_field = 1;
  CHECK(msa_model_load(dir, &mpn.p, &m2) == MSA_ERR_INVALID_ARGUMENT && m2 == NULL);
  CHECK(strstr(msa_last_error(), "newer") != NULL);
  mpn.future_field = 0;
  CHECK(msa_model_load(dir, &mpn.p, &m2) == MSA_OK && m2 != NULL);
  msa_model_free(m2);
  if (!model) return 1;

  /* memory params: page_dtype = 9 is refused at the current size, ignored (default) in the first release's
   * layout (8 bytes: batch_tokens only); a size below it or between layouts is refused */
  msa_memory_params_init(&memp);
  memp.page_dtype = 9;
  CHECK(msa_memory_create(model, &memp, &mem) == MSA_ERR_INVALID_ARGUMENT && mem == NULL);
  memp.struct_size = (uint32_t)offsetof(msa_memory_params, batch_tokens);
  CHECK(msa_memory_create(model, &memp, &mem) == MSA_ERR_INVALID_ARGUMENT && mem == NULL);
  memp.struct_size = (uint32_t)offsetof(msa_memory_params, verify_on_open);
  CHECK(msa_memory_create(model, &memp, &mem) == MSA_ERR_INVALID_ARGUMENT && mem == NULL);
  memp.struct_size = (uint32_t)offsetof(msa_memory_params, page_dtype);
  CHECK(msa_memory_create(model, &memp, &mem) == MSA_OK && mem != NULL);
  memset(&mempn, 0, sizeof mempn);
  msa_memory_params_init(&mempn.p);
  mempn.p.struct_size = sizeof mempn;
  mempn.future_field = -3;
  CHECK(msa_memory_create(model, &mempn.p, &mem2) == MSA_ERR_INVALID_ARGUMENT && mem2 == NULL);
  if (!mem) return 1;
  memset(&doc, 0, sizeof doc);
  doc.text = text;
  doc.text_len = strlen(text);
  CHECK(msa_memory_add_documents(mem, &doc, 1, NULL, NULL, NULL) == MSA_OK);

  /* generate params: a logits callback that allows nothing is refused at the current size, ignored (no
   * callback) in the first release's layout (48 bytes, up to first_position); 36 (before max_rounds) and 6
   * (half of top_k) are no layout */
  msa_generate_params_init(&gp);
  gp.top_k = 1;
  gp.max_new_tokens = 3;
  gp.temperature = 0.0f;
  gp.interleave = 0;
  gp.logits_callback = forbid_all;
  CHECK(msa_generate(model, mem, "How tall?", &gp, NULL, NULL, &res) == MSA_ERR_INVALID_ARGUMENT && res == NULL);
  gp.struct_size = (uint32_t)offsetof(msa_generate_params, max_rounds);
  CHECK(msa_generate(model, mem, "How tall?", &gp, NULL, NULL, &res) == MSA_ERR_INVALID_ARGUMENT && res == NULL);
  gp.struct_size = 6;
  CHECK(msa_generate(model, mem, "How tall?", &gp, NULL, NULL, &res) == MSA_ERR_INVALID_ARGUMENT && res == NULL);
  gp.struct_size = (uint32_t)offsetof(msa_generate_params, logits_callback);
  CHECK(msa_generate(model, mem, "How tall?", &gp, NULL, NULL, &res) == MSA_OK && res != NULL);
  gp.logits_callback = NULL;
  gp.max_rounds = 4;
  CHECK(msa_result_tokens(res, NULL) >= 1 && msa_result_tokens(res, NULL) <= 3);
  memset(&gpn, 0, sizeof gpn);
  gpn.p = gp;
  gpn.p.struct_size = sizeof gpn;
  gpn.p.max_rounds = 4;
  gpn.future_field = 42;
  {
    msa_result *r2 = NULL;
    CHECK(msa_generate(model, mem, "How tall?", &gpn.p, NULL, NULL, &r2) == MSA_ERR_INVALID_ARGUMENT && r2 == NULL);
    CHECK(msa_route(model, mem, "How tall?", &gpn.p, &r2) == MSA_ERR_INVALID_ARGUMENT && r2 == NULL);
    gpn.future_field = 0;
    CHECK(msa_route(model, mem, "How tall?", &gpn.p, &r2) == MSA_OK && r2 != NULL);
    msa_result_free(r2);
  }

  /* msa_params_init: never writes past the caller's size; zeroes what the library does not know */
  {
    unsigned char buf[sizeof(msa_generate_params) + 16];
    const size_t older = offsetof(msa_generate_params, logits_callback); /* the first release's layout */
    msa_generate_params *g = (msa_generate_params *)(void *)buf;
    size_t b;
    int guard_ok = 1;
    memset(buf, 0xEE, sizeof buf);
    CHECK(msa_params_init(MSA_PARAMS_GENERATE, buf, older) == MSA_OK);
    CHECK(g->struct_size == older && g->top_k == 16 && g->max_new_tokens == 256 && g->interleave == 1);
    for (b = older; b < sizeof buf; ++b) guard_ok &= buf[b] == 0xEE;
    CHECK(guard_ok);
    memset(&gpn, 0xEE, sizeof gpn);
    CHECK(msa_params_init(MSA_PARAMS_GENERATE, &gpn, sizeof gpn) == MSA_OK);
    CHECK(gpn.p.struct_size == sizeof gpn && gpn.p.first_position == -1 && gpn.future_field == 0);
    gpn.p.top_k = 1;
    gpn.p.max_new_tokens = 2;
    gpn.p.interleave = 0;
    {
      msa_result *r3 = NULL;
      CHECK(msa_generate(model, mem, "How tall?", &gpn.p, NULL, NULL, &r3) == MSA_OK && r3 != NULL);
      msa_result_free(r3);
    }
    memset(&mpn, 0xEE, sizeof mpn);
    CHECK(msa_params_init(MSA_PARAMS_MODEL, &mpn, sizeof mpn) == MSA_OK);
    CHECK(mpn.p.load_tokenizer == 1 && mpn.p.n_threads == 0 && mpn.future_field == 0);
    memset(&memp, 0, sizeof memp);
    CHECK(msa_params_init(MSA_PARAMS_MEMORY, &memp, sizeof memp) == MSA_OK && memp.batch_tokens == 4096);
    memset(&cp, 0, sizeof cp);
    CHECK(msa_params_init(MSA_PARAMS_CHECKPOINT, &cp, sizeof cp) == MSA_OK && strcmp(cp.preset, "tiny") == 0);
    CHECK(msa_params_init((msa_params_kind)99, buf, sizeof buf) == MSA_ERR_INVALID_ARGUMENT);
    CHECK(msa_params_init(MSA_PARAMS_GENERATE, buf, 2) == MSA_ERR_INVALID_ARGUMENT);
    CHECK(msa_params_init(MSA_PARAMS_GENERATE, buf, 36) == MSA_ERR_INVALID_ARGUMENT); /* between two layouts */
    CHECK(msa_params_init(MSA_PARAMS_MODEL, buf, 6) == MSA_ERR_INVALID_ARGUMENT);     /* half a field */
    CHECK(msa_params_init(MSA_PARAMS_GENERATE, NULL, sizeof buf) == MSA_ERR_INVALID_ARGUMENT);
  }

  /* output structs: too small for any release is refused; a newer, larger one is filled with what this
   * library knows, the rest zeroed, and struct_size reports the bytes filled */
  memset(&desc, 0, sizeof desc);
  desc.struct_size = (uint32_t)offsetof(msa_model_desc, aux_loss_method);
  CHECK(msa_model_info(model, &desc) == MSA_ERR_INVALID_ARGUMENT);
  memset(&descn, 0xAB, sizeof descn);
  descn.d.struct_size = sizeof descn;
  CHECK(msa_model_info(model, &descn.d) == MSA_OK);
  CHECK(descn.d.struct_size == sizeof(msa_model_desc));
  CHECK(descn.d.n_layers == 2 && descn.d.vocab_size == 151936);
  CHECK(all_zero(descn.future, sizeof descn.future));
  desc.struct_size = sizeof desc;
  CHECK(msa_model_info(model, &desc) == MSA_OK && desc.struct_size == sizeof desc && desc.n_layers == 2);
  desc.struct_size = sizeof desc - 4; /* not a field boundary of any layout */
  CHECK(msa_model_info(model, &desc) == MSA_ERR_INVALID_ARGUMENT);

  memset(&tm, 0, sizeof tm);
  tm.struct_size = (uint32_t)(sizeof(uint32_t) + sizeof(double));
  CHECK(msa_result_timings(res, &tm) == MSA_ERR_INVALID_ARGUMENT);
  memset(&tmn, 0xCD, sizeof tmn);
  tmn.t.struct_size = sizeof tmn;
  CHECK(msa_result_timings(res, &tmn.t) == MSA_OK);
  CHECK(tmn.t.struct_size == sizeof(msa_timings) && tmn.t.prompt_tokens > 0);
  CHECK(all_zero(tmn.future, sizeof tmn.future));

  {
    msa_tokenizer_desc td;
    memset(&td, 0, sizeof td);
    td.struct_size = 8;
    CHECK(msa_tokenizer_info(msa_model_tokenizer(model), &td) == MSA_ERR_INVALID_ARGUMENT);
    td.struct_size = sizeof td;
    CHECK(msa_tokenizer_info(msa_model_tokenizer(model), &td) == MSA_OK && td.eos_id == 151645);
  }
  {
    msa_memory_usage u;
    memset(&u, 0, sizeof u);
    u.struct_size = 8;
    CHECK(msa_memory_stats(mem, &u) == MSA_ERR_INVALID_ARGUMENT);
    u.struct_size = sizeof u;
    CHECK(msa_memory_stats(mem, &u) == MSA_OK && u.n_documents == 1);
    /* the first release's layout (56 bytes) is filled up to text_bytes; 60 is between two layouts */
    memset(&u, 0xEE, sizeof u);
    u.struct_size = 56;
    CHECK(msa_memory_stats(mem, &u) == MSA_OK && u.struct_size == 56 && u.n_documents == 1);
    CHECK(((const unsigned char *)&u)[56] == 0xEE); /* nothing written past the caller's 56 bytes */
    u.struct_size = 60;
    CHECK(msa_memory_stats(mem, &u) == MSA_ERR_INVALID_ARGUMENT);
  }

  msa_result_free(res);
  msa_memory_free(mem);
  msa_model_free(model);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("test_abi_c99: all checks passed\n");
  return 0;
}
