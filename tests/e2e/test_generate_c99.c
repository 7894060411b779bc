/* End-to-end MSA through the C API from a C99 program: write a random micro checkpoint with the Qwen3
 * tokenizer, create a memory bank, add documents (with progress), generate with streaming, read the result
 * (text, rounds, per-layer top-k, timings), route, check the bad-input codes, and free everything (run
 * under ASan in CI: no leak). usage: test_generate_c99 <tests/data dir> */
#include <msa/msa.h>

#include "e2e_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char text[8192];
  size_t len;
  int calls;
} stream_state;

static int on_piece(const char *piece, size_t len, void *user) {
  stream_state *s = (stream_state *)user;
  if (s->len + len < sizeof s->text) {
    memcpy(s->text + s->len, piece, len);
    s->len += len;
    s->text[s->len] = '\0';
  }
  s->calls++;
  return 0;
}

/* Constrained decoding: forces the token ids of `forced` one by one; after them, forbids nothing. */
typedef struct {
  const int32_t *forced;
  int64_t n_forced;
  int64_t calls;
  int bad_step;
} force_state;

static int force_logits(int32_t round, int64_t round_step, int64_t step, float *logits, int64_t n_vocab,
                        void *user) {
  force_state *f = (force_state *)user;
  int64_t i;
  if (round != 1 || round_step != step || step != f->calls) f->bad_step = 1;
  if (step < f->n_forced) {
    for (i = 0; i < n_vocab; ++i) {
      if (i != f->forced[step]) logits[i] = -INFINITY;
    }
  }
  f->calls++;
  return 0;
}
static int cancel_logits(int32_t round, int64_t round_step, int64_t step, float *logits, int64_t n_vocab,
                         void *user) {
  (void)round; (void)round_step; (void)logits; (void)n_vocab; (void)user;
  return step == 2;
}

static int progress_calls = 0;
static int on_progress(int64_t done, int64_t total, int64_t tok_done, int64_t tok_total, void *user) {
  (void)user;
  (void)tok_done;
  (void)tok_total;
  if (done > total) failures++;
  progress_calls++;
  return 0;
}
static int cancel_progress(int64_t done, int64_t total, int64_t tok_done, int64_t tok_total, void *user) {
  (void)done; (void)total; (void)tok_done; (void)tok_total; (void)user;
  return 1;
}

