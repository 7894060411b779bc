// AtomicFile (atomic_file.h).
#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace msa {

namespace {

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::atomic<uint64_t> g_temp_counter{0};

}  // namespace

std::string io_error_text(int err) {
  const char* text = std::strerror(err);
  if (err == ENOSPC || err == EFBIG
#ifdef EDQUOT
      || err == EDQUOT
#endif
  ) {
    return std::string("disk full (") + text + ")";
  }
  return text;
}

Status fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error(StatusCode::kIo, dir, ": cannot open directory: ", io_error_text(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Error(StatusCode::kIo, dir, ": fsync of the directory failed: ", io_error_text(err));
  return Status::Ok();
}

AtomicFile::~AtomicFile() { abort(); }

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : path_(std::move(o.path_)), tmp_(std::move(o.tmp_)), fd_(o.fd_), size_(o.size_) {
  o.fd_ = -1;
  o.tmp_.clear();
}

AtomicFile& AtomicFile::operator=(AtomicFile&& o) noexcept {
  if (this != &o) {
    abort();
    path_ = std::move(o.path_);
    tmp_ = std::move(o.tmp_);
    fd_ = o.fd_;
    size_ = o.size_;
    o.fd_ = -1;
    o.tmp_.clear();
  }
  return *this;
}

void AtomicFile::abort() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_.empty()) {
    ::unlink(tmp_.c_str());
    tmp_.clear();
  }
}

Status AtomicFile::fail(const std::string& step, int err) {
  const std::string tmp = tmp_;
  abort();
  return Error(StatusCode::kIo, tmp, ": ", step, " failed: ", io_error_text(err));
}

Status AtomicFile::open(const std::string& path) {
  abort();
  if (path.empty()) return Error(StatusCode::kInvalidArgument, "atomic write: empty path");
  path_ = path;
  size_ = 0;
  // A fresh name per attempt: O_EXCL never reuses another writer's (or a crashed one's) temporary.
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".%ld.%llu.tmp", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(g_temp_counter.fetch_add(1)));
    const std::string tmp = path + suffix;
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      fd_ = fd;
      tmp_ = tmp;
      return Status::Ok();
    }
    if (errno != EEXIST) {
      return Error(StatusCode::kIo, path, ": cannot create ", tmp, ": ", io_error_text(errno));
    }
  }
  return Error(StatusCode::kIo, path, ": cannot create a temporary file next to it (100 names taken)");
}

namespace {

// Writes the n bytes at p to fd, at the file position (offset < 0, ::write) or from `offset` on (::pwrite), in
// calls of at most 1 GiB, retrying on EINTR; *done grows by each call's count. 0, or the errno of the failure
// (EIO for a call that wrote nothing).
int write_fully(int fd, const uint8_t* p, size_t n, int64_t offset, uint64_t* done) {
  while (n > 0) {
    const size_t len = std::min<size_t>(n, size_t{1} << 30);
    const ssize_t w = offset < 0 ? ::write(fd, p, len) : ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    p += w;
    n -= static_cast<size_t>(w);
    if (offset >= 0) offset += w;
    *done += static_cast<uint64_t>(w);
  }
  return 0;
}

}  // namespace

Status AtomicFile::write(const void* data, size_t n) {
  if (fd_ < 0) return Error(StatusCode::kInternal, path_, ": write to a file that is not open");
  const int err = write_fully(fd_, static_cast<const uint8_t*>(data), n, -1, &size_);
  return err != 0 ? fail("write", err) : Status::Ok();
}

Status AtomicFile::write_at(uint64_t offset, const void* data, size_t n) {
  if (fd_ < 0) return Error(StatusCode::kInternal, path_, ": write to a file that is not open");
  if (offset > size_ || n > size_ - offset) {
    return Error(StatusCode::kInternal, path_, ": write_at past the bytes written");
  }
  uint64_t written = 0;
  const int err = write_fully(fd_, static_cast<const uint8_t*>(data), n, static_cast<int64_t>(offset), &written);
  return err != 0 ? fail("write", err) : Status::Ok();
}

Status AtomicFile::commit() {
  if (fd_ < 0) return Error(StatusCode::kInternal, path_, ": commit of a file that is not open");
  if (::fsync(fd_) != 0) return fail("fsync", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return fail("close", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    const std::string tmp = tmp_;
    abort();
    return Error(StatusCode::kIo, path_, ": cannot rename ", tmp, " into place: ", io_error_text(err));
  }
  tmp_.clear();  // renamed: nothing left to remove
  return fsync_directory(parent_dir(path_));
}

Status atomic_write_file(const std::string& path, const std::vector<ByteSpan>& pieces) {
  AtomicFile f;
  MSA_RETURN_IF_ERROR(f.open(path));
  for (const ByteSpan& p : pieces) {
    if (p.size > 0) MSA_RETURN_IF_ERROR(f.write(p.data, p.size));
  }
  return f.commit();
}

}  // namespace msa
