// msa tokenize --tokenizer FILE [--add-special]
// Reads JSON Lines from stdin, each line one JSON string, and writes one JSON array of ids per line.
// An invalid line stops the run: message on stderr naming the line, exit code 1.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "msa/msa.h"

namespace {
int usage() {
  std::fprintf(stderr,
               "usage: msa tokenize --tokenizer FILE [--add-special]\n"
               "  stdin: one JSON string per line; stdout: one JSON array of token ids per line.\n"
               "  FILE is a tokenizer.json (or a directory holding one; tokenizer_config.json beside it is read).\n"
               "  Added tokens written in the text (\"<|im_end|>\") become their ids. --add-special has no effect\n"
               "  for Qwen tokenizers (they add no BOS/EOS).\n");
  return 2;
}
}  // namespace

int cmd_tokenize(int argc, char** argv) {
  const char* path = nullptr;
  int add_special = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (std::strcmp(argv[i], "--add-special") == 0) {
      add_special = 1;
    } else {
      return usage();
    }
  }
  if (!path) return usage();
  msa_tokenizer* tok = nullptr;
  if (msa_tokenizer_load(path, &tok) != MSA_OK) {
    std::fprintf(stderr, "msa tokenize: %s\n", msa_last_error());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  std::vector<int32_t> ids(4096);
  std::string line, out;
  long line_no = 0;
  int rc = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_string()) {
      std::fprintf(stderr, "msa tokenize: stdin line %ld: not a JSON string\n", line_no);
      rc = 1;
      break;
    }
    const std::string& text = j.get_ref<const std::string&>();
    size_t n = 0;
    msa_status st = msa_tokenizer_tokenize(tok, text.data(), text.size(), add_special, ids.data(), ids.size(), &n);
    if (st == MSA_ERR_BUFFER_TOO_SMALL) {
      ids.resize(n);
      st = msa_tokenizer_tokenize(tok, text.data(), text.size(), add_special, ids.data(), ids.size(), &n);
    }
    if (st != MSA_OK) {
      std::fprintf(stderr, "msa tokenize: stdin line %ld: %s\n", line_no, msa_last_error());
      rc = 1;
      break;
    }
    out.clear();
    out.push_back('[');
    for (size_t i = 0; i < n; ++i) {
      if (i) out.push_back(',');
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
  msa_tokenizer_free(tok);
  return rc;
}
