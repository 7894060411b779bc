// libFuzzer target: arbitrary bytes as the documents file of the msa CLI (cli::parse_documents,
// examples/cli/documents.cpp: a JSON array of strings or JSON Lines of {"id": N, "text": "..."}).
// Every outcome must be true/false with an error naming the file (no exception, no crash). A parsed file
// has one id per text (JSON Lines) or none (array), and survives a round trip: written back in its format it
// parses to the same documents.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "documents.h"

namespace {
void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_documents: invariant violated: %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  cli::DocFile d;
  std::string error;
  if (!cli::parse_documents(text, "fuzz/docs.jsonl", &d, &error)) {
    check(error.rfind("fuzz/docs.jsonl:", 0) == 0, "error does not start with the file name");
    return 0;
  }
  check(error.empty(), "error set on success");
  check(d.ids.empty() || d.ids.size() == d.texts.size(), "ids and texts disagree");
  std::string again;
  if (d.ids.empty()) {
    again = nlohmann::json(d.texts).dump();
  } else {
    for (size_t i = 0; i < d.texts.size(); ++i) {
      again += nlohmann::json{{"id", d.ids[i]}, {"text", d.texts[i]}}.dump() + "\n";
    }
  }
  cli::DocFile back;
  check(cli::parse_documents(again, "fuzz/round_trip", &back, &error), "round trip does not parse");
  check(back.texts == d.texts && back.ids == d.ids, "round trip changed the documents");
  return 0;
}
