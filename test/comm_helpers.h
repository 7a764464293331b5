// Helpers for the comm tests: ranks as forked processes (each with a real TcpStore on a free
// loopback port) or as threads sharing a HashStore (Gloo's test/base_test.h idea).
#pragma once

#include <catch2/catch.hpp>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/forked_ranks.h"
#include "comm/hash_store.h"
#include "comm/prefix_store.h"
#include "comm/process_group.h"
#include "comm/rendezvous.h"
#include "comm/socket.h"
#include "comm/tcp_store.h"

namespace ds::testing {

using namespace std::chrono_literals;

inline constexpr char kTestToken[] = "test-token-0123456789";

// Throws from inside a child rank (Catch2's macros belong to the parent process).
template <typename... Args>
void expect(bool condition, fmt::format_string<Args...> format, Args&&... args) {
  if (!condition) throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// A rank's world: its store (rank 0 hosts it) and its group, after the rendezvous.
struct World {
  std::shared_ptr<comm::Store> store;
  std::shared_ptr<comm::ProcessGroup> group;
};

inline World make_world(int rank, int n, int port, comm::Backend backend,
                        comm::Milliseconds timeout = 60s,
                        comm::Milliseconds collective_timeout = 60s) {
  comm::TcpStoreOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  options.token = kTestToken;
  options.is_server = rank == 0;
  options.rank = rank;
  options.timeout = timeout;
  auto root = std::make_shared<comm::TcpStore>(options);
  comm::rendezvous(*root, rank, n, timeout);
  comm::GroupContext context;
  context.rank = rank;
  context.size = n;
  context.store = std::make_shared<comm::PrefixStore>("pg/world", root);
  context.root_store = root;
  context.timeout = collective_timeout;
  context.backend = backend;
  context.master_addr = "127.0.0.1";
  return {root, comm::create_process_group(std::move(context))};
}

// Runs `fn(rank)` in `n` processes and returns how each ended; never hangs past `timeout`.
inline std::vector<bench::RankExit> run_processes(int n, const std::function<int(int)>& fn,
                                                  comm::Milliseconds timeout = 90s,
                                                  bool fail_fast = false) {
  bench::ForkedRanks ranks(n, fn, /*capture_output=*/true);
  return ranks.wait(timeout, fail_fast);
}

// Checks every rank exited 0, showing the output of those that did not.
inline void require_all_ok(const std::vector<bench::RankExit>& exits) {
  for (size_t r = 0; r < exits.size(); ++r) {
    INFO("rank " << r << " exit " << exits[r].code << (exits[r].timed_out ? " (timed out)" : "")
                 << "\n"
                 << exits[r].output);
    CHECK(exits[r].code == 0);
  }
}

// Runs `fn(rank, store)` on `n` threads sharing one HashStore; rethrows the first failure.
inline void run_ranks(int n, const std::function<void(int, std::shared_ptr<comm::Store>)>& fn) {
  auto store = std::make_shared<comm::HashStore>(30s);
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::exception_ptr first;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r, store);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

// A thread rank's group over a shared in-process store.
inline std::shared_ptr<comm::ProcessGroup> thread_group(int rank, int n,
                                                        std::shared_ptr<comm::Store> store,
                                                        comm::Backend backend) {
  comm::GroupContext context;
  context.rank = rank;
  context.size = n;
  context.store = std::make_shared<comm::PrefixStore>("pg/world", store);
  context.root_store = store;
  context.timeout = 30s;
  context.backend = backend;
  return comm::create_process_group(std::move(context));
}

}  // namespace ds::testing
