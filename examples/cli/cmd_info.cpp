// msa info: prints a checkpoint's configuration and parameter count.
#include <cinttypes>
#include <cstdio>
#include <string>

#include "cli_util.h"
#include "commands.h"

int cmd_info(int argc, char** argv) {
  const char* usage = "info --model DIR";
  cli::Args a(argc, argv);
  std::string dir = a.get("--model");
  if (int rc = cli::check_args("info", a, usage)) return rc;
  if (dir.empty()) return cli::usage_error("info", "--model is required", usage);
  msa_model_params p;
  msa_model_params_init(&p);
  p.load_tokenizer = 0;  // info needs only config and weights
  msa_model* m = nullptr;
  msa_status st = msa_model_load(dir.c_str(), &p, &m);
  if (st != MSA_OK) return cli::fail("info", st);
  msa_model_desc d;
  d.struct_size = sizeof d;
  st = msa_model_info(m, &d);
  if (st != MSA_OK) {
    msa_model_free(m);
    return cli::fail("info", st);
  }
  std::printf("model:                   %s\n", dir.c_str());
  std::printf("parameters:              %" PRId64 " (%.2f M)\n", d.n_parameters, static_cast<double>(d.n_parameters) / 1e6);
  std::printf("weight dtype:            %s\n", d.weight_dtype);
  std::printf("vocab_size:              %" PRId64 "\n", d.vocab_size);
  std::printf("hidden_size:             %" PRId64 "\n", d.hidden_size);
  std::printf("intermediate_size:       %" PRId64 "\n", d.intermediate_size);
  std::printf("num_hidden_layers:       %d\n", d.n_layers);
  std::printf("num_attention_heads:     %d\n", d.n_heads);
  std::printf("num_key_value_heads:     %d\n", d.n_kv_heads);
  std::printf("head_dim:                %d\n", d.head_dim);
  std::printf("rope_theta:              %g\n", d.rope_theta);
  std::printf("rms_norm_eps:            %g\n", d.rms_norm_eps);
  std::printf("max_position_embeddings: %" PRId64 "\n", d.max_position_embeddings);
  std::printf("tie_word_embeddings:     %s\n", d.tie_word_embeddings ? "true" : "false");
  std::printf("router layers:           %d\n", d.n_router_layers);
  std::printf("pooling_kernel_size:     %d\n", d.pooling_kernel_size);
  std::printf("decouple_router:         %s\n", d.decouple_router ? "true" : "false");
  std::printf("aux_loss_method:         %s\n", d.aux_loss_method);
  msa_model_free(m);
  return 0;
}
