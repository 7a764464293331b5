// An in-process Store: ranks that run as threads in one test share one HashStore.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>

#include "comm/store.h"

namespace ds::comm {

class HashStore : public Store {
 public:
  explicit HashStore(Milliseconds timeout = kDefaultTimeout) : Store(timeout) {}

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, Milliseconds timeout) override;
  using Store::get;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  using Store::wait;
  bool remove(const std::string& key) override;

 private:
  std::vector<std::string> missing(const std::vector<std::string>& keys) const;  // mutex held

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::string> data_;
};

// Parses a counter value the way add() stores it; throws naming the key when it is not one.
int64_t parse_counter(const std::string& key, const std::string& value);

}  // namespace ds::comm
