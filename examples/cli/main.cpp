// msa — command line front end of libmsa. Uses only the public C API (include/msa/msa.h).
#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "msa/msa.h"

namespace {

struct Command {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"info", cmd_info,
     "info --model DIR [--memory BANK]      configuration, parameter count, backend and device; with --memory\n"
     "           the bank's bytes per tier (routing index in RAM / on the device, content pages, texts)"},
    {"logits", cmd_logits, "logits --model DIR --tokens 1,2,3       top-5 logits of the last position"},
    {"init-model", cmd_init_model,
     "init-model --preset micro|tiny|msa-4b-shape [--seed N] [--tokenizer DIR] [--msa-config JSON] --out DIR"},
    {"generate", cmd_generate,
     "generate --model DIR [--docs FILE | --memory BANK] --prompt TEXT [--top-k N] [--max-new-tokens N] [--temperature T --seed S]\n"
     "           [--interleave on|off] [--max-rounds N] [--json]   encode FILE into memory and answer"},
    {"route", cmd_route,
     "route --model DIR (--docs FILE | --memory BANK) --prompt TEXT [--top-k N] [--json]   top-k documents per layer"},
    {"encode", cmd_encode,
     "encode --model DIR --docs FILE --out BANK [--dtype f32|bf16|int8] [--commit-every N]\n"
     "           encode FILE into a bank directory, committing every N documents (re-run to resume)"},
    {"memory", cmd_memory,
     "memory info|verify BANK | memory add BANK --model DIR --docs FILE | memory rm BANK --model DIR ID... |\n"
     "           memory compact BANK --model DIR   inspect / change a bank directory"},
    {"tokenize", cmd_tokenize, "tokenize --tokenizer FILE               JSON Lines strings on stdin -> id arrays"},
    {"detokenize", cmd_detokenize, "detokenize --tokenizer FILE             JSON Lines id arrays on stdin -> strings"},
};

int usage(FILE* out) {
  std::fprintf(out, "msa %s — Memory Sparse Attention inference\nusage: msa <command> [options]\n\ncommands:\n",
               msa_version());
  for (const Command& c : kCommands) std::fprintf(out, "  %s\n", c.help);
  std::fprintf(out, "  version                                 print the library version\n");
  std::fprintf(out,
               "\nthe commands that load a model (info, logits, generate, route, encode, memory add|rm|compact) take\n"
               "  --device cpu|cuda|cuda:N  where it runs (default cpu; the environment variable MSA_BACKEND\n"
               "                            overrides the CPU backend by a backend name)\n");
  return out == stderr ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  std::string cmd = argv[1];
  if (cmd == "version" || cmd == "--version") {
    std::printf("%s\n", msa_version());
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") return usage(stdout);
  for (const Command& c : kCommands)
    if (cmd == c.name) return c.fn(argc - 1, argv + 1);
  std::fprintf(stderr, "msa: unknown command '%s'\n", cmd.c_str());
  return usage(stderr);
}
