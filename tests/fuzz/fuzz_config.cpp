// libFuzzer target: arbitrary bytes as config.json, generation_config.json and a router_layer_idx string.
// Every outcome must be a Status (no exception, no crash); a parsed config must satisfy its invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  msa::ModelConfig c;
  msa::Status st = msa::parse_model_config(text, "fuzz/config.json", &c);
  if (st.ok()) {
    if (c.hidden_size <= 0 || c.head_dim <= 0 || c.num_key_value_heads <= 0 || c.num_hidden_layers <= 0 ||
        c.num_attention_heads % c.num_key_value_heads != 0) {
      std::abort();
    }
    for (size_t i = 0; i < c.msa.router_layers.size(); ++i) {
      const int l = c.msa.router_layers[i];
      if (l < 0 || l >= c.num_hidden_layers || (i > 0 && c.msa.router_layers[i - 1] >= l)) std::abort();
      if (!c.is_router_layer(l)) std::abort();
    }
  }
  msa::GenerationDefaults g;
  (void)msa::parse_generation_config(text, "fuzz/generation_config.json", &g);
  std::vector<int> layers;
  if (msa::parse_router_layer_idx(text, 64, &layers).ok()) {
    for (int l : layers) {
      if (l < 0 || l >= 64) std::abort();
    }
  }
  return 0;
}
