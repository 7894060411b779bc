// A small fixed-size thread pool with a blocking parallel_for. The calling thread takes part in the work,
// so a pool of size 1 runs everything inline. Nested parallel_for calls from a worker run inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"

namespace msa {

class ThreadPool {
 public:
  // Strict factory: a pool of exactly n_threads threads (the caller's included; <= 0: hardware
  // concurrency, capped at limits::kMaxThreads). Never throws and never blocks. Errors: kInvalidArgument
  // (n_threads > limits::kMaxThreads = MSA_MAX_THREADS), kOutOfMemory (the system refused to start a
  // thread: the workers already started are stopped and joined before it returns).
  static Status create(int n_threads, std::unique_ptr<ThreadPool>* out);

  // Best effort, for tests, benchmarks and the process pool: n_threads <= 0 is hardware concurrency, the
  // count is clamped to [1, limits::kMaxThreads], and when the system refuses a thread the pool keeps the
  // ones that started (size() tells; a warning is logged). Never throws for want of threads.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Splits [0, n) into contiguous ranges of at least `grain` items and runs fn(begin, end) on them.
  // Blocks until all ranges are done. fn must not throw.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // The process-wide default pool (hardware concurrency, or MSA_NUM_THREADS when set; clamped like the
  // constructor).
  static ThreadPool& global();

 private:
  struct NoStart {};
  explicit ThreadPool(NoStart) {}
  // Starts workers until the pool has `n_threads` threads (the caller's included). On failure the pool
  // keeps the workers that started (n_threads_ matches them) and the error says why.
  Status start(int n_threads);
  void stop_and_join();
  void worker_loop(int index);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::mutex submit_mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;
  int64_t next_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace msa
