// TcpStore in one process: the server and several clients on loopback, and strangers thrown
// at the server (wrong token, garbage, oversized and truncated frames, half-open connections,
// port scans) while the legitimate clients keep working.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <random>
#include <thread>

#include "comm/rendezvous.h"
#include "comm/socket.h"
#include "comm/store_wire.h"
#include "comm/tcp_store.h"

using namespace ds::comm;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

constexpr char kToken[] = "secret-token";

TcpStoreOptions client_of(int port, std::string token = kToken) {
  TcpStoreOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.token = std::move(token);
  o.timeout = 5s;
  return o;
}

Fd raw_connect(int port) { return connect_tcp("127.0.0.1", port, Clock::now() + 5s); }

void send_bytes(int fd, const std::string& bytes) {
  write_all(fd, bytes.data(), bytes.size(), Clock::now() + 5s);
}

// True when the server closed the connection (read returns EOF or reset) within `wait`.
bool closed_by_server(int fd, std::chrono::milliseconds wait = 5s) {
  char buffer[256];
  const auto deadline = Clock::now() + wait;
  while (Clock::now() < deadline) {
    try {
      read_all(fd, buffer, 1, Clock::now() + 100ms);
    } catch (const SocketError& e) {
      if (e.kind() == SocketError::Kind::kClosed) return true;
    }
  }
  return false;
}

std::string hello(const std::string& token) {
  return wire::FrameWriter()
      .u8(static_cast<uint8_t>(wire::Op::kHello))
      .str(wire::kMagic)
      .str(token)
      .i64(-1)
      .finish();
}

}  // namespace

TEST_CASE("TcpStore: operations between clients, blocking get, timeouts", "[store][tcp]") {
  TcpStoreOptions server = client_of(0);
  server.is_server = true;
  TcpStore a(server);
  TcpStore b(client_of(a.port()));
  a.set("k", "v");
  CHECK(b.get("k") == "v");
  CHECK(b.add("n", 2) == 2);
  CHECK(a.add("n", 3) == 5);
  CHECK(a.check({"k", "n"}));
  CHECK_FALSE(a.check({"k", "zz"}));
  std::thread late([&] {
    std::this_thread::sleep_for(100ms);
    a.set("late", std::string(100000, 'x'));
  });
  CHECK(b.get("late").size() == 100000);
  late.join();
  try {
    b.wait({"k", "absent"}, 100ms);
    FAIL("wait returned");
  } catch (const StoreTimeout& e) {
    CHECK(e.missing_keys() == std::vector<std::string>{"absent"});
  }
  // The connection stays usable after a timeout.
  CHECK(b.get("k") == "v");
  CHECK(b.remove("k"));
  CHECK_FALSE(a.check({"k"}));
  CHECK_THROWS_WITH(a.add("late", 1), Contains("not a counter"));
}

TEST_CASE("TcpStore: clients retry until the server appears", "[store][tcp]") {
  const int port = pick_free_port();
  std::thread server_thread;
  std::unique_ptr<TcpStore> server;
  server_thread = std::thread([&] {
    std::this_thread::sleep_for(300ms);
    TcpStoreOptions o = client_of(port);
    o.is_server = true;
    server = std::make_unique<TcpStore>(o);
    server->set("ready", "1");
  });
  TcpStore client(client_of(port));
  CHECK(client.get("ready") == "1");
  server_thread.join();
}

TEST_CASE("TcpStore: no server gives a clear error after the timeout", "[store][tcp]") {
  TcpStoreOptions o = client_of(pick_free_port());
  o.timeout = 300ms;
  try {
    TcpStore store(o);
    FAIL("connected to nothing");
  } catch (const ds::Error& e) {
    CHECK_THAT(e.what(), Contains("could not reach the store at 127.0.0.1:"));
    CHECK_THAT(e.hint(), Contains("rank 0 hosts the store"));
  }
}

TEST_CASE("TcpStore: a wrong token is rejected with a reason", "[store][tcp]") {
  TcpStoreOptions server = client_of(0);
  server.is_server = true;
  TcpStore a(server);
  try {
    TcpStore intruder(client_of(a.port(), "wrong"));
    FAIL("connected with a wrong token");
  } catch (const ds::UsageError& e) {
    CHECK_THAT(e.what(), Contains("rejected") && Contains("wrong run token"));
    CHECK_THAT(e.hint(), Contains("DS_RUN_TOKEN"));
  }
  a.set("still", "works");
  CHECK(a.get("still") == "works");
  CHECK(a.server()->stats().dropped >= 1);
}

