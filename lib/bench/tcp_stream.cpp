#include "bench/tcp_stream.h"

#include <sys/socket.h>

#include <vector>

#include "comm/socket.h"

namespace ds::bench {
namespace {

constexpr size_t kWrite = 1u << 20;

}  // namespace

TcpStreamResult measure_tcp_stream(comm::Store& store, int rank, const std::string& address,
                                   size_t bytes, int repeats) {
  TcpStreamResult result;
  result.address = address;
  if (rank > 1) return result;
  const auto deadline = [] { return comm::Clock::now() + std::chrono::seconds(120); };
  std::vector<char> buffer(kWrite, 1);
  if (rank == 0) {
    comm::Fd listener = comm::listen_tcp(0, 4);
    store.set("bench/tcp_stream", std::to_string(comm::listening_port(listener.get())));
    comm::Fd conn(::accept(listener.get(), nullptr, nullptr));
    if (!conn.valid()) throw Error("accepting the TCP stream connection failed");
    double seconds = 0;
    for (int pass = 0; pass <= repeats; ++pass) {
      const auto start = comm::Clock::now();
      for (size_t got = 0; got < bytes; got += kWrite) {
        comm::read_all(conn.get(), buffer.data(), std::min(kWrite, bytes - got), deadline());
      }
      if (pass > 0) seconds += std::chrono::duration<double>(comm::Clock::now() - start).count();
      const char ack = 1;
      comm::write_all(conn.get(), &ack, 1, deadline());
    }
    result.gbps = static_cast<double>(bytes) * repeats / seconds / 1e9;
  } else {
    const int port = std::stoi(store.get("bench/tcp_stream"));
    comm::Fd conn = comm::connect_tcp(address, port, deadline());
    for (int pass = 0; pass <= repeats; ++pass) {
      for (size_t sent = 0; sent < bytes; sent += kWrite) {
        comm::write_all(conn.get(), buffer.data(), std::min(kWrite, bytes - sent), deadline());
      }
      // Pass by pass, so the receiver times only the stream, not a backlog.
      char ack = 0;
      comm::read_all(conn.get(), &ack, 1, deadline());
    }
  }
  return result;
}

}  // namespace ds::bench
