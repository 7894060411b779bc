// msa logits: top-5 logits of the last position of a token sequence (plain causal forward).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "cli_util.h"
#include "commands.h"

int cmd_logits(int argc, char** argv) {
  const char* usage = "logits --model DIR --tokens 1,2,3 [--device cpu|cuda|cuda:N]";
  cli::Args a(argc, argv);
  std::string dir = a.get("--model");
  std::string toks = a.get("--tokens");
  cli::Device dev;
  if (int rc = cli::device_option("logits", a, usage, &dev)) return rc;
  if (int rc = cli::check_args("logits", a, usage)) return rc;
  if (dir.empty() || toks.empty()) return cli::usage_error("logits", "--model and --tokens are required", usage);
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= toks.size()) {
    size_t comma = toks.find(',', pos);
    if (comma == std::string::npos) comma = toks.size();
    std::string item = toks.substr(pos, comma - pos);
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v > 0x7fffffff)
      return cli::usage_error("logits", "bad token id '" + item + "'", usage);
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  msa_model* m = nullptr;
  if (int rc = cli::load_model("logits", dir, dev, false, &m)) return rc;
  msa_model_desc d;
  d.struct_size = sizeof d;
  msa_status st = msa_model_info(m, &d);
  std::vector<float> logits(static_cast<size_t>(d.vocab_size));
  if (st == MSA_OK)
    st = msa_model_logits(m, ids.data(), static_cast<int32_t>(ids.size()), logits.data(), d.vocab_size);
  msa_model_free(m);
  if (st != MSA_OK) return cli::fail("logits", st);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  size_t k = std::min<size_t>(5, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(), [&](int32_t x, int32_t y) {
    return logits[static_cast<size_t>(x)] > logits[static_cast<size_t>(y)] ||
           (logits[static_cast<size_t>(x)] == logits[static_cast<size_t>(y)] && x < y);
  });
  for (size_t i = 0; i < k; ++i)
    std::printf("%d\t%.6f\n", order[i], static_cast<double>(logits[static_cast<size_t>(order[i])]));
  return 0;
}
