#include "comm/gloo/gloo_process_group.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>
#include <signal.h>

#include <cstring>
#include <mutex>

#include "comm/gloo/gloo_store.h"
#include "comm/prefix_store.h"
#include "comm/reduce_kernels.h"
#include "comm/socket.h"

namespace ds::comm {
namespace {

// Our own ring operations use slots under this prefix; Gloo's collectives use small prefixes
// and our point-to-point slots keep the top byte zero.
constexpr uint8_t kRingSlotPrefix = 0xd5;

void sum_f32(void* out, const void* a, const void* b, size_t n) {
  auto* o = static_cast<float*>(out);
  const auto* x = static_cast<const float*>(a);
  const auto* y = static_cast<const float*>(b);
  for (size_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
}

void max_f32(void* out, const void* a, const void* b, size_t n) {
  auto* o = static_cast<float*>(out);
  const auto* x = static_cast<const float*>(a);
  const auto* y = static_cast<const float*>(b);
  for (size_t i = 0; i < n; ++i) o[i] = (y[i] > x[i] || y[i] != y[i]) ? y[i] : x[i];
}

class GlooP2pWork : public Work {
 public:
  GlooP2pWork(std::unique_ptr<::gloo::transport::UnboundBuffer> buffer, bool sending,
              std::function<Error(const std::string&)> on_error, Milliseconds timeout,
              std::vector<char> dummy)
      : buffer_(std::move(buffer)),
        sending_(sending),
        on_error_(std::move(on_error)),
        timeout_(timeout),
        dummy_(std::move(dummy)) {}

  void wait(Milliseconds timeout) override {
    std::lock_guard lock(mutex_);
    if (done_) return;
    const Milliseconds limit = std::min(timeout, timeout_);
    try {
      const bool ok = sending_ ? buffer_->waitSend(limit) : buffer_->waitRecv(limit);
      if (!ok) throw Error("timed out");
    } catch (const std::exception& e) {
      throw on_error_(e.what());
    }
    done_ = true;
  }
  bool is_completed() override {
    std::lock_guard lock(mutex_);
    return done_;
  }

 private:
  std::mutex mutex_;
  std::unique_ptr<::gloo::transport::UnboundBuffer> buffer_;
  bool sending_;
  std::function<Error(const std::string&)> on_error_;
  Milliseconds timeout_;
  std::vector<char> dummy_;  // the byte a zero-length message carries
  bool done_ = false;
};

// Gloo writes to its sockets without MSG_NOSIGNAL, so a peer that dies mid-send would kill
// this process with SIGPIPE instead of failing the operation with a message naming the peer.
// Ignoring SIGPIPE (unless the program chose a handler) turns that into an EPIPE error.
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
  });
}

}  // namespace

GlooProcessGroup::GlooProcessGroup(GroupContext context) : CpuProcessGroup(std::move(context)) {
  ignore_sigpipe();
  const GroupContext& ctx = this->context();
  ::gloo::transport::tcp::attr attr;
  if (!ctx.socket_ifname.empty()) {
    attr.hostname = interface_address(ctx.socket_ifname);
  } else {
    attr.hostname = local_address_toward(ctx.master_addr);
  }
  try {
    auto device = ::gloo::transport::tcp::CreateDevice(attr);
    auto gloo = std::make_shared<::gloo::rendezvous::Context>(ctx.rank, ctx.size);
    gloo->setTimeout(ctx.timeout);
    GlooStore store(std::make_shared<PrefixStore>("gloo", ctx.store));
    gloo->connectFullMesh(store, device);
    gloo_ = std::move(gloo);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw failure("connecting Gloo", e.what());
  }
}

GlooProcessGroup::~GlooProcessGroup() { stop_executor(); }

template <typename F>
void GlooProcessGroup::guarded(std::string_view op, F&& body) {
  try {
    body();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw failure(op, e.what());
  }
}

float* GlooProcessGroup::scratch(size_t floats, size_t which) {
  if (scratch_[which].size() < floats) scratch_[which].resize(floats);
  return scratch_[which].data();
}

void GlooProcessGroup::run_allreduce(TensorRef t, ReduceOp op) {
  if (t.count == 0) return;
  float* values =
      t.dtype == tensor::DType::kF32 ? static_cast<float*>(t.data) : scratch(t.count, 0);
  if (t.dtype != tensor::DType::kF32) widen_to_f32(values, t.data, t.count, t.dtype);
  guarded("allreduce", [&] {
    ::gloo::AllreduceOptions opts(gloo_);
    opts.setOutput(values, t.count);
    opts.setReduceFunction(op == ReduceOp::kMax ? &max_f32 : &sum_f32);
    opts.setTag(next_tag());
    opts.setTimeout(context().timeout);
    ::gloo::allreduce(opts);
  });
  if (op == ReduceOp::kAvg) {
    const auto n = static_cast<float>(size());
    for (size_t i = 0; i < t.count; ++i) values[i] = values[i] / n;
  }
  if (t.dtype != tensor::DType::kF32) narrow_from_f32(t.data, values, t.count, t.dtype);
}

