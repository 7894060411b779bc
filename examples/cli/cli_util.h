// Small helpers shared by the msa subcommands: option parsing, model loading and error printing.
#pragma once

#include <cstdint>
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

// The name of a msa_page_dtype: "f32", "bf16" or "int8".
inline const char* page_dtype_name(int32_t t) {
  return t == MSA_PAGE_F32 ? "f32" : t == MSA_PAGE_BF16 ? "bf16" : "int8";
}

// --device as given on the command line. `given` false: the library's default backend (MSA_BACKEND_CPU, which
// the environment variable MSA_BACKEND may override by a backend name).
struct Device {
  bool given = false;
  int32_t backend = MSA_BACKEND_CPU;
  int32_t index = 0;  // GPU index (cuda:N)
};

// The forms --device accepts, for usage lines and errors.
inline const char* device_forms() { return "cpu, cuda or cuda:N (N a GPU index, an integer >= 0)"; }

// Parses a --device value: "cpu", "cuda" (GPU 0) or "cuda:N" with N a non-negative decimal integer.
inline bool parse_device(const std::string& s, Device* out) {
  Device d;
  d.given = true;
  if (s == "cpu") {
    d.backend = MSA_BACKEND_CPU;
  } else if (s == "cuda") {
    d.backend = MSA_BACKEND_CUDA;
  } else if (s.compare(0, 5, "cuda:") == 0) {
    const std::string n = s.substr(5);
    if (n.empty() || n.size() > 10 || n.find_first_not_of("0123456789") != std::string::npos) return false;
    const long long v = std::strtoll(n.c_str(), nullptr, 10);
    if (v > INT32_MAX) return false;
    d.backend = MSA_BACKEND_CUDA;
    d.index = static_cast<int32_t>(v);
  } else {
    return false;
  }
  *out = d;
  return true;
}

// Parses the value of --device for `cmd`; returns 0, or prints a usage error naming the accepted forms and
// returns 2.
inline int device_value(const char* cmd, const std::string& value, const char* usage, Device* out) {
  if (parse_device(value, out)) return 0;
  return usage_error(cmd, "--device must be " + std::string(device_forms()) + ", not '" + value + "'", usage);
}

// Reads --device from `a` (absent: *out keeps given = false). Returns 0 or a usage error's exit code; a
// --device without a value is left to check_args.
inline int device_option(const char* cmd, Args& a, const char* usage, Device* out) {
  if (!a.has("--device")) return 0;
  const std::string value = a.get("--device");
  if (!a.error().empty()) return 0;
  return device_value(cmd, value, usage, out);
}

// Loads the checkpoint `dir` on `dev` with the library's default parameters otherwise (msa_params_init), and
// the tokenizer when `load_tokenizer`. Returns 0, or prints the error and returns 1.
inline int load_model(const char* cmd, const std::string& dir, const Device& dev, bool load_tokenizer,
                      msa_model** out) {
  msa_model_params p;
  msa_status st = msa_params_init(MSA_PARAMS_MODEL, &p, sizeof p);
  if (st != MSA_OK) return fail(cmd, st);
  p.load_tokenizer = load_tokenizer ? 1 : 0;
  if (dev.given) {
    p.backend = dev.backend;
    p.device = dev.index;
  }
  st = msa_model_load(dir.c_str(), &p, out);
  return st == MSA_OK ? 0 : fail(cmd, st);
}

// "40960000 (39.06 MiB)": a byte count and its binary-unit rendering.
inline std::string format_bytes(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < sizeof kUnits / sizeof kUnits[0]) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%lld (%lld B)", static_cast<long long>(bytes), static_cast<long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%lld (%.2f %s)", static_cast<long long>(bytes), v, kUnits[u]);
  return buf;
}

}  // namespace cli
