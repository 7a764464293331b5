// A view of another Store where every key gets "<prefix>/": each run and each process group
// has its own key space on the one TcpStore, so their keys never collide.
#pragma once

#include <memory>

#include "comm/store.h"

namespace ds::comm {

class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> store);

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, Milliseconds timeout) override;
  using Store::get;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  using Store::wait;
  bool remove(const std::string& key) override;

  const std::string& prefix() const { return prefix_; }
  // The store underneath, e.g. to read keys the server keeps outside any prefix.
  const std::shared_ptr<Store>& underlying() const { return store_; }

 private:
  std::string key(const std::string& k) const { return prefix_ + "/" + k; }
  std::vector<std::string> keys(const std::vector<std::string>& ks) const;

  std::string prefix_;
  std::shared_ptr<Store> store_;
};

}  // namespace ds::comm
