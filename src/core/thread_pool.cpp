#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <system_error>

#include "core/limits.h"
#include "core/log.h"

namespace msa {

namespace {
thread_local bool tls_in_pool_worker = false;

int hardware_threads() {
  return static_cast<int>(std::min<unsigned>(std::max(1u, std::thread::hardware_concurrency()),
                                             static_cast<unsigned>(limits::kMaxThreads)));
}
}  // namespace

Status ThreadPool::start(int n_threads) {
  n_threads_ = 1;
  try {
    workers_.reserve(static_cast<size_t>(n_threads) - 1);
    for (int i = 1; i < n_threads; ++i) {
      workers_.emplace_back([this, i] { worker_loop(i); });
      n_threads_ = i + 1;
    }
  } catch (const std::system_error& e) {
    return Error(StatusCode::kOutOfMemory, "thread pool: the system refused to start thread ", n_threads_ + 1,
                 " of ", n_threads, " (", e.what(), ")");
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, "thread pool: out of memory starting thread ", n_threads_ + 1, " of ",
                 n_threads);
  }
  return Status::Ok();
}

Status ThreadPool::create(int n_threads, std::unique_ptr<ThreadPool>* out) {
  out->reset();
  if (n_threads > limits::kMaxThreads) {
    return Error(StatusCode::kInvalidArgument, "thread pool: n_threads = ", n_threads, " is more than ",
                 limits::kMaxThreads, " (MSA_MAX_THREADS)");
  }
  if (n_threads <= 0) n_threads = hardware_threads();
  std::unique_ptr<ThreadPool> pool(new (std::nothrow) ThreadPool(NoStart{}));
  if (!pool) return Error(StatusCode::kOutOfMemory, "thread pool: out of memory");
  Status st = pool->start(n_threads);
  if (!st.ok()) return st;  // ~ThreadPool stops and joins the workers that did start
  *out = std::move(pool);
  return Status::Ok();
}

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = hardware_threads();
  n_threads = static_cast<int>(std::min<int64_t>(n_threads, limits::kMaxThreads));
  Status st = start(n_threads);
  if (!st.ok()) log(LogLevel::kWarn, st.message(), "; running with ", n_threads_, " threads");
}

void ThreadPool::stop_and_join() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

ThreadPool::~ThreadPool() { stop_and_join(); }

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    const char* env = std::getenv("MSA_NUM_THREADS");
    int n = env ? std::atoi(env) : 0;
    return n;
  }());
  return pool;
}

void ThreadPool::worker_loop(int) {
  tls_in_pool_worker = true;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    for (;;) {
      int64_t begin;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (next_ >= job_n_) break;
        begin = next_;
        next_ = std::min(job_n_, next_ + job_chunk_);
      }
      (*job)(begin, std::min(job_n_, begin + job_chunk_));
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || tls_in_pool_worker || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mu_);  // one job at a time; other callers wait
  int64_t chunks = std::min<int64_t>(n_threads_ * 4, (n + grain - 1) / grain);
  int64_t chunk = (n + chunks - 1) / chunks;
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    job_n_ = n;
    job_chunk_ = chunk;
    next_ = 0;
    pending_ = n_threads_ - 1;
    ++generation_;
  }
  cv_.notify_all();
  bool prev = tls_in_pool_worker;
  tls_in_pool_worker = true;  // nested calls from fn run inline
  for (;;) {
    int64_t begin;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (next_ >= job_n_) break;
      begin = next_;
      next_ = std::min(job_n_, next_ + job_chunk_);
    }
    fn(begin, std::min(n, begin + chunk));
  }
  tls_in_pool_worker = prev;
  std::unique_lock<std::mutex> lk(mu_);
  done_cv_.wait(lk, [&] { return pending_ == 0; });
  job_ = nullptr;
}

}  // namespace msa
