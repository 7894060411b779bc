/* find_package(msa) consumer, C99, static library: loads a checkpoint and reads its description. */
#include <msa/msa.h>

#include <stdio.h>

int main(int argc, char **argv) {
  msa_model *model = NULL;
  msa_model_desc desc;
  if (argc != 2 || !MSA_CHECK_VERSION()) return 2;
  if (msa_model_load(argv[1], NULL, &model) != MSA_OK) {
    fprintf(stderr, "load: %s\n", msa_last_error());
    return 1;
  }
  desc.struct_size = sizeof desc;
  if (msa_model_info(model, &desc) != MSA_OK) return 1;
  printf("cmake consumer (static, C): libmsa %s, %d layers\n", msa_version(), (int)desc.n_layers);
  msa_model_free(model);
  return 0;
}
