// msa init-model: writes a random checkpoint in the MSA-4B layout (no torch, no download).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli_util.h"
#include "commands.h"

int cmd_init_model(int argc, char** argv) {
  const char* usage =
      "init-model --preset micro|tiny|msa-4b-shape [--seed N] [--tokenizer DIR] [--msa-config JSON] --out DIR";
  cli::Args a(argc, argv);
  std::string preset = a.get("--preset", "tiny");
  std::string seed_s = a.get("--seed", "0");
  std::string tok = a.get("--tokenizer");
  std::string over = a.get("--msa-config");
  std::string out = a.get("--out");
  if (int rc = cli::check_args("init-model", a, usage)) return rc;
  if (out.empty()) return cli::usage_error("init-model", "--out is required", usage);
  char* end = nullptr;
  unsigned long long seed = std::strtoull(seed_s.c_str(), &end, 10);
  if (seed_s.empty() || *end != '\0') return cli::usage_error("init-model", "--seed must be an integer", usage);
  msa_checkpoint_params p;
  msa_checkpoint_params_init(&p);
  p.preset = preset.c_str();
  p.seed = seed;
  p.tokenizer_dir = tok.empty() ? nullptr : tok.c_str();
  p.msa_config_json = over.empty() ? nullptr : over.c_str();
  msa_status st = msa_checkpoint_init(&p, out.c_str());
  if (st != MSA_OK) return cli::fail("init-model", st);
  std::printf("wrote %s checkpoint (seed %llu) to %s\n", preset.c_str(), seed, out.c_str());
  return 0;
}
