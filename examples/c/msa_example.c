/* libmsa from plain C99: load a checkpoint, encode a few documents into a memory bank (with a progress
 * callback), generate greedily with token streaming, print the documents each router layer retrieved,
 * show that a callback cancels by returning non-zero, and free everything.
 * usage: msa_example <checkpoint dir>        (build: see README.md) */
#include <msa/msa.h>

#include <stdio.h>
#include <string.h>

static const char *const kDocs[4] = {"The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
                                     "Python was created by Guido van Rossum.", "Bananas are rich in potassium."};
static const char *const kPrompt = "How tall is Mount Everest?";

static int on_progress(int64_t done, int64_t total, int64_t tokens_done, int64_t tokens_total, void *user) {
  (void)done; (void)total; (void)tokens_done; (void)tokens_total;
  ++*(int *)user;
  return 0; /* non-zero would cancel */
}

static int on_piece(const char *piece, size_t len, void *user) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return 0;
}

static int cancel_after_first(const char *piece, size_t len, void *user) {
  (void)piece; (void)len;
  ++*(int *)user;
  return 1; /* stop generation now: msa_generate returns MSA_ERR_CANCELLED */
}

static int fail(const char *what, msa_status st) {
  fprintf(stderr, "%s: %s: %s\n", what, msa_status_string(st), msa_last_error());
  return 1;
}

int main(int argc, char **argv) {
  msa_model *model = NULL;
  msa_memory *mem = NULL;
  msa_result *res = NULL, *cancelled = NULL;
  msa_document docs[4];
  msa_generate_params gp;
  const int32_t *tokens = NULL;
  int64_t n_tokens, i, k;
  int32_t slot;
  int progress_calls = 0, pieces = 0, rc = 1;
  msa_status st;

  if (argc != 2) {
    fprintf(stderr, "usage: %s <checkpoint dir>\n", argv[0]);
    return 2;
  }
  if (!MSA_CHECK_VERSION()) {
    fprintf(stderr, "libmsa %s cannot serve this program (built for %d.%d)\n", msa_version(), MSA_VERSION_MAJOR,
            MSA_VERSION_MINOR);
    return 1;
  }
  printf("libmsa %s\n", msa_version());

  if ((st = msa_model_load(argv[1], NULL, &model)) != MSA_OK) return fail("msa_model_load", st);
  if ((st = msa_memory_create(model, NULL, &mem)) != MSA_OK) {
    fail("msa_memory_create", st);
    goto done;
  }
  memset(docs, 0, sizeof docs);
  for (i = 0; i < 4; ++i) {
    docs[i].text = kDocs[i];
    docs[i].text_len = strlen(kDocs[i]);
  }
  if ((st = msa_memory_add_documents(mem, docs, 4, on_progress, &progress_calls, NULL)) != MSA_OK) {
    fail("msa_memory_add_documents", st);
    goto done;
  }
  printf("documents: 4 added, progress calls: %d\n", progress_calls);

  /* size-safe defaults: writes sizeof gp bytes, also when the installed library is newer than msa.h */
  if ((st = msa_params_init(MSA_PARAMS_GENERATE, &gp, sizeof gp)) != MSA_OK) {
    fail("msa_params_init", st);
    goto done;
  }
  gp.top_k = 2;
  gp.max_new_tokens = 16;
  gp.temperature = 0.0f; /* greedy: the same tokens in every language */
  gp.seed = 7;
  gp.interleave = 0;
  printf("stream: ");
  if ((st = msa_generate(model, mem, kPrompt, &gp, on_piece, NULL, &res)) != MSA_OK) {
    fail("msa_generate", st);
    goto done;
  }
  printf("\n");
  n_tokens = msa_result_tokens(res, &tokens);
  printf("tokens:");
  for (i = 0; i < n_tokens; ++i) printf(" %d", (int)tokens[i]);
  printf("\nstop: %s\n", msa_result_stop_reason(res));
  for (slot = 0; slot < msa_result_n_router_layers(res); ++slot) {
    const uint64_t *ids = NULL;
    int64_t n = msa_result_layer_topk(res, slot, &ids, NULL);
    for (k = 0; k < n; ++k)
      printf("retrieved: layer %d [%llu] %s\n", (int)msa_result_router_layer(res, slot), (unsigned long long)ids[k],
             kDocs[ids[k]]);
  }

  st = msa_generate(model, mem, kPrompt, &gp, cancel_after_first, &pieces, &cancelled);
  printf("cancelled: %s after %d piece(s), %lld token(s)\n", msa_status_string(st), pieces,
         (long long)msa_result_tokens(cancelled, NULL));
  rc = st == MSA_ERR_CANCELLED ? 0 : 1;

done:
  msa_result_free(cancelled);
  msa_result_free(res);
  msa_memory_free(mem);
  msa_model_free(model);
  return rc;
}
