// Small helpers shared by the msa subcommands: option parsing and error printing.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "msa/msa.h"

namespace cli {

// Minimal "--key value" / "--flag" parser. Unknown options are reported by the caller via `unknown()`.
class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) items_.emplace_back(argv[i]);
  }
  // Value of --key, or `def` when absent. Sets error when --key is last (missing value).
  std::string get(const std::string& key, const std::string& def = "") {
    for (size_t i = 0; i < items_.size(); ++i) {
      if (items_[i] == key) {
        used_.push_back(i);
        if (i + 1 >= items_.size()) {
          error_ = "option " + key + " needs a value";
          return def;
        }
        used_.push_back(i + 1);
        return items_[i + 1];
      }
    }
    return def;
  }
  bool has(const std::string& key) {
    for (size_t i = 0; i < items_.size(); ++i)
      if (items_[i] == key) {
        used_.push_back(i);
        return true;
      }
    return false;
  }
  // First argument not consumed by get()/has(), or "".
  std::string unknown() const {
    for (size_t i = 0; i < items_.size(); ++i) {
      bool used = false;
      for (size_t u : used_) used = used || u == i;
      if (!used) return items_[i];
    }
    return "";
  }
  const std::string& error() const { return error_; }

 private:
  std::vector<std::string> items_;
  std::vector<size_t> used_;
  std::string error_;
};

// Prints "msa <cmd>: <STATUS>: <last error>" and returns exit code 1.
inline int fail(const char* cmd, msa_status st) {
  std::fprintf(stderr, "msa %s: %s: %s\n", cmd, msa_status_string(st), msa_last_error());
  return 1;
}

inline int usage_error(const char* cmd, const std::string& msg, const char* usage) {
  std::fprintf(stderr, "msa %s: %s\nusage: msa %s\n", cmd, msg.c_str(), usage);
  return 2;
}

// Checks the parse for errors and leftovers; returns 0 when fine, else prints and returns 2.
inline int check_args(const char* cmd, const Args& a, const char* usage) {
  if (!a.error().empty()) return usage_error(cmd, a.error(), usage);
  std::string u = a.unknown();
  if (!u.empty()) return usage_error(cmd, "unexpected argument '" + u + "'", usage);
  return 0;
}

}  // namespace cli