int main(int argc, char **argv) {
  char tokdir[4096];
  const char *dir = "c99_generate_model";
  const char *texts[4] = {"The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
                          "Python was created by Guido van Rossum.", "Bananas are rich in potassium."};
  msa_checkpoint_params cp;
  msa_model *model = NULL;
  msa_memory *mem = NULL;
  msa_result *res = NULL;
  msa_document docs[4];
  msa_document bad;
  msa_generate_params gp;
  msa_memory_usage usage;
  msa_timings timings;
  stream_state stream;
  uint64_t ids[4];
  const uint64_t *top = NULL;
  const float *scores = NULL;
  int64_t n;
  int i;

  if (argc < 2) return 2;
  snprintf(tokdir, sizeof tokdir, "%s/../../../shared/data/qwen3-tokenizer", argv[1]);
  msa_checkpoint_params_init(&cp);
  cp.preset = "micro";
  cp.seed = 11;
  cp.tokenizer_dir = tokdir;
  CHECK(msa_checkpoint_init(&cp, dir) == MSA_OK);
  CHECK(msa_model_load(dir, NULL, &model) == MSA_OK);
  if (!model) return 1;

  CHECK(msa_memory_create(model, NULL, &mem) == MSA_OK);
  if (!mem) return 1;
  memset(docs, 0, sizeof docs);
  for (i = 0; i < 4; ++i) {
    docs[i].text = texts[i];
    docs[i].text_len = strlen(texts[i]);
  }
  /* bad input: each a distinct code, the bank unchanged */
  CHECK(msa_memory_add_documents(mem, docs, 0, NULL, NULL, NULL) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(msa_memory_add_documents(NULL, docs, 4, NULL, NULL, NULL) == MSA_ERR_INVALID_ARGUMENT);
  memset(&bad, 0, sizeof bad);
  bad.text = "";
  CHECK(msa_memory_add_documents(mem, &bad, 1, NULL, NULL, NULL) == MSA_ERR_INVALID_ARGUMENT);
  bad.text = "abc\xff\xfe";
  bad.text_len = 5;
  CHECK(msa_memory_add_documents(mem, &bad, 1, NULL, NULL, NULL) == MSA_ERR_INVALID_UTF8);
  CHECK(msa_memory_add_documents(mem, docs, 4, cancel_progress, NULL, NULL) == MSA_ERR_CANCELLED);
  usage.struct_size = sizeof usage;
  CHECK(msa_memory_stats(mem, &usage) == MSA_OK);
  CHECK(usage.n_documents == 0);

  CHECK(msa_memory_add_documents(mem, docs, 4, on_progress, NULL, ids) == MSA_OK);
  CHECK(progress_calls > 0);
  CHECK(ids[0] == 0 && ids[3] == 3);
  CHECK(msa_memory_stats(mem, &usage) == MSA_OK);
  CHECK(usage.n_documents == 4);
  CHECK(usage.n_chunks > 4);
  CHECK(usage.routing_bytes > 0 && usage.content_bytes > usage.routing_bytes);

  msa_generate_params_init(&gp);
  gp.top_k = 2;
  gp.max_new_tokens = 12;
  gp.temperature = 0.0f;
  gp.interleave = 0;
  memset(&stream, 0, sizeof stream);
  CHECK(msa_generate(model, mem, "How tall is Mount Everest?", &gp, on_piece, &stream, &res) == MSA_OK);
  CHECK(res != NULL);
  CHECK(stream.calls > 0);
  CHECK(strcmp(stream.text, msa_result_generated_text(res)) == 0);
  CHECK(msa_result_tokens(res, NULL) > 0 && msa_result_tokens(res, NULL) <= 12);
  CHECK(msa_result_n_router_layers(res) == 1);
  CHECK(msa_result_router_layer(res, 0) == 1);
  n = msa_result_layer_topk(res, 0, &top, &scores);
  CHECK(n == 2);
  if (n == 2) CHECK(scores[0] >= scores[1] && top[0] < 4 && top[1] < 4 && top[0] != top[1]);
  CHECK(msa_result_n_rounds(res) == 1);
  timings.struct_size = sizeof timings;
  CHECK(msa_result_timings(res, &timings) == MSA_OK);
  CHECK(timings.prompt_tokens > 0 && timings.ttft_ms > 0);
  msa_result_free(res);
  res = NULL;

  /* constrained decoding forces the sampled tokens, also under temperature sampling; non-zero cancels */
  {
    const int32_t forced[5] = {785, 6722, 315, 9625, 374};
    force_state fs;
    const int32_t *got = NULL;
    memset(&fs, 0, sizeof fs);
    fs.forced = forced;
    fs.n_forced = 5;
    gp.max_new_tokens = 5;
    gp.temperature = 0.8f;
    gp.seed = 7;
    gp.logits_callback = force_logits;
    gp.logits_user_data = &fs;
    CHECK(msa_generate(model, mem, "How tall is Mount Everest?", &gp, NULL, NULL, &res) == MSA_OK);
    CHECK(fs.calls == 5 && !fs.bad_step);
    CHECK(msa_result_tokens(res, &got) == 5);
    for (i = 0; i < 5 && got; ++i) CHECK(got[i] == forced[i]);
    msa_result_free(res);
    res = NULL;
    gp.logits_callback = cancel_logits;
    CHECK(msa_generate(model, mem, "How tall is Mount Everest?", &gp, NULL, NULL, &res) == MSA_ERR_CANCELLED);
    CHECK(msa_result_tokens(res, NULL) == 2);
    CHECK(strcmp(msa_result_stop_reason(res), "cancelled") == 0);
    msa_result_free(res);
    res = NULL;
    gp.logits_callback = NULL;
    gp.logits_user_data = NULL;
    gp.temperature = 0.0f;
    gp.max_new_tokens = 12;
  }

  /* interleave mode runs to a bound and reports its rounds */
  gp.interleave = 1;
  gp.max_rounds = 2;
  CHECK(msa_generate(model, mem, "How tall is Mount Everest?", &gp, NULL, NULL, &res) == MSA_OK);
  CHECK(msa_result_n_rounds(res) >= 1 && msa_result_n_rounds(res) <= 2);
  msa_result_free(res);
  res = NULL;

  /* bad generation parameters */
  gp.top_k = 0;
  CHECK(msa_generate(model, mem, "q", &gp, NULL, NULL, &res) == MSA_ERR_INVALID_ARGUMENT && res == NULL);
  gp.top_k = 2;
  gp.max_new_tokens = 0;
  CHECK(msa_generate(model, mem, "q", &gp, NULL, NULL, &res) == MSA_ERR_INVALID_ARGUMENT && res == NULL);
  gp.max_new_tokens = 4;
  CHECK(msa_generate(model, mem, NULL, &gp, NULL, NULL, &res) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(msa_generate(model, mem, "bad \xc3\x28 utf8", &gp, NULL, NULL, &res) == MSA_ERR_INVALID_UTF8);

  /* retrieval only */
  CHECK(msa_route(model, mem, "Who created Python?", &gp, &res) == MSA_OK);
  CHECK(msa_result_layer_topk(res, 0, &top, &scores) == 2);
  msa_result_free(res);
  res = NULL;
  CHECK(msa_route(model, NULL, "Who created Python?", &gp, &res) == MSA_ERR_INVALID_ARGUMENT);

  /* plain generation without memory */
  CHECK(msa_generate(model, NULL, "Hello", &gp, NULL, NULL, &res) == MSA_OK);
  for (i = 0; i < msa_result_n_router_layers(res); ++i) CHECK(msa_result_layer_topk(res, i, NULL, NULL) == 0);
  CHECK(msa_result_tokens(res, NULL) > 0);
  msa_result_free(res);

  msa_memory_free(mem);
  msa_model_free(model);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("test_generate_c99: all checks passed\n");
  return 0;
}
