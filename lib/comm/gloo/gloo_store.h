// Gloo rendezvous through our Store: Gloo's full-mesh setup publishes each rank's addresses
// as store keys, so it inherits the run's token, prefixes and timeouts.
#pragma once

#include <gloo/rendezvous/store.h>

#include <memory>

#include "comm/store.h"

namespace ds::comm {

class GlooStore : public ::gloo::rendezvous::Store {
 public:
  explicit GlooStore(std::shared_ptr<comm::Store> store) : store_(std::move(store)) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    store_->set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string value = store_->get(key);
    return {value.begin(), value.end()};
  }
  void wait(const std::vector<std::string>& keys) override { store_->wait(keys); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    store_->wait(keys, timeout);
  }

 private:
  std::shared_ptr<comm::Store> store_;
};

}  // namespace ds::comm
