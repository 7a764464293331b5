#include "comm/tcp_store.h"

#include <thread>

#include "comm/store_wire.h"

namespace ds::comm {
namespace {

using wire::FrameReader;
using wire::FrameWriter;
using wire::Op;
using wire::Reply;

// Replies to quick requests come back in milliseconds; this only bounds a dead connection.
constexpr Milliseconds kQuickReply = std::chrono::seconds(60);
constexpr Milliseconds kGrace = std::chrono::seconds(10);

uint8_t op(Op o) { return static_cast<uint8_t>(o); }

}  // namespace

TcpStore::TcpStore(TcpStoreOptions options)
    : Store(options.timeout),
      host_(std::move(options.host)),
      port_(options.port),
      token_(std::move(options.token)),
      rank_(options.rank),
      linger_(options.linger) {
  if (options.is_server) {
    server_ = std::make_unique<TcpStoreServer>(TcpStoreServerOptions{port_, token_});
    port_ = server_->port();
  }
  connect(options.timeout);
}

TcpStore::~TcpStore() {
  fd_.reset();
  if (server_) server_->wait_for_ranks_to_leave(linger_);
  server_.reset();
}

void TcpStore::connect(Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto backoff = Milliseconds(20);
  std::string last_error;
  while (true) {
    try {
      fd_ = connect_tcp(host_, port_, std::min(deadline, Clock::now() + std::chrono::seconds(10)));
      break;
    } catch (const SocketError& e) {
      last_error = e.what();
    }
    if (Clock::now() + backoff >= deadline) {
      throw Error(fmt::format("could not reach the store at {}:{} within {} ({})", host_, port_,
                              format_duration(timeout), last_error),
                  "rank 0 hosts the store: check that rank 0 started, that MASTER_ADDR and "
                  "MASTER_PORT point at its host, and that no firewall blocks the port");
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, Milliseconds(1000));
  }
  std::string reply;
  try {
    reply =
        request(FrameWriter().u8(op(Op::kHello)).str(wire::kMagic).str(token_).i64(rank_).finish(),
                Milliseconds(0));
  } catch (const Error&) {
    throw Error(fmt::format("the service at {}:{} closed the connection during the handshake",
                            host_, port_),
                "MASTER_PORT may belong to another program, or the store rejected this client; "
                "check MASTER_ADDR, MASTER_PORT and DS_RUN_TOKEN");
  }
  FrameReader r(reply);
  const auto kind = static_cast<Reply>(r.u8());
  if (kind == Reply::kReject) {
    fd_.reset();
    throw UsageError(
        fmt::format("the store at {}:{} rejected this process: {}", host_, port_, r.str()),
        "every rank must get the same DS_RUN_TOKEN (dslaunch sets it for you)");
  }
  if (kind != Reply::kOk) throw Error("unexpected reply to the store handshake");
}

void TcpStore::lost(const std::string& why) {
  fd_.reset();
  throw Error(fmt::format("lost the connection to the store at {}:{}: {}", host_, port_, why),
              "rank 0 hosts the store; it has probably exited or been killed: see its log");
}

std::string TcpStore::request(std::string frame, Milliseconds wait) {
  if (!fd_.valid()) lost("an earlier request failed");
  try {
    write_all(fd_.get(), frame.data(), frame.size(), Clock::now() + kQuickReply);
    const auto deadline = Clock::now() + wait + (wait.count() > 0 ? kGrace : kQuickReply);
    char len_bytes[4];
    read_all(fd_.get(), len_bytes, 4, deadline);
    const uint32_t len = wire::read_u32_le(len_bytes);
    if (len > wire::kMaxFrameBytes) lost("reply frame too large");
    std::string payload(len, '\0');
    read_all(fd_.get(), payload.data(), len, deadline);
    return payload;
  } catch (const SocketError& e) {
    lost(e.what());
  }
}

void TcpStore::set(const std::string& key, const std::string& value) {
  std::lock_guard lock(mutex_);
  const std::string reply =
      request(FrameWriter().u8(op(Op::kSet)).str(key).str(value).finish(), Milliseconds(0));
  if (static_cast<Reply>(FrameReader(reply).u8()) != Reply::kOk) lost("bad reply to set");
}

std::string TcpStore::get(const std::string& key, Milliseconds timeout) {
  std::lock_guard lock(mutex_);
  const std::string reply =
      request(FrameWriter().u8(op(Op::kGet)).str(key).i64(timeout.count()).finish(), timeout);
  FrameReader r(reply);
  const auto kind = static_cast<Reply>(r.u8());
  if (kind == Reply::kTimeout) throw StoreTimeout({key}, timeout);
  if (kind != Reply::kValue) lost("bad reply to get");
  return r.str();
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  std::lock_guard lock(mutex_);
  const std::string reply =
      request(FrameWriter().u8(op(Op::kAdd)).str(key).i64(delta).finish(), Milliseconds(0));
  FrameReader r(reply);
  const auto kind = static_cast<Reply>(r.u8());
  if (kind == Reply::kError) throw Error(r.str());
  if (kind != Reply::kInt) lost("bad reply to add");
  return r.i64();
}

bool TcpStore::check(const std::vector<std::string>& keys) {
  std::lock_guard lock(mutex_);
  const std::string reply =
      request(FrameWriter().u8(op(Op::kCheck)).strings(keys).finish(), Milliseconds(0));
  FrameReader r(reply);
  if (static_cast<Reply>(r.u8()) != Reply::kBool) lost("bad reply to check");
  return r.i64() != 0;
}

void TcpStore::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  std::lock_guard lock(mutex_);
  const std::string reply =
      request(FrameWriter().u8(op(Op::kWait)).strings(keys).i64(timeout.count()).finish(), timeout);
  FrameReader r(reply);
  const auto kind = static_cast<Reply>(r.u8());
  if (kind == Reply::kTimeout) throw StoreTimeout(r.strings(), timeout);
  if (kind != Reply::kOk) lost("bad reply to wait");
}

bool TcpStore::remove(const std::string& key) {
  std::lock_guard lock(mutex_);
  const std::string reply =
      request(FrameWriter().u8(op(Op::kRemove)).str(key).finish(), Milliseconds(0));
  FrameReader r(reply);
  if (static_cast<Reply>(r.u8()) != Reply::kBool) lost("bad reply to remove");
  return r.i64() != 0;
}

}  // namespace ds::comm
