// BankDir / WriterLock (bank_dir.h).
#include "memory/bank_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "core/atomic_file.h"

namespace msa::bankfmt {

namespace {

constexpr const char* kLockName = "LOCK";

struct Registry {
  std::mutex mu;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<BankDir>> dirs;
};

// Never destroyed: banks held in static objects may outlive any other static.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

std::string basename_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

Status BankDir::get(const std::string& dir, std::shared_ptr<BankDir>* out) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error(StatusCode::kIo, dir, ": cannot open the bank directory: ", io_error_text(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Error(StatusCode::kIo, dir, ": cannot stat the bank directory: ", io_error_text(err));
  }
  Registry& reg = registry();
  std::shared_ptr<BankDir> found;  // released after the registry mutex (~BankDir takes it)
  std::lock_guard<std::mutex> lock(reg.mu);
  std::weak_ptr<BankDir>& slot = reg.dirs[{st.st_dev, st.st_ino}];
  found = slot.lock();
  if (found && found->pid_ == ::getpid()) {
    ::close(fd);
    *out = std::move(found);
    return Status::Ok();
  }
  // None yet (or one inherited through fork(): that one is the parent's).
  std::shared_ptr<BankDir> e(new BankDir);
  e->path_ = dir;
  e->dev_ = st.st_dev;
  e->ino_ = st.st_ino;
  e->pid_ = ::getpid();
  e->dir_fd_ = fd;
  slot = e;
  *out = std::move(e);
  return Status::Ok();
}

BankDir::~BankDir() {
  {
    Registry& reg = registry();
    std::lock_guard<std::mutex> lock(reg.mu);
    auto it = reg.dirs.find({dev_, ino_});
    if (it != reg.dirs.end() && it->second.expired()) reg.dirs.erase(it);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void BankDir::track(const std::vector<std::shared_ptr<const SegmentFile>>& segments) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t w = 0;
  for (size_t i = 0; i < tracked_.size(); ++i) {
    if (!tracked_[i].second.expired()) tracked_[w++] = std::move(tracked_[i]);
  }
  tracked_.resize(w);
  for (const auto& s : segments) tracked_.emplace_back(basename_of(s->path()), s);
}

std::unordered_set<std::string> BankDir::in_use() {
  std::lock_guard<std::mutex> lock(mu_);
  std::unordered_set<std::string> names;
  for (const auto& [name, seg] : tracked_) {
    if (!seg.expired()) names.insert(name);
  }
  return names;
}

Status BankDir::acquire_writer() {
  std::lock_guard<std::mutex> lock(mu_);
  if (writers_ > 0) {
    ++writers_;
    return Status::Ok();
  }
  const std::string lock_path = path_ + "/" + kLockName;
  const int fd = ::openat(dir_fd_, kLockName, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Error(StatusCode::kIo, lock_path, ": cannot open the bank's lock file: ", io_error_text(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      return Error(StatusCode::kIo, lock_path, ": cannot lock: ", io_error_text(err));
    }
    // The holder wrote its pid after locking (best effort: it may not have yet).
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    long holder = 0;
    if (n > 0) holder = std::strtol(buf, nullptr, 10);
    std::string who = holder > 0 ? "another process (pid " + std::to_string(holder) + ")" : "another process";
    return Error(StatusCode::kBusy, path_, ": ", who, " is writing this memory bank (it holds ", lock_path,
                 "); one process writes a bank at a time: retry when it has finished (reading needs no lock)");
  }
  char pid[32];
  const int len = std::snprintf(pid, sizeof pid, "%ld\n", static_cast<long>(::getpid()));
  if (::ftruncate(fd, 0) == 0) {
    (void)!::pwrite(fd, pid, static_cast<size_t>(len), 0);  // informative only (a full disk may refuse it)
  }
  lock_fd_ = fd;
  writers_ = 1;
  return Status::Ok();
}

void BankDir::release_writer() {
  std::lock_guard<std::mutex> lock(mu_);
  if (writers_ <= 0) return;
  if (--writers_ == 0 && lock_fd_ >= 0) {
    if (pid_ == ::getpid()) (void)!::ftruncate(lock_fd_, 0);  // no stale pid left behind
    ::close(lock_fd_);  // releases the flock (this is the only descriptor of its open file description)
    lock_fd_ = -1;
  }
}

WriterLock& WriterLock::operator=(WriterLock&& o) noexcept {
  if (this != &o) {
    reset();
    dir_ = std::move(o.dir_);
  }
  return *this;
}

Status WriterLock::acquire(const std::shared_ptr<BankDir>& dir, WriterLock* out) {
  if (!dir) return Error(StatusCode::kInternal, "writer lock: no bank directory");
  if (out->holds(dir.get())) return Status::Ok();
  MSA_RETURN_IF_ERROR(dir->acquire_writer());
  WriterLock w;
  w.dir_ = dir;
  *out = std::move(w);
  return Status::Ok();
}

bool WriterLock::holds(const BankDir* dir) const {
  return dir_ != nullptr && dir_.get() == dir && dir_->pid() == ::getpid();
}

void WriterLock::reset() {
  if (dir_) {
    dir_->release_writer();
    dir_.reset();
  }
}

std::string new_segment_name(uint64_t gen) {
  static std::atomic<uint64_t> counter{0};
  const uint64_t now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const uint64_t salt = mix64((static_cast<uint64_t>(::getpid()) << 32) ^ mix64(counter.fetch_add(1)) ^ now);
  char b[64];
  std::snprintf(b, sizeof b, "seg-%06llu-%08x.msaseg", static_cast<unsigned long long>(gen),
                static_cast<unsigned>(salt & 0xffffffffu));
  return b;
}

}  // namespace msa::bankfmt
