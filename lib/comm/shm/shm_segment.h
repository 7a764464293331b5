// A POSIX shared-memory object mapped into this process. Rank 0 creates it under a random
// name, the others open it, and rank 0 unlinks the name as soon as all have it mapped, so a
// crash later leaves nothing behind in /dev/shm.
#pragma once

#include <cstddef>
#include <string>

namespace ds::comm {

class ShmSegment {
 public:
  ShmSegment() = default;
  // Creates and maps `bytes`, with every page reserved up front: a full /dev/shm fails here
  // with a message instead of killing the process with SIGBUS on first touch.
  static ShmSegment create(const std::string& name, size_t bytes);
  static ShmSegment open(const std::string& name, size_t bytes);
  ~ShmSegment();
  ShmSegment(ShmSegment&& other) noexcept;
  ShmSegment& operator=(ShmSegment&& other) noexcept;
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  void unlink();
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string name_;
  char* data_ = nullptr;
  size_t size_ = 0;
  bool owner_ = false;
};

}  // namespace ds::comm
