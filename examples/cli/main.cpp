// msa — command line front end of libmsa. Uses only the public C API.
#include <cstdio>
#include <cstring>
#include <string>

#include "msa/msa.h"

namespace {
int usage() {
  std::fprintf(stderr,
               "usage: msa <command> [options]\n"
               "commands:\n"
               "  version                          print the library version\n");
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  if (cmd == "version") {
    std::printf("%s\n", msa_version());
    return 0;
  }
  return usage();
}
