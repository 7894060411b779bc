// msa detokenize --tokenizer FILE [--skip-special]
// Reads JSON Lines from stdin, each line one JSON array of token ids, and writes one JSON string per line.
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
               "usage: msa detokenize --tokenizer FILE [--skip-special]\n"
               "  stdin: one JSON array of token ids per line; stdout: one JSON string per line.\n"
               "  --skip-special leaves out special tokens (\"<|im_end|>\" ...). Bytes that do not form valid\n"
               "  UTF-8 become U+FFFD, as in Hugging Face tokenizers' decode.\n");
  return 2;
}
}  // namespace

int cmd_detokenize(int argc, char** argv) {
  const char* path = nullptr;
  int skip_special = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (std::strcmp(argv[i], "--skip-special") == 0) {
      skip_special = 1;
    } else {
      return usage();
    }
  }
  if (!path) return usage();
  msa_tokenizer* tok = nullptr;
  if (msa_tokenizer_load(path, &tok) != MSA_OK) {
    std::fprintf(stderr, "msa detokenize: %s\n", msa_last_error());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  std::vector<int32_t> ids;
  std::vector<char> text(1 << 16);
  std::string line;
  long line_no = 0;
  int rc = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    bool ok = !j.is_discarded() && j.is_array();
    ids.clear();
    if (ok) {
      for (const auto& v : j) {
        if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX) {
          ok = false;
          break;
        }
        ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
    }
    if (!ok) {
      std::fprintf(stderr, "msa detokenize: stdin line %ld: not a JSON array of integer token ids\n", line_no);
      rc = 1;
      break;
    }
    size_t len = 0;
    msa_status st = msa_tokenizer_detokenize(tok, ids.data(), ids.size(), skip_special, text.data(), text.size(), &len);
    if (st == MSA_ERR_BUFFER_TOO_SMALL) {
      text.resize(len + 1);
      st = msa_tokenizer_detokenize(tok, ids.data(), ids.size(), skip_special, text.data(), text.size(), &len);
    }
    if (st != MSA_OK) {
      std::fprintf(stderr, "msa detokenize: stdin line %ld: %s\n", line_no, msa_last_error());
      rc = 1;
      break;
    }
    std::string s = nlohmann::json(std::string(text.data(), len)).dump() + "\n";
    std::fwrite(s.data(), 1, s.size(), stdout);
  }
  std::fflush(stdout);
  msa_tokenizer_free(tok);
  return rc;
}
