// The documents file of `msa generate`, `msa route`, `msa encode` and `msa memory add`: a JSON array of strings,
// or JSON Lines of {"id": N, "text": "..."}. Only the standard library and nlohmann::json (no libmsa), so the
// fuzz target tests/fuzz/fuzz_documents.cpp compiles this file alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

struct DocFile {
  std::vector<std::string> texts;
  std::vector<uint64_t> ids;  // empty: ids are assigned by the bank (0..n-1)
};

// Parses the bytes of a documents file named `name` (used in messages): a JSON array of strings (ids stay
// empty), or JSON Lines of {"id": <non-negative integer>, "text": "..."} (an id for every line; blank lines are
// skipped). Returns false and fills `error` (naming the file, and the line or element) on malformed input;
// `out` may then hold the documents read before the error.
bool parse_documents(std::string_view text, const std::string& name, DocFile* out, std::string* error);

}  // namespace cli
