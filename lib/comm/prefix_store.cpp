#include "comm/prefix_store.h"

namespace ds::comm {

PrefixStore::PrefixStore(std::string prefix, std::shared_ptr<Store> store)
    : Store(store->timeout()), prefix_(std::move(prefix)), store_(std::move(store)) {}

void PrefixStore::set(const std::string& k, const std::string& value) {
  store_->set(key(k), value);
}

std::string PrefixStore::get(const std::string& k, Milliseconds timeout) {
  try {
    return store_->get(key(k), timeout);
  } catch (const StoreTimeout&) {
    throw StoreTimeout({k}, timeout);  // name the key as the caller wrote it
  }
}

int64_t PrefixStore::add(const std::string& k, int64_t delta) { return store_->add(key(k), delta); }

bool PrefixStore::check(const std::vector<std::string>& ks) { return store_->check(keys(ks)); }

void PrefixStore::wait(const std::vector<std::string>& ks, Milliseconds timeout) {
  try {
    store_->wait(keys(ks), timeout);
  } catch (const StoreTimeout& e) {
    std::vector<std::string> missing;
    const size_t strip = prefix_.size() + 1;
    for (const auto& full : e.missing_keys()) missing.push_back(full.substr(strip));
    throw StoreTimeout(std::move(missing), timeout);
  }
}

bool PrefixStore::remove(const std::string& k) { return store_->remove(key(k)); }

std::vector<std::string> PrefixStore::keys(const std::vector<std::string>& ks) const {
  std::vector<std::string> out;
  out.reserve(ks.size());
  for (const auto& k : ks) out.push_back(key(k));
  return out;
}

}  // namespace ds::comm
