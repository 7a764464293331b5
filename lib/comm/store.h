// The key-value store ranks rendezvous through, in the shape of PyTorch c10d's Store: set, get
// (waits for the key), add (an atomic counter), check and wait, each bounded by a timeout.
// Values are bytes; std::string holds them because most values are text and all are small.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "util/error.h"

namespace ds::comm {

using Milliseconds = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Thrown by get and wait when keys are still missing at the deadline. Rendezvous reads
// missing_keys() to name the ranks that never arrived.
class StoreTimeout : public Error {
 public:
  StoreTimeout(std::vector<std::string> missing_keys, Milliseconds timeout);
  const std::vector<std::string>& missing_keys() const { return missing_keys_; }
  Milliseconds timeout() const { return timeout_; }

 private:
  std::vector<std::string> missing_keys_;
  Milliseconds timeout_;
};

class Store {
 public:
  // DESIGN.md: the rendezvous timeout defaults to 300 s.
  static constexpr Milliseconds kDefaultTimeout = std::chrono::seconds(300);

  explicit Store(Milliseconds timeout = kDefaultTimeout) : timeout_(timeout) {}
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  virtual void set(const std::string& key, const std::string& value) = 0;
  // The value, once the key exists; throws StoreTimeout after `timeout`.
  virtual std::string get(const std::string& key, Milliseconds timeout) = 0;
  std::string get(const std::string& key) { return get(key, timeout_); }
  // Adds `delta` to the integer stored at `key` (0 when absent) and returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // True when every key exists, without waiting.
  virtual bool check(const std::vector<std::string>& keys) = 0;
  // Returns when every key exists; throws StoreTimeout naming the missing ones.
  virtual void wait(const std::vector<std::string>& keys, Milliseconds timeout) = 0;
  void wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }
  // Removes the key; true when it existed.
  virtual bool remove(const std::string& key) = 0;

  Milliseconds timeout() const { return timeout_; }
  void set_timeout(Milliseconds timeout) { timeout_ = timeout; }

 private:
  Milliseconds timeout_;
};

// "12.5 s", "300 s", "250 ms": durations the way error messages print them.
std::string format_duration(Milliseconds duration);

}  // namespace ds::comm
