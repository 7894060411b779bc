#include "memory_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli_util.h"

namespace cli {

bool read_documents(const std::string& path, DocFile* out, std::string* error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = path + ": cannot open";
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_documents(ss.str(), path, out, error);
}

namespace {

struct Progress {
  bool tty = false;
  bool quiet = false;
  int last_decile = -1;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

int on_progress(int64_t docs_done, int64_t docs_total, int64_t tok_done, int64_t tok_total, void* user) {
  auto* p = static_cast<Progress*>(user);
  if (p->quiet) return 0;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - p->start).count();
  double frac = tok_total > 0 ? static_cast<double>(tok_done) / static_cast<double>(tok_total) : 1.0;
  double tps = secs > 0 ? static_cast<double>(tok_done) / secs : 0.0;
  double eta = tps > 0 ? static_cast<double>(tok_total - tok_done) / tps : 0.0;
  if (p->tty) {
    const int width = 30;
    int fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\rencoding [%.*s%*s] %5.1f%%  %lld/%lld docs  %.0f tok/s  ETA %.0fs ", fill,
                 "##############################", width - fill, "", frac * 100.0, static_cast<long long>(docs_done),
                 static_cast<long long>(docs_total), tps, eta);
    if (docs_done == docs_total) std::fprintf(stderr, "\n");
  } else {
    int decile = static_cast<int>(frac * 10.0);
    if (decile != p->last_decile) {
      p->last_decile = decile;
      std::fprintf(stderr, "encoding: %3d%%  %lld/%lld documents  %lld tokens  %.0f tok/s  ETA %.0fs\n", decile * 10,
                   static_cast<long long>(docs_done), static_cast<long long>(docs_total),
                   static_cast<long long>(tok_done), tps, eta);
    }
  }
  return 0;
}

}  // namespace

int build_memory(const char* cmd, const msa_model* model, const DocFile& docs, msa_memory** out, bool quiet) {
  msa_memory* mem = nullptr;
  msa_status st = msa_memory_create(model, nullptr, &mem);
  if (st != MSA_OK) return fail(cmd, st);
  std::vector<msa_document> d(docs.texts.size());
  for (size_t i = 0; i < d.size(); ++i) {
    d[i].text = docs.texts[i].data();
    d[i].text_len = docs.texts[i].size();
    d[i].has_id = docs.ids.empty() ? 0 : 1;
    d[i].id = docs.ids.empty() ? 0 : docs.ids[i];
  }
  Progress p;
  p.tty = isatty(STDERR_FILENO) != 0;
  p.quiet = quiet;
  st = msa_memory_add_documents(mem, d.data(), d.size(), on_progress, &p, nullptr);
  if (st != MSA_OK) {
    msa_memory_free(mem);
    return fail(cmd, st);
  }
  if (!quiet) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - p.start).count();
    msa_memory_usage u;
    u.struct_size = sizeof u;
    if (msa_memory_stats(mem, &u) == MSA_OK)
      std::fprintf(stderr, "encoded %lld documents, %lld tokens in %.1f s (%.0f tokens/s)\n",
                   static_cast<long long>(u.n_documents), static_cast<long long>(u.n_tokens), secs,
                   secs > 0 ? static_cast<double>(u.n_tokens) / secs : 0.0);
  }
  *out = mem;
  return 0;
}

int open_memory(const char* cmd, const msa_model* model, const std::string& path, msa_memory** out, bool quiet) {
  const auto t0 = std::chrono::steady_clock::now();
  msa_status st = msa_memory_open(model, path.c_str(), nullptr, out);
  if (st != MSA_OK) return fail(cmd, st);
  if (!quiet) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    msa_memory_usage u;
    u.struct_size = sizeof u;
    if (msa_memory_stats(*out, &u) == MSA_OK)
      std::fprintf(stderr, "opened %s: %lld documents, %lld tokens in %.1f ms\n", path.c_str(),
                   static_cast<long long>(u.n_documents), static_cast<long long>(u.n_tokens), ms);
  }
  return 0;
}

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

MultiProgress make_progress(int64_t all, bool quiet) {
  MultiProgress p;
  p.tty = isatty(STDERR_FILENO) != 0;
  p.quiet = quiet;
  p.all = all;
  p.start_s = now_s();
  return p;
}