void GlooProcessGroup::run_reduce_scatter(TensorRef out, TensorRef in, ReduceOp op) {
  const size_t block = out.count;
  if (block == 0) return;
  const int n = size();
  const int me = rank();
  float* acc = scratch(block * static_cast<size_t>(n), 0);
  float* incoming = scratch(block, 1);
  widen_to_f32(acc, in.data, block * static_cast<size_t>(n), in.dtype);
  const size_t bytes = block * sizeof(float);
  const uint32_t tag = next_tag();
  guarded("reduce_scatter", [&] {
    auto send_buf = gloo_->createUnboundBuffer(acc, bytes * static_cast<size_t>(n));
    auto recv_buf = gloo_->createUnboundBuffer(incoming, bytes);
    const int next = (me + 1) % n;
    const int prev = (me + n - 1) % n;
    // Step k: pass the running sum of block (me-k-1) on, fold in block (me-k-2) from behind.
    // After n-1 steps this rank's block holds every rank's contribution.
    for (int k = 0; k + 1 < n; ++k) {
      const auto slot = ::gloo::Slot::build(kRingSlotPrefix, tag) + static_cast<uint8_t>(k);
      const auto send_block = static_cast<size_t>((me - k - 1 + 2 * n) % n);
      const auto recv_block = static_cast<size_t>((me - k - 2 + 2 * n) % n);
      send_buf->send(next, slot, send_block * bytes, bytes);
      recv_buf->recv(prev, slot, 0, bytes);
      if (!recv_buf->waitRecv(context().timeout) || !send_buf->waitSend(context().timeout)) {
        throw Error("timed out in the reduce_scatter ring");
      }
      float* target = acc + recv_block * block;
      if (op == ReduceOp::kMax) {
        max_f32(target, target, incoming, block);
      } else {
        sum_f32(target, target, incoming, block);
      }
    }
  });
  float* mine = acc + static_cast<size_t>(me) * block;
  if (op == ReduceOp::kAvg) {
    for (size_t i = 0; i < block; ++i) mine[i] = mine[i] / static_cast<float>(n);
  }
  narrow_from_f32(out.data, mine, block, out.dtype);
}

void GlooProcessGroup::run_allgather(TensorRef out, TensorRef in) {
  const size_t bytes = in.bytes();
  if (bytes == 0) return;
  auto* dst = static_cast<uint8_t*>(out.data);
  auto* own = dst + static_cast<size_t>(rank()) * bytes;
  guarded("allgather", [&] {
    ::gloo::AllgatherOptions opts(gloo_);
    // Gloo copies the input into this rank's block; in place, that block already holds it.
    if (own != in.data) opts.setInput(static_cast<uint8_t*>(in.data), bytes);
    opts.setOutput(dst, bytes * static_cast<size_t>(size()));
    opts.setTag(next_tag());
    opts.setTimeout(context().timeout);
    ::gloo::allgather(opts);
  });
}

void GlooProcessGroup::run_broadcast(TensorRef t, int root) {
  if (t.bytes() == 0) return;
  guarded("broadcast", [&] {
    ::gloo::BroadcastOptions opts(gloo_);
    opts.setOutput(static_cast<uint8_t*>(t.data), t.bytes());
    opts.setRoot(root);
    opts.setTag(next_tag());
    opts.setTimeout(context().timeout);
    ::gloo::broadcast(opts);
  });
}

void GlooProcessGroup::run_barrier() {
  guarded("barrier", [&] {
    ::gloo::BarrierOptions opts(gloo_);
    opts.setTag(next_tag());
    opts.setTimeout(context().timeout);
    ::gloo::barrier(opts);
  });
}

uint64_t GlooProcessGroup::p2p_slot(int peer, int tag, bool sending) {
  std::lock_guard lock(p2p_mutex_);
  const uint32_t seq = p2p_sequence_[{peer, tag, sending}]++;
  // The k-th message with a tag between two ranks meets the k-th receive of it.
  return (static_cast<uint64_t>(tag) << 24) | (seq & 0xffffffu);
}

WorkPtr GlooProcessGroup::p2p(TensorRef t, int peer, int tag, bool sending, bool async_op) {
  const char* what = sending ? "send" : "recv";
  std::vector<char> dummy;
  void* ptr = t.data;
  size_t bytes = t.bytes();
  if (bytes == 0) {  // Gloo cannot move nothing; an empty message carries one ignored byte
    dummy.assign(1, 0);
    ptr = dummy.data();
    bytes = 1;
  }
  std::unique_ptr<::gloo::transport::UnboundBuffer> buffer;
  const uint64_t slot = p2p_slot(peer, tag, sending);
  guarded(what, [&] {
    buffer = gloo_->createUnboundBuffer(ptr, bytes);
    if (sending) {
      buffer->send(peer, slot);
    } else {
      buffer->recv(peer, slot);
    }
  });
  auto on_error = [this, what, peer](const std::string& detail) {
    return failure(what, fmt::format("with rank {}: {}", context().global_rank(peer), detail));
  };
  auto work = std::make_shared<GlooP2pWork>(std::move(buffer), sending, on_error, context().timeout,
                                            std::move(dummy));
  if (async_op) return work;
  work->wait(Work::kNoTimeout);
  return completed_work();
}

WorkPtr GlooProcessGroup::send_impl(TensorRef t, int dst, int tag, bool async_op) {
  return p2p(t, dst, tag, true, async_op);
}

WorkPtr GlooProcessGroup::recv_impl(TensorRef t, int src, int tag, bool async_op) {
  return p2p(t, src, tag, false, async_op);
}

}  // namespace ds::comm
