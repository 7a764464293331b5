// The TcpStore server: one thread in rank 0's process, serving every rank's client over one
// poll() loop. It never blocks on a client: sockets are non-blocking, waits are parked until
// their keys arrive or their deadline passes, and a client that does not authenticate with
// the run token within a few seconds, sends garbage, or sends a frame that is too large is
// dropped (and logged, rate-limited) while everyone else keeps being served.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "comm/socket.h"
#include "comm/store.h"

namespace ds::comm {

// Keys the server writes itself, outside any PrefixStore: "__ds/gone/<rank>" appears when
// the store connection of a client that said it is `rank` closes. Survivors of a failed
// collective read these to name the rank that died.
std::string gone_rank_key(int rank);

struct TcpStoreServerOptions {
  int port = 0;  // 0: pick a free one
  std::string token;
  // A connection must present the token within this long after connecting.
  Milliseconds auth_timeout = std::chrono::seconds(10);
  size_t max_connections = 16384;
};

class TcpStoreServer {
 public:
  explicit TcpStoreServer(TcpStoreServerOptions options);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const { return port_; }

  struct Stats {
    uint64_t accepted = 0;
    uint64_t authenticated = 0;
    uint64_t dropped = 0;  // rejected or misbehaving connections
  };
  Stats stats() const;

  // Waits until no rank's client is connected any more (at most `timeout`): rank 0 stays a
  // little while after it is done or failed, so that slower ranks finish their last requests
  // and survivors of a failure can still ask which rank died.
  void wait_for_ranks_to_leave(Milliseconds timeout) const;

 private:
  class Loop;
  std::unique_ptr<Loop> loop_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace ds::comm
