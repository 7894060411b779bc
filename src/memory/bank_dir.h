// A memory bank directory as this process sees it (docs/FORMAT.md "Writers"): one process-wide entry per
// directory, keyed by the directory's device and inode (pinned by an open descriptor, so the key cannot be
// reused while the entry lives), shared by every MemoryBank attached to it. It holds
//   * the process's writer lock on BANK/LOCK: flock(LOCK_EX | LOCK_NB), taken when the first handle of the
//     process starts writing and released when the last writing handle goes (WriterLock, refcounted here);
//     another process gets kBusy naming the directory and the holder's pid (written into LOCK);
//   * the commit mutex: the handles of this process commit one at a time (manifest check, segment, MANIFEST,
//     garbage collection), so each sees the generation the previous one committed;
//   * the segments mapped by live handles of this process (weak references), which garbage collection keeps.
// An entry is per process: a forked child does not inherit its parent's writer lock (it gets a fresh entry and
// must take the lock itself, which fails while the parent holds it).
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/status.h"
#include "memory/bank_format.h"

namespace msa::bankfmt {

class BankDir {
 public:
  // The entry of directory `dir` (which must exist), created on first use. Errors: kIo.
  static Status get(const std::string& dir, std::shared_ptr<BankDir>* out);
  ~BankDir();
  BankDir(const BankDir&) = delete;
  BankDir& operator=(const BankDir&) = delete;

  const std::string& path() const { return path_; }
  pid_t pid() const { return pid_; }
  std::mutex& commit_mutex() { return commit_mu_; }

  // Remembers segments a handle maps (until they are destroyed).
  void track(const std::vector<std::shared_ptr<const SegmentFile>>& segments);
  // File names of the tracked segments that are still alive.
  std::unordered_set<std::string> in_use();

 private:
  friend class WriterLock;
  BankDir() = default;
  Status acquire_writer();  // +1 writer; the first takes the flock
  void release_writer();    // -1 writer; the last closes LOCK (releasing the flock)

  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  pid_t pid_ = 0;
  int dir_fd_ = -1;
  std::mutex mu_;      // lock_fd_, writers_, tracked_
  int lock_fd_ = -1;
  int writers_ = 0;
  std::vector<std::pair<std::string, std::weak_ptr<const SegmentFile>>> tracked_;
  std::mutex commit_mu_;
};

// One handle's share of its process's writer lock on a bank directory. Move-only; empty by default.
class WriterLock {
 public:
  WriterLock() = default;
  ~WriterLock() { reset(); }
  WriterLock(WriterLock&& o) noexcept : dir_(std::move(o.dir_)) {}
  WriterLock& operator=(WriterLock&& o) noexcept;
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

  // Takes (or shares) the process's writer lock on `dir`. Errors: kBusy (another process writes the directory:
  // the message names it and the holder's pid when known), kIo (LOCK cannot be created).
  static Status acquire(const std::shared_ptr<BankDir>& dir, WriterLock* out);
  // True when this holds the lock of `dir` for the current process (false in a forked child).
  bool holds(const BankDir* dir) const;
  bool held() const { return dir_ != nullptr; }
  void reset();

 private:
  std::shared_ptr<BankDir> dir_;
};

// A fresh segment file name for generation `gen`: "seg-<gen, 6+ digits>-<8 hex digits>.msaseg", the suffix from
// the process id, a counter and the clock, so that names never collide across handles or processes.
std::string new_segment_name(uint64_t gen);

}  // namespace msa::bankfmt
