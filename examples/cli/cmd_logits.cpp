#include <cstdio>

#include "commands.h"

int cmd_logits(int, char**) {
  std::fprintf(stderr, "msa: this command is not built yet\n");
  return 2;
}