int multi_progress(int64_t docs_done, int64_t, int64_t tok_done, int64_t, void* user) {
  auto* p = static_cast<MultiProgress*>(user);
  p->call_tokens = tok_done;
  if (p->quiet || p->all <= 0) return 0;
  const int64_t done = p->base + docs_done;
  const double secs = now_s() - p->start_s;
  const double frac = static_cast<double>(done) / static_cast<double>(p->all);
  const double tps = secs > 0 ? static_cast<double>(p->tokens_base + tok_done) / secs : 0.0;
  const double dps = secs > 0 ? static_cast<double>(done) / secs : 0.0;
  const double eta = dps > 0 ? static_cast<double>(p->all - done) / dps : 0.0;
  if (p->tty) {
    const int width = 30;
    const int fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\rencoding [%.*s%*s] %5.1f%%  %lld/%lld docs  %.0f tok/s  ETA %.0fs ", fill,
                 "##############################", width - fill, "", frac * 100.0, static_cast<long long>(done),
                 static_cast<long long>(p->all), tps, eta);
    if (done == p->all) std::fprintf(stderr, "\n");
  } else {
    const int percent = static_cast<int>(frac * 10.0) * 10;
    if (percent != p->last_percent) {
      p->last_percent = percent;
      std::fprintf(stderr, "encoding: %3d%%  %lld/%lld documents  %.0f tok/s  ETA %.0fs\n", percent,
                   static_cast<long long>(done), static_cast<long long>(p->all), tps, eta);
    }
  }
  return 0;
}

std::vector<msa_document> document_views(const DocFile& docs, size_t begin, size_t end) {
  std::vector<msa_document> d(end - begin);
  for (size_t i = begin; i < end; ++i) {
    msa_document& x = d[i - begin];
    x.text = docs.texts[i].data();
    x.text_len = docs.texts[i].size();
    x.has_id = 1;
    x.id = document_id(docs, i);
  }
  return d;
}

// Encodes docs[first..] not yet in `mem` in batches of `every` documents; each batch is one
// msa_memory_add_documents call on an attached bank, i.e. one committed segment. Returns 0 or an exit code.
int encode_into(const char* cmd, msa_memory* mem, const DocFile& docs, size_t every, bool quiet) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < docs.texts.size(); ++i) {
    int32_t state = 0;
    msa_status st = msa_memory_document_state(mem, document_id(docs, i), &state);
    if (st != MSA_OK) return fail(cmd, st);
    if (state == 0) todo.push_back(i);
  }
  const size_t skipped = docs.texts.size() - todo.size();
  if (!quiet && skipped > 0)
    std::fprintf(stderr, "msa %s: %zu of %zu documents are already in the bank (committed earlier); skipping them\n",
                 cmd, skipped, docs.texts.size());
  MultiProgress p = make_progress(static_cast<int64_t>(todo.size()), quiet);
  size_t at = 0;
  while (at < todo.size()) {
    // A batch: the next `every` documents still to do (the file's order).
    std::vector<msa_document> batch;
    size_t end = at;
    while (end < todo.size() && end - at < every) {
      std::vector<msa_document> one = document_views(docs, todo[end], todo[end] + 1);
      batch.push_back(one[0]);
      ++end;
    }
    msa_status st = msa_memory_add_documents(mem, batch.data(), batch.size(), multi_progress, &p, nullptr);
    if (st != MSA_OK) {
      if (!quiet && p.tty) std::fprintf(stderr, "\n");
      return fail(cmd, st);
    }
    p.base += static_cast<int64_t>(batch.size());
    p.tokens_base += p.call_tokens;
    p.call_tokens = 0;
    at = end;
  }
  if (!quiet && !todo.empty()) {
    const double secs = now_s() - p.start_s;
    std::fprintf(stderr, "encoded %zu documents, %lld tokens in %.1f s (%.0f tokens/s)\n", todo.size(),
                 static_cast<long long>(p.tokens_base), secs,
                 secs > 0 ? static_cast<double>(p.tokens_base) / secs : 0.0);
  }
  return 0;
}

}  // namespace cli
