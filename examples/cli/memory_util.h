// Shared by `msa generate` and `msa route`: reading a documents file and encoding it into a memory bank
// with a progress display.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "msa/msa.h"

namespace cli {

struct DocFile {
  std::vector<std::string> texts;
  std::vector<uint64_t> ids;  // empty: ids are assigned by the bank (0..n-1)
};

// FILE: a JSON array of strings, or JSON Lines of {"id": N, "text": "..."} (ids given for every line).
// Returns false and fills `error` (naming the file and the line) on malformed input.
bool read_documents(const std::string& path, DocFile* out, std::string* error);

// Loads the model and encodes `docs` into a new bank, printing progress to stderr: a bar with tokens/s and
// ETA on a terminal, a plain line per 10% otherwise. Returns 0 or an exit code (errors already printed).
int build_memory(const char* cmd, const msa_model* model, const DocFile& docs, msa_memory** out, bool quiet);

}  // namespace cli
