/* End-to-end through the C API from a C99 program: write a random checkpoint, load it, read its info,
 * compute logits, and check the error paths (NULL arguments, a missing directory, a small buffer).
 * usage: test_model_c99 <tests/data dir> */
#include <msa/msa.h>

#include "e2e_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  char dir[4096];
  msa_checkpoint_params cp;
  msa_model_params mp;
  msa_model *model = NULL;
  msa_model_desc desc;
  float *logits;
  int32_t tokens[4] = {151644, 872, 198, 9707};
  (void)argc;
  (void)argv;

  CHECK(strlen(msa_version()) >= 5);
  CHECK(msa_version_number() == MSA_VERSION_MAJOR * 10000u + MSA_VERSION_MINOR * 100u + MSA_VERSION_PATCH);
  CHECK(strcmp(msa_status_string(MSA_ERR_TRUNCATED), "MSA_ERR_TRUNCATED") == 0);

  snprintf(dir, sizeof dir, "c99_micro_model");
  msa_checkpoint_params_init(&cp);
  cp.preset = "micro";
  cp.seed = 3;
  CHECK(msa_checkpoint_init(&cp, dir) == MSA_OK);
  cp.preset = "no-such-preset";
  CHECK(msa_checkpoint_init(&cp, dir) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(strstr(msa_last_error(), "no-such-preset") != NULL);
  {
    /* Overrides the loader would refuse are refused here, naming the key, and nothing is written (before:
     * these wrote a checkpoint that msa_model_load could not load). */
    static const char *const bad[] = {"{\"pooling_kernel_size\": \"x\"}", "{\"pooling_kernel_size\": -4}",
                                      "{\"pooling_kernel_size\": 0}"};
    size_t i;
    FILE *f;
    cp.preset = "micro";
    for (i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
      cp.msa_config_json = bad[i];
      CHECK(msa_checkpoint_init(&cp, "c99_bad_override") == MSA_ERR_INVALID_ARGUMENT);
      CHECK(strstr(msa_last_error(), "pooling_kernel_size") != NULL);
    }
    f = fopen("c99_bad_override/config.json", "r");
    CHECK(f == NULL);
    if (f) fclose(f);
    cp.msa_config_json = NULL;
  }

  msa_model_params_init(&mp);
  mp.load_tokenizer = 0;
  CHECK(msa_model_load(NULL, &mp, &model) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(model == NULL);
  CHECK(msa_model_load("does-not-exist", &mp, &model) == MSA_ERR_IO);
  CHECK(strstr(msa_last_error(), "does-not-exist") != NULL);
  CHECK(msa_model_load(dir, &mp, &model) == MSA_OK);
  if (!model) return 1;

  memset(&desc, 0, sizeof desc);
  desc.struct_size = sizeof desc;
  CHECK(msa_model_info(model, &desc) == MSA_OK);
  CHECK(desc.vocab_size == 151936);
  CHECK(desc.n_layers == 2);
  CHECK(desc.n_router_layers == 1);
  CHECK(strcmp(desc.weight_dtype, "BF16") == 0);
  CHECK(desc.n_parameters > 0);

  logits = (float *)malloc(sizeof(float) * (size_t)desc.vocab_size);
  CHECK(logits != NULL);
  CHECK(msa_model_logits(model, tokens, 4, logits, desc.vocab_size) == MSA_OK);
  {
    /* A model handle with its own pool of 1 and of 3 threads: the same logits, bit for bit. */
    msa_model *m1 = NULL, *m3 = NULL;
    float *l1 = (float *)malloc(sizeof(float) * (size_t)desc.vocab_size);
    float *l3 = (float *)malloc(sizeof(float) * (size_t)desc.vocab_size);
    mp.n_threads = -1;
    CHECK(msa_model_load(dir, &mp, &m1) == MSA_ERR_INVALID_ARGUMENT && m1 == NULL);
    /* Before: INT32_MAX started threads until the system refused one and then never returned. */
    mp.n_threads = INT32_MAX;
    CHECK(msa_model_load(dir, &mp, &m1) == MSA_ERR_INVALID_ARGUMENT && m1 == NULL);
    CHECK(strstr(msa_last_error(), "MSA_MAX_THREADS") != NULL);
    mp.n_threads = MSA_MAX_THREADS + 1;
    CHECK(msa_model_load(dir, &mp, &m1) == MSA_ERR_INVALID_ARGUMENT && m1 == NULL);
    mp.n_threads = 1;
    CHECK(msa_model_load(dir, &mp, &m1) == MSA_OK);
    mp.n_threads = 3;
    CHECK(msa_model_load(dir, &mp, &m3) == MSA_OK);
    mp.n_threads = 0;
    CHECK(l1 != NULL && l3 != NULL);
    if (m1 && m3 && l1 && l3) {
      CHECK(msa_model_logits(m1, tokens, 4, l1, desc.vocab_size) == MSA_OK);
      CHECK(msa_model_logits(m3, tokens, 4, l3, desc.vocab_size) == MSA_OK);
      CHECK(memcmp(l1, l3, sizeof(float) * (size_t)desc.vocab_size) == 0);
      CHECK(memcmp(l1, logits, sizeof(float) * (size_t)desc.vocab_size) == 0);
    }
    free(l1);
    free(l3);
    msa_model_free(m1);
    msa_model_free(m3);
  }
  CHECK(msa_model_logits(model, tokens, 4, logits, 10) == MSA_ERR_BUFFER_TOO_SMALL);
  CHECK(msa_model_logits(model, tokens, 0, logits, desc.vocab_size) == MSA_ERR_INVALID_ARGUMENT);
  tokens[0] = -1;
  CHECK(msa_model_logits(model, tokens, 4, logits, desc.vocab_size) == MSA_ERR_INVALID_ARGUMENT);
  free(logits);
  msa_model_free(model);
  msa_model_free(NULL);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("test_model_c99: all checks passed\n");
  return 0;
}
