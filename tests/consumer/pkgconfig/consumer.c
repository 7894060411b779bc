/* pkg-config consumer, C99: cc consumer.c $(pkg-config --cflags --libs msa). Loads a checkpoint, reads
 * its description and tokenizes a string. */
#include <msa/msa.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  msa_model *model = NULL;
  msa_model_desc desc;
  int32_t ids[64];
  size_t n = 0;
  const char *text = "Hello from pkg-config";
  if (argc != 2 || !MSA_CHECK_VERSION()) return 2;
  if (msa_model_load(argv[1], NULL, &model) != MSA_OK) {
    fprintf(stderr, "load: %s\n", msa_last_error());
    return 1;
  }
  desc.struct_size = sizeof desc;
  if (msa_model_info(model, &desc) != MSA_OK ||
      msa_tokenize(model, text, strlen(text), 0, ids, 64, &n) != MSA_OK) {
    fprintf(stderr, "error: %s\n", msa_last_error());
    msa_model_free(model);
    return 1;
  }
  printf("pkg-config consumer (C): libmsa %s, %d layers, %zu tokens\n", msa_version(), (int)desc.n_layers, n);
  msa_model_free(model);
  return n ? 0 : 1;
}