TEST_CASE("TcpStore server: strangers are dropped and the run is served throughout",
          "[store][tcp]") {
  TcpStoreServerOptions options;
  options.token = kToken;
  options.auth_timeout = 300ms;
  TcpStoreServer server(options);
  const int port = server.port();
  TcpStore good(client_of(port));
  good.set("before", "1");

  // A legitimate client keeps working from another thread during the whole attack.
  std::atomic<bool> attacking{true};
  std::atomic<int> served{0};
  std::thread worker([&] {
    TcpStore mine(client_of(port));
    do {
      mine.add("counter", 1);
      ++served;
    } while (attacking);
  });
  while (served == 0) std::this_thread::sleep_for(1ms);

  std::mt19937 rng(42);
  SECTION("random bytes") {
    for (int i = 0; i < 20; ++i) {
      Fd fd = raw_connect(port);
      std::string junk(1 + rng() % 2000, '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      try {
        send_bytes(fd.get(), junk);
      } catch (const SocketError&) {
        // the server may hang up before everything is sent
      }
      CHECK(closed_by_server(fd.get()));
    }
  }
  SECTION("oversized frame announced") {
    Fd fd = raw_connect(port);
    send_bytes(fd.get(), std::string("\xff\xff\xff\x7f", 4));
    CHECK(closed_by_server(fd.get()));
    // Authenticated clients are limited too: a frame above 16 MiB ends the connection.
    Fd authed = raw_connect(port);
    send_bytes(authed.get(), hello(kToken));
    char reply[5];
    read_all(authed.get(), reply, 5, Clock::now() + 5s);
    send_bytes(authed.get(), std::string("\x01\x00\x00\x02", 4));  // 32 MiB
    CHECK(closed_by_server(authed.get()));
  }
  SECTION("truncated frames and half-open connections") {
    std::vector<Fd> idle;
    for (int i = 0; i < 10; ++i) {
      Fd fd = raw_connect(port);
      const std::string h = hello(kToken);
      send_bytes(fd.get(), h.substr(0, h.size() / 2));  // half a hello, then silence
      idle.push_back(std::move(fd));
    }
    for (int i = 0; i < 10; ++i) idle.push_back(raw_connect(port));  // nothing at all
    for (auto& fd : idle) CHECK(closed_by_server(fd.get()));         // dropped at the auth deadline
  }
  SECTION("wrong tokens, bad magic, requests before hello, port scans") {
    for (int i = 0; i < 10; ++i) {
      Fd wrong = raw_connect(port);
      send_bytes(wrong.get(), hello("guess" + std::to_string(i)));
      CHECK(closed_by_server(wrong.get()));
      Fd early = raw_connect(port);
      send_bytes(early.get(), wire::FrameWriter().u8(2).str("k").str("v").finish());
      CHECK(closed_by_server(early.get()));
      Fd scan = raw_connect(port);
      scan.reset();
    }
  }
  SECTION("an authenticated client that sends garbage is dropped alone") {
    Fd fd = raw_connect(port);
    send_bytes(fd.get(), hello(kToken));
    send_bytes(fd.get(), wire::FrameWriter().u8(99).finish());  // unknown opcode
    CHECK(closed_by_server(fd.get()));
    Fd fd2 = raw_connect(port);
    send_bytes(fd2.get(), hello(kToken));
    send_bytes(fd2.get(), wire::FrameWriter().u8(2).str("k").finish());  // set without value
    CHECK(closed_by_server(fd2.get()));
  }

  attacking = false;
  worker.join();
  CHECK(good.get("counter") == std::to_string(served.load()));
  CHECK(good.get("before") == "1");
  good.set("after", "2");
  CHECK(good.get("after") == "2");
  CHECK(server.stats().dropped > 0);
}

TEST_CASE("TcpStore server: a client that closes is reported gone", "[store][tcp]") {
  TcpStoreOptions server = client_of(0);
  server.is_server = true;
  server.rank = 0;
  TcpStore a(server);
  {
    TcpStoreOptions o = client_of(a.port());
    o.rank = 3;
    TcpStore b(o);
    b.set("x", "1");
  }
  a.wait({gone_rank_key(3)}, 5s);
  CHECK_FALSE(a.check({gone_rank_key(0)}));
}

TEST_CASE("rendezvous: 200 clients meet through one server", "[store][tcp]") {
  TcpStoreOptions server = client_of(0);
  server.is_server = true;
  server.rank = 0;
  TcpStore root(server);
  constexpr int kRanks = 200;
  std::vector<std::thread> threads;
  std::atomic<int> met{0};
  for (int r = 1; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      TcpStoreOptions o = client_of(root.port());
      o.rank = r;
      TcpStore mine(o);
      rendezvous(mine, r, kRanks, 30s);
      ++met;
    });
  }
  rendezvous(root, 0, kRanks, 30s);
  for (auto& t : threads) t.join();
  CHECK(met == kRanks - 1);
}
