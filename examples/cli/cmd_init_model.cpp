// msa init-model: writes a random checkpoint in the MSA-4B layout (no torch, no download).
#include <cinttypes>
#include <cstdio>
#include <string>

#include "cli_util.h"
#include "commands.h"

int cmd_init_model(int argc, char** argv) {
  const char* usage = "init-model --preset tiny|msa-4b-shape [--seed N] [--tokenizer DIR] --out DIR";
  cli::Args a(argc, argv);
  std::string preset = a.get("--preset", "tiny");
  std::string seed_s = a.get("--seed", "0");
  std::string tok = a.get("--tokenizer");
  std::string out = a.get("--out");
  if (int rc = cli::check_args("init-model", a, usage)) return rc;
  if (out.empty()) return cli::usage_error("init-model", "--out is required", usage);
  char* end = nullptr;
  unsigned long long seed = std::strtoull(seed_s.c_str(), &end, 10);
  if (seed_s.empty() || *end != '\0') return cli::usage_error("init-model", "--seed must be an integer", usage);
  msa_status st = msa_checkpoint_init(preset.c_str(), seed, tok.empty() ? nullptr : tok.c_str(), out.c_str());
  if (st != MSA_OK) return cli::fail("init-model", st);
  std::printf("wrote %s checkpoint (seed %llu) to %s\n", preset.c_str(), seed, out.c_str());
  return 0;
}
