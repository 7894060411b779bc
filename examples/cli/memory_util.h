// Shared by `msa generate` and `msa route`: reading a documents file and encoding it into a memory bank
// with a progress display.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "documents.h"
#include "msa/msa.h"

namespace cli {

// Reads the documents file `path` (a JSON array of strings, or JSON Lines of {"id": N, "text": "..."}, ids
// given for every line; parse_documents in documents.h). Returns false and fills `error` (naming the file and
// the line) when it cannot be read or is malformed.
bool read_documents(const std::string& path, DocFile* out, std::string* error);

// Loads the model and encodes `docs` into a new bank, printing progress to stderr: a bar with tokens/s and
// ETA on a terminal, a plain line per 10% otherwise. Returns 0 or an exit code (errors already printed).
int build_memory(const char* cmd, const msa_model* model, const DocFile& docs, msa_memory** out, bool quiet);

// Opens the bank directory `path` for `model` (msa_memory_open), printing what was opened unless quiet.
// Returns 0 or an exit code (errors already printed).
int open_memory(const char* cmd, const msa_model* model, const std::string& path, msa_memory** out, bool quiet);

// Progress over a run that adds documents in several calls (msa encode, msa memory add): documents done so
// far in earlier calls (base) out of all of them (all). Pass to msa_memory_add_documents with a
// MultiProgress* as user_data.
struct MultiProgress {
  bool tty = false;
  bool quiet = false;
  int64_t base = 0;
  int64_t all = 0;
  int64_t tokens_base = 0;   // tokens of the batches (add calls) already finished
  int64_t call_tokens = 0;   // tokens done so far in the current add call
  int last_percent = -1;
  double start_s = 0;
};
MultiProgress make_progress(int64_t all, bool quiet);
int multi_progress(int64_t docs_done, int64_t docs_total, int64_t tok_done, int64_t tok_total, void* user);

// msa_document views of docs[begin, end) (ids: the file's, or the line index when the file has none).
std::vector<msa_document> document_views(const DocFile& docs, size_t begin, size_t end);
// The id of document i of the file.
inline uint64_t document_id(const DocFile& docs, size_t i) { return docs.ids.empty() ? i : docs.ids[i]; }

// Adds the documents of `docs` not yet in `mem` (by id; tombstoned ids count as present) in batches of `every`:
// on a bank attached to a directory each batch is one committed segment, so an interrupted run loses at most
// the batch in flight and re-running continues after the last committed one. Returns 0 or an exit code.
int encode_into(const char* cmd, msa_memory* mem, const DocFile& docs, size_t every, bool quiet);

}  // namespace cli
