// TcpStore: the Store every rank of a multi-process run shares. Rank 0 hosts the server
// (a thread in its own process) at MASTER_ADDR:MASTER_PORT; every rank, rank 0 included,
// is a client. Clients retry the connection with backoff until the timeout (rank 0 may start
// last), then authenticate with the run token before anything else.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "comm/socket.h"
#include "comm/store.h"
#include "comm/tcp_store_server.h"

namespace ds::comm {

struct TcpStoreOptions {
  std::string host = "127.0.0.1";  // where the server is (MASTER_ADDR)
  int port = 0;                    // MASTER_PORT; 0 with is_server: pick a free port
  std::string token;               // DS_RUN_TOKEN
  bool is_server = false;          // host the server in this process (rank 0)
  int rank = -1;                   // this client's rank, so the server can report it gone
  Milliseconds timeout = Store::kDefaultTimeout;  // connecting, and each get/wait by default
  // The server's owner, on destruction, waits this long at most for the other ranks to
  // disconnect (see TcpStoreServer::wait_for_ranks_to_leave).
  Milliseconds linger = std::chrono::seconds(30);
};

class TcpStore : public Store {
 public:
  explicit TcpStore(TcpStoreOptions options);
  ~TcpStore() override;

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, Milliseconds timeout) override;
  using Store::get;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  using Store::wait;
  bool remove(const std::string& key) override;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  // The server this process hosts, if it is rank 0; else null.
  const TcpStoreServer* server() const { return server_.get(); }

 private:
  void connect(Milliseconds timeout);
  // Sends one request frame and returns the reply payload. `wait` is how long the server
  // may legitimately take to answer (a get or wait); a grace period is added on top.
  std::string request(std::string frame, Milliseconds wait);
  [[noreturn]] void lost(const std::string& why);

  std::string host_;
  int port_;
  std::string token_;
  int rank_;
  Milliseconds linger_;
  std::unique_ptr<TcpStoreServer> server_;
  std::mutex mutex_;  // one request at a time on the one connection
  Fd fd_;
};

}  // namespace ds::comm
