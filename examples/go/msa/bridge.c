/* C side of the Go callbacks: libmsa calls these trampolines, which call the exported Go functions with the
 * cgo.Handle that travels as user_data. */
#include <stdint.h>

#include "_cgo_export.h"

int msa_go_progress(int64_t done, int64_t total, int64_t tokens_done, int64_t tokens_total, void *user) {
  return goProgress(done, total, tokens_done, tokens_total, (uintptr_t)user);
}

int msa_go_token(const char *piece, size_t len, void *user) {
  return goToken((char *)piece, len, (uintptr_t)user);
}

msa_status msa_go_add_documents(msa_memory *memory, const msa_document *docs, size_t n, uintptr_t handle,
                                uint64_t *out_ids) {
  return msa_memory_add_documents(memory, docs, n, handle ? msa_go_progress : NULL, (void *)handle, out_ids);
}

msa_status msa_go_generate(const msa_model *model, const msa_memory *memory, const char *prompt,
                           const msa_generate_params *params, uintptr_t handle, msa_result **out) {
  return msa_generate(model, memory, prompt, params, handle ? msa_go_token : NULL, (void *)handle, out);
}
