#include "comm/shm/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "comm/socket.h"
#include "util/error.h"

namespace ds::comm {
namespace {

char* map(int fd, size_t bytes, const std::string& name) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    throw Error(fmt::format("cannot map shared memory {} ({} bytes): {}", name, bytes,
                            std::strerror(errno)));
  }
  return static_cast<char*>(p);
}

}  // namespace

ShmSegment ShmSegment::create(const std::string& name, size_t bytes) {
  Fd fd(::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    throw Error(fmt::format("cannot create shared memory {}: {}", name, std::strerror(errno)));
  }
  ShmSegment seg;
  seg.name_ = name;
  seg.owner_ = true;
  if (const int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)); rc != 0) {
    seg.unlink();
    throw Error(fmt::format("cannot reserve {} MiB of shared memory in /dev/shm: {}", bytes >> 20,
                            std::strerror(rc)),
                "enlarge /dev/shm (e.g. docker run --shm-size=1g)");
  }
  seg.data_ = map(fd.get(), bytes, name);
  seg.size_ = bytes;
  return seg;
}

ShmSegment ShmSegment::open(const std::string& name, size_t bytes) {
  Fd fd(::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    throw Error(fmt::format("cannot open shared memory {}: {}", name, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || static_cast<size_t>(st.st_size) < bytes) {
    throw Error(fmt::format("shared memory {} is smaller than expected", name));
  }
  ShmSegment seg;
  seg.name_ = name;
  seg.data_ = map(fd.get(), bytes, name);
  seg.size_ = bytes;
  return seg;
}

ShmSegment::~ShmSegment() {
  if (data_ != nullptr) ::munmap(data_, size_);
  unlink();
}

ShmSegment::ShmSegment(ShmSegment&& other) noexcept
    : name_(std::move(other.name_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owner_(std::exchange(other.owner_, false)) {}

ShmSegment& ShmSegment::operator=(ShmSegment&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    unlink();
    name_ = std::move(other.name_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owner_ = std::exchange(other.owner_, false);
  }
  return *this;
}

void ShmSegment::unlink() {
  if (owner_) ::shm_unlink(name_.c_str());
  owner_ = false;
}

}  // namespace ds::comm
