#include "memory_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
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
  const std::string text = ss.str();
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) {
    *error = path + ": empty file";
    return false;
  }
  if (text[first] == '[') {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_array()) {
      *error = path + ": not a valid JSON array of strings";
      return false;
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string()) {
        *error = path + ": element " + std::to_string(i) + " is not a string";
        return false;
      }
      out->texts.push_back(j[i].get<std::string>());
    }
    return true;
  }
  std::istringstream lines(text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(lines, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string() ||
        !j.contains("id") || !j["id"].is_number_unsigned()) {
      *error = path + ":" + std::to_string(lineno) + ": expected {\"id\": <non-negative integer>, \"text\": \"...\"}";
      return false;
    }
    out->ids.push_back(j["id"].get<uint64_t>());
    out->texts.push_back(j["text"].get<std::string>());
  }
  return true;
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

}  // namespace cli
