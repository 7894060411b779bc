#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <climits>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"
#include "core/file_map.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/status.h"
#include "core/thread_pool.h"

using namespace msa;

TEST_CASE("Status carries code and message", "[core]") {
  Status ok;
  REQUIRE(ok.ok());
  Status s = Error(StatusCode::kIo, "file ", 42, " missing");
  REQUIRE_FALSE(s.ok());
  REQUIRE(s.code() == StatusCode::kIo);
  REQUIRE(s.message() == "file 42 missing");
  REQUIRE(s.to_string() == "MSA_ERR_IO: file 42 missing");
}

TEST_CASE("bf16 conversion rounds to nearest even", "[core]") {
  REQUIRE(f32_to_bf16(1.0f) == 0x3f80);
  REQUIRE(bf16_to_f32(0x3f80) == 1.0f);
  // 1 + 2^-8 is exactly between 1 and 1 + 2^-7: ties to even (1.0).
  REQUIRE(f32_to_bf16(1.00390625f) == 0x3f80);
  // 1 + 3*2^-8 ties up to 1 + 2^-6 (even mantissa).
  REQUIRE(f32_to_bf16(1.01171875f) == 0x3f82);
  REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  REQUIRE(f32_to_bf16(-2.5f) == 0xc020);
}

TEST_CASE("f16 conversion round trips every half value", "[core]") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t v = static_cast<uint16_t>(h);
    float f = f16_to_f32(v);
    if (std::isnan(f)) continue;
    REQUIRE(f32_to_f16(f) == v);
  }
  REQUIRE(f16_to_f32(0x3c00) == 1.0f);
  REQUIRE(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  REQUIRE(f32_to_f16(70000.0f) == 0x7c00);
  REQUIRE(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie to even
}

TEST_CASE("AlignedBuffer is aligned and zeroed", "[core]") {
  AlignedBuffer b(1000);
  REQUIRE(reinterpret_cast<uintptr_t>(b.data()) % 64 == 0);
  for (size_t i = 0; i < b.size(); ++i) REQUIRE(b.data()[i] == 0);
  AlignedBuffer c = std::move(b);
  REQUIRE(c.size() == 1000);
  REQUIRE(b.data() == nullptr);
}

TEST_CASE("MappedFile maps a file and reports missing ones", "[core]") {
  std::string path = "core_test_map.bin";
  {
    std::ofstream f(path, std::ios::binary);
    f << "hello";
  }
  MappedFile m;
  REQUIRE(MappedFile::open(path, &m).ok());
  REQUIRE(m.size() == 5);
  REQUIRE(std::string(reinterpret_cast<const char*>(m.data()), 5) == "hello");
  MappedFile missing;
  Status s = MappedFile::open("does/not/exist.bin", &missing);
  REQUIRE(s.code() == StatusCode::kIo);
  REQUIRE(s.message().find("does/not/exist.bin") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("ThreadPool covers every index exactly once", "[core]") {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(10007);
  pool.parallel_for(10007, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (auto& h : hits) REQUIRE(h.load() == 1);
  // nested calls run inline instead of deadlocking
  std::atomic<int> total{0};
  pool.parallel_for(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) pool.parallel_for(4, 1, [&](int64_t b2, int64_t e2) { total += static_cast<int>(e2 - b2); });
  });
  REQUIRE(total.load() == 32);
}

TEST_CASE("ThreadPool::create refuses more than MSA_MAX_THREADS before starting any thread", "[core][limits]") {
  std::unique_ptr<ThreadPool> pool;
  Status st = ThreadPool::create(INT32_MAX, &pool);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("MSA_MAX_THREADS") != std::string::npos);
  CHECK(pool == nullptr);
  st = ThreadPool::create(static_cast<int>(limits::kMaxThreads) + 1, &pool);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  REQUIRE(ThreadPool::create(3, &pool).ok());
  REQUIRE(pool->size() == 3);
  std::atomic<int64_t> sum{0};
  pool->parallel_for(1000, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  CHECK(sum.load() == 999 * 1000 / 2);
  REQUIRE(ThreadPool::create(0, &pool).ok());  // hardware concurrency
  CHECK(pool->size() >= 1);
  CHECK(pool->size() <= limits::kMaxThreads);
}

TEST_CASE("ThreadPool(n) clamps an absurd thread count instead of exhausting the system", "[core][limits]") {
  // Before: ThreadPool(INT32_MAX) started threads until the system refused one, then never returned.
  ThreadPool pool(INT32_MAX);
  CHECK(pool.size() >= 1);
  CHECK(pool.size() <= limits::kMaxThreads);
  std::vector<std::atomic<int>> hits(5000);
  pool.parallel_for(5000, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (auto& h : hits) REQUIRE(h.load() == 1);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MSA_TEST_NO_RLIMIT_AS 1  // the sanitizers reserve terabytes of address space up front
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define MSA_TEST_NO_RLIMIT_AS 1
#endif
#endif

TEST_CASE("ThreadPool::create: a thread the system refuses is kOutOfMemory, started workers are joined",
          "[core][limits]") {
#ifdef MSA_TEST_NO_RLIMIT_AS
  WARN("skipped under a sanitizer (needs RLIMIT_AS)");
#else
  // In a child process whose address space is capped 32 MB above its current size, thread stacks cannot
  // be mapped after the first few: create() must report it, stop and join what it started, and return.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    if (pages <= 0) ::_exit(10);
    struct rlimit rl;
    if (::getrlimit(RLIMIT_AS, &rl) != 0) ::_exit(11);
    const rlim_t old_cur = rl.rlim_cur;
    rl.rlim_cur = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (rlim_t{32} << 20);
    if (::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(11);
    std::unique_ptr<ThreadPool> pool;
    Status st = ThreadPool::create(static_cast<int>(limits::kMaxThreads), &pool);
    if (st.ok()) ::_exit(12);  // 1024 thread stacks (8 MB each by default) cannot fit in 32 MB
    if (st.code() != StatusCode::kOutOfMemory) ::_exit(13);
    if (pool) ::_exit(14);
    if (st.message().find("refused") == std::string::npos) ::_exit(15);
    // The process is still usable: a small pool works once the cap is lifted.
    rl.rlim_cur = old_cur;
    if (::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(16);
    if (!ThreadPool::create(2, &pool).ok() || pool->size() != 2) ::_exit(17);
    ::_exit(0);
  }
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  INFO("child exit status " << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1) << ", signalled "
                             << (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0));
  CHECK(WIFEXITED(wstatus));
  CHECK(WEXITSTATUS(wstatus) == 0);
#endif
}

namespace {
struct Captured {
  int count = 0;
  std::string last;
};
void capture(LogLevel, const char* msg, void* user) {
  auto* c = static_cast<Captured*>(user);
  c->count++;
  c->last = msg;
}
}  // namespace

TEST_CASE("log hook receives messages at or above the level", "[core]") {
  Captured c;
  set_log_callback(capture, &c);
  set_log_level(LogLevel::kInfo);
  log(LogLevel::kDebug, "hidden");
  log(LogLevel::kInfo, "shown ", 1);
  set_log_callback(nullptr, nullptr);
  set_log_level(LogLevel::kWarn);
  REQUIRE(c.count == 1);
  REQUIRE(c.last == "shown 1");
}
