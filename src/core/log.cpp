#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace msa {

namespace {
std::mutex g_log_mu;
LogCallback g_cb = nullptr;
void* g_user = nullptr;
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kWarn)};

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void set_log_callback(LogCallback cb, void* user_data) {
  std::lock_guard<std::mutex> lk(g_log_mu);
  g_cb = cb;
  g_user = user_data;
}

void set_log_level(LogLevel min_level) { g_min_level = static_cast<int>(min_level); }

void log_message(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < g_min_level.load()) return;
  std::lock_guard<std::mutex> lk(g_log_mu);
  if (g_cb) {
    g_cb(level, message.c_str(), g_user);
  } else {
    std::fprintf(stderr, "msa %s: %s\n", level_name(level), message.c_str());
  }
}

}  // namespace msa
