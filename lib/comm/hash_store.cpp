#include "comm/hash_store.h"

#include <algorithm>
#include <charconv>

namespace ds::comm {

int64_t parse_counter(const std::string& key, const std::string& value) {
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size()) {
    const bool printable =
        value.size() <= 40 &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    throw Error(printable ? fmt::format("store key '{}' holds '{}', not a counter", key, value)
                          : fmt::format("store key '{}' holds {} bytes that are not a counter", key,
                                        value.size()),
                "add() only works on keys that add() created");
  }
  return n;
}

void HashStore::set(const std::string& key, const std::string& value) {
  {
    std::lock_guard lock(mutex_);
    data_[key] = value;
  }
  changed_.notify_all();
}

std::string HashStore::get(const std::string& key, Milliseconds timeout) {
  wait({key}, timeout);
  std::lock_guard lock(mutex_);
  return data_.at(key);
}

int64_t HashStore::add(const std::string& key, int64_t delta) {
  int64_t value = delta;
  {
    std::lock_guard lock(mutex_);
    auto it = data_.find(key);
    if (it != data_.end()) value += parse_counter(key, it->second);
    data_[key] = std::to_string(value);
  }
  changed_.notify_all();
  return value;
}

bool HashStore::check(const std::vector<std::string>& keys) {
  std::lock_guard lock(mutex_);
  return missing(keys).empty();
}

void HashStore::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    std::vector<std::string> absent = missing(keys);
    if (absent.empty()) return;
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      absent = missing(keys);
      if (absent.empty()) return;
      throw StoreTimeout(std::move(absent), timeout);
    }
  }
}

bool HashStore::remove(const std::string& key) {
  std::lock_guard lock(mutex_);
  return data_.erase(key) > 0;
}

std::vector<std::string> HashStore::missing(const std::vector<std::string>& keys) const {
  std::vector<std::string> absent;
  for (const auto& key : keys) {
    if (!data_.contains(key)) absent.push_back(key);
  }
  return absent;
}

}  // namespace ds::comm
