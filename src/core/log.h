// Logging hook: the library never prints on its own; messages go to a callback (default: stderr for
// warnings and errors only). The C API exposes it as msa_log_set.
#pragma once

#include <sstream>
#include <string>

namespace msa {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using LogCallback = void (*)(LogLevel level, const char* message, void* user_data);

// cb == nullptr restores the default (stderr, level >= min_level). Thread-safe.
void set_log_callback(LogCallback cb, void* user_data);
void set_log_level(LogLevel min_level);
void log_message(LogLevel level, const std::string& message);

template <typename... Args>
void log(LogLevel level, Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  log_message(level, os.str());
}

}  // namespace msa
