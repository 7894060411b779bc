// msa info: prints a checkpoint's configuration and parameter count, where it runs (backend, device, weights
// in device memory) and, with --memory, the bytes of a bank in each tier.
#include <cinttypes>
#include <cstdio>
#include <string>

#include "cli_util.h"
#include "commands.h"
#include "memory_util.h"

namespace {

// The bank's bytes per tier. The routing index is always in RAM (read at open, scanned there by a CPU backend);
// a GPU backend also holds a resident copy in device memory. Content pages are in RAM (documents added in this
// process) or left compressed in the mapped segment files.
void print_tiers(const std::string& bank, const msa_model_desc& d, const msa_memory_usage& u) {
  const bool cpu = std::string(d.backend).compare(0, 3, "cpu") == 0;
  std::printf("memory bank:             %s (%lld documents, %lld removed, %lld tokens, %lld chunks per router "
              "layer, %s pages)\n",
              bank.c_str(), static_cast<long long>(u.n_documents), static_cast<long long>(u.n_removed),
              static_cast<long long>(u.n_tokens), static_cast<long long>(u.n_chunks),
              cli::page_dtype_name(u.page_dtype));
  std::printf("routing index in RAM:    %s\n", cli::format_bytes(u.routing_bytes).c_str());
  std::string note;
  if (u.routing_device_bytes == 0 && cpu)
    note = "; none: the " + std::string(d.backend) + " backend scans the RAM copy in place";
  else if (u.routing_device_bytes > 0)
    note = "; resident in " + std::string(d.backend) + " device memory";
  std::printf("routing index on device: %s%s\n", cli::format_bytes(u.routing_device_bytes).c_str(), note.c_str());
  std::printf("content pages in RAM:    %s\n", cli::format_bytes(u.content_bytes - u.content_file_bytes).c_str());
  std::printf("content pages in files:  %s; compressed in the mapped segment files, decoded when read\n",
              cli::format_bytes(u.content_file_bytes).c_str());
  std::printf("texts:                   %s\n", cli::format_bytes(u.text_bytes).c_str());
}

}  // namespace

int cmd_info(int argc, char** argv) {
  const char* usage = "info --model DIR [--device cpu|cuda|cuda:N] [--memory BANK]";
  cli::Args a(argc, argv);
  const std::string dir = a.get("--model"), bank = a.get("--memory");
  cli::Device dev;
  if (int rc = cli::device_option("info", a, usage, &dev)) return rc;
  if (int rc = cli::check_args("info", a, usage)) return rc;
  if (dir.empty()) return cli::usage_error("info", "--model is required", usage);
  msa_model* m = nullptr;
  // info needs only config and weights; opening a bank checks the tokenizer too.
  if (int rc = cli::load_model("info", dir, dev, !bank.empty(), &m)) return rc;
  msa_model_desc d;
  d.struct_size = sizeof d;
  msa_status st = msa_model_info(m, &d);
  msa_memory* mem = nullptr;
  msa_memory_usage u;
  u.struct_size = sizeof u;
  int rc = st == MSA_OK ? 0 : cli::fail("info", st);
  if (rc == 0 && !bank.empty()) rc = cli::open_memory("info", m, bank, &mem, true);
  if (rc == 0 && mem) {
    st = msa_memory_stats(mem, &u);  // also makes the routing index resident on a GPU backend
    if (st != MSA_OK) rc = cli::fail("info", st);
  }
  if (rc != 0) {
    msa_memory_free(mem);
    msa_model_free(m);
    return rc;
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
  std::printf("backend:                 %s\n", d.backend);
  std::printf("device:                  %s\n", d.device);
  std::printf("weights on device:       %s%s\n", cli::format_bytes(d.device_weight_bytes).c_str(),
              d.device_weight_bytes == 0 ? "; none: the weights are read from the mapped checkpoint in place" : "");
  if (mem) print_tiers(bank, d, u);
  msa_memory_free(mem);
  msa_model_free(m);
  return 0;
}
