// model_fingerprint (bank_fingerprint.h).
#include "memory/bank_fingerprint.h"

#include <xxhash.h>

#include <cstring>
#include <string>

#include "core/file_map.h"
#include "memory/memory_bank.h"

namespace msa {

namespace {

void sample_tensor(XXH64_state_t* st, const TensorView& t) {
  if (t.empty()) return;
  const size_t n = t.nbytes();
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  constexpr size_t kSamples = 64, kLen = 64;
  if (n <= kSamples * kLen) {
    XXH64_update(st, p, n);
    return;
  }
  const size_t stride = (n - kLen) / (kSamples - 1);
  for (size_t i = 0; i < kSamples; ++i) XXH64_update(st, p + i * stride, kLen);
}

}  // namespace

bankfmt::Fingerprint model_fingerprint(const Model& model) {
  const ModelConfig& c = model.config();
  bankfmt::Fingerprint f = shape_fingerprint(c);
  std::string tok;
  if (read_file(model.dir() + "/tokenizer.json", &tok).ok()) f.tokenizer_xxh64 = XXH64(tok.data(), tok.size(), 0);
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  const ModelWeights& w = model.weights();
  sample_tensor(st, w.embed_tokens);
  for (const LayerWeights& l : w.layers) {
    sample_tensor(st, l.input_norm);
    sample_tensor(st, l.q_proj);
    sample_tensor(st, l.k_proj);
    sample_tensor(st, l.v_proj);
    sample_tensor(st, l.k_norm);
    sample_tensor(st, l.router_q);
    sample_tensor(st, l.router_k);
  }
  f.weights_digest = XXH64_digest(st);
  XXH64_freeState(st);
  f.template_len = 3;
  return f;
}

}  // namespace msa
