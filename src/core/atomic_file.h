// Crash-safe file replacement, the one implementation used by every writer of the library (safetensors files,
// init-model checkpoints, memory bank segments and MANIFEST).
//
// Protocol: the bytes go to a temporary file in the destination's directory ("<path>.<pid>.<n>.tmp", created
// with O_EXCL, so two writers never share one), which is fsync'ed, closed, renamed over `path`, and the directory
// fsync'ed. Until the rename a reader sees the previous file (or none); after it, the complete new one.
// On any failure the temporary file is removed — a failed write never leaves its partial bytes behind (on a full
// disk they would keep it full) — and `path` is untouched. Errors are kIo naming the file, the step and the system
// error; ENOSPC, EDQUOT and EFBIG say "disk full" (e.g. "x.tmp: write failed: disk full (No space left on
// device)").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace msa {

// "disk full (<strerror>)" for ENOSPC / EDQUOT / EFBIG, else strerror(err).
std::string io_error_text(int err);

// A file being written under a temporary name. Move-only; destroying it before commit() removes the temporary.
class AtomicFile {
 public:
  AtomicFile() = default;
  ~AtomicFile();
  AtomicFile(AtomicFile&& o) noexcept;
  AtomicFile& operator=(AtomicFile&& o) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Creates the temporary file for `path` (mode 0644). Errors: kIo (the directory is missing or not writable).
  Status open(const std::string& path);
  // Appends n bytes. Errors: kIo (the temporary is removed: the file is unusable afterwards).
  Status write(const void* data, size_t n);
  // Overwrites n bytes at `offset` (< the size written so far; for headers written last). Errors: as write.
  Status write_at(uint64_t offset, const void* data, size_t n);
  // fsync, close, rename over the destination, fsync of the directory. Errors: kIo; the temporary is removed
  // when the failure is before the rename (a failed directory fsync after it leaves the new file in place).
  Status commit();
  // Removes the temporary file now (also done by the destructor). Idempotent.
  void abort();

  bool is_open() const { return fd_ >= 0; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  Status fail(const std::string& step, int err);
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// One piece of a file written by atomic_write_file.
struct ByteSpan {
  const void* data;
  size_t size;
};

// Writes the concatenated pieces as `path` atomically (AtomicFile). Errors: kIo.
Status atomic_write_file(const std::string& path, const std::vector<ByteSpan>& pieces);

// fsync of a directory (after a rename into it). Errors: kIo naming the directory.
Status fsync_directory(const std::string& dir);

}  // namespace msa
