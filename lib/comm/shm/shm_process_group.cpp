#include "comm/shm/shm_process_group.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

#include "comm/host_identity.h"
#include "comm/reduce_kernels.h"
#include "util/log.h"

namespace ds::comm {

using shm::Counter;
using shm::kSlots;
using shm::RankControl;

namespace {

std::string random_hex() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

// Splits `len` elements into n shares, each a multiple of 16 elements (whole cache lines for
// the 4-byte case) so that two ranks never write the same line.
struct Shares {
  size_t per;
  size_t len;
  size_t lo(int j) const { return std::min(len, per * static_cast<size_t>(j)); }
  size_t hi(int j) const { return std::min(len, per * static_cast<size_t>(j + 1)); }
};

Shares split(size_t len, int n) {
  size_t per = (len + static_cast<size_t>(n) - 1) / static_cast<size_t>(n);
  per = (per + 15) / 16 * 16;
  return {per, len};
}

}  // namespace

std::shared_ptr<ShmProcessGroup> ShmProcessGroup::create(GroupContext context, std::string* why) {
  Store& store = *context.store;
  const int n = context.size;
  // Rank 0 picks the chunk sizes and publishes them with the segment's name, so the ranks
  // cannot disagree on the layout.
  const size_t chunk =
      context.shm_chunk_bytes > 0 ? context.shm_chunk_bytes : shm::default_chunk_bytes(n);
  shm::Layout layout(n, chunk, shm::default_p2p_chunk_bytes(n));
  ShmSegment segment;
  std::string mine = "ok";
  try {
    if (context.rank == 0) {
      const std::string name = fmt::format("/dstrain-{}-{}", ::getpid(), random_hex());
      segment = ShmSegment::create(name, layout.total);
      auto* header = reinterpret_cast<shm::Header*>(segment.data());
      header->magic = shm::kMagic;
      header->size = static_cast<uint32_t>(n);
      header->chunk_bytes = static_cast<uint32_t>(layout.chunk);
      header->p2p_chunk_bytes = static_cast<uint32_t>(layout.p2p_chunk);
      store.set("shm/segment", fmt::format("{} {} {}", name, layout.chunk, layout.p2p_chunk));
    } else {
      const std::string published = store.get("shm/segment");
      if (published.starts_with("!")) {
        mine = published;
      } else {
        char name[256] = {};
        size_t chunk0 = 0, p2p0 = 0;
        if (std::sscanf(published.c_str(), "%255s %zu %zu", name, &chunk0, &p2p0) != 3) {
          throw Error(fmt::format("unexpected shared memory description '{}'", published));
        }
        layout = shm::Layout(n, chunk0, p2p0);
        segment = ShmSegment::open(name, layout.total);
        const auto* header = reinterpret_cast<const shm::Header*>(segment.data());
        if (header->magic != shm::kMagic || header->size != static_cast<uint32_t>(n) ||
            header->chunk_bytes != layout.chunk) {
          throw Error("shared memory segment has an unexpected layout (mixed dstrain builds?)");
        }
      }
    }
  } catch (const Error& e) {
    mine = std::string("!") + e.what();
    if (context.rank == 0) store.set("shm/segment", mine);
  }
  if (mine == "ok") {
    auto* rc = reinterpret_cast<RankControl*>(segment.data() + layout.ranks_off) + context.rank;
    rc->pid = ::getpid();
    rc->start_time = process_start_time(rc->pid);
  }
  store.set(fmt::format("shm/attached/{}", context.rank), mine);

  std::string failure;
  for (int r = 0; r < n; ++r) {
    const std::string status = store.get(fmt::format("shm/attached/{}", r));
    if (status != "ok" && failure.empty())
      failure = fmt::format("rank {}: {}", r, status.substr(1));
  }
  // Everyone has it mapped (or gave up): the name is no longer needed.
  segment.unlink();
  if (!failure.empty()) {
    if (why != nullptr) *why = failure;
    return nullptr;
  }
  return std::shared_ptr<ShmProcessGroup>(
      new ShmProcessGroup(std::move(context), std::move(segment), layout));
}

ShmProcessGroup::ShmProcessGroup(GroupContext context, ShmSegment segment, shm::Layout layout)
    : CpuProcessGroup(std::move(context)), segment_(std::move(segment)), layout_(layout) {
  auto* header = reinterpret_cast<shm::Header*>(segment_.data());
  sync_ = std::make_unique<shm::Sync>(header, &control(0), this->context());
  p2p_ = std::make_unique<shm::P2p>(segment_.data(), layout_, *sync_, this->context());
}

ShmProcessGroup::~ShmProcessGroup() {
  stop_executor();
  p2p_.reset();
}

RankControl& ShmProcessGroup::control(int rank) const {
  return reinterpret_cast<RankControl*>(segment_.data() + layout_.ranks_off)[rank];
}

char* ShmProcessGroup::in_slot(int rank, uint64_t step) const {
  return segment_.data() + layout_.in_off +
         (static_cast<size_t>(rank) * kSlots + step % kSlots) * layout_.chunk;
}

char* ShmProcessGroup::out_slot(uint64_t step) const {
  return segment_.data() + layout_.out_off + (step % kSlots) * layout_.chunk;
}

uint64_t ShmProcessGroup::signature(Kind kind, size_t count, tensor::DType dtype, int extra) {
  return (static_cast<uint64_t>(kind) << 56) | (static_cast<uint64_t>(dtype) << 48) |
         (static_cast<uint64_t>(extra & 0xff) << 40) | (count & ((1ULL << 40) - 1));
}

uint64_t ShmProcessGroup::begin_step(uint64_t sig) {
  const uint64_t step = ++step_;
  if (step > kSlots) wait_for(&RankControl::done, step - kSlots, -1, "collective");
  control(rank()).signature[step % kSlots].store(sig, std::memory_order_relaxed);
  return step;
}

void ShmProcessGroup::mark(Counter RankControl::*which, uint64_t step) {
  (control(rank()).*which).value.store(step, std::memory_order_release);
  sync_->ring();
}

void ShmProcessGroup::wait_for(Counter RankControl::*which, uint64_t step, int only_rank,
                               const char* what) {
  const int n = size();
  int next = 0;  // ranks below this one are known to be there
  sync_->wait(
      [&]() -> int {
        if (only_rank >= 0) {
          return (control(only_rank).*which).value.load(std::memory_order_acquire) >= step
                     ? -1
                     : only_rank;
        }
        for (; next < n; ++next) {
          if ((control(next).*which).value.load(std::memory_order_acquire) < step) return next;
        }
        return -1;
      },
      what);
}

void ShmProcessGroup::check_signatures(uint64_t step, uint64_t sig, int only_rank,
                                       const char* what) {
  static constexpr const char* kNames[] = {"?",         "allreduce", "reduce_scatter",
                                           "allgather", "broadcast", "barrier"};
  for (int r = 0; r < size(); ++r) {
    if (only_rank >= 0 && r != only_rank) continue;
    const uint64_t theirs = control(r).signature[step % kSlots].load(std::memory_order_relaxed);
    if (theirs == sig) continue;
    const auto describe = [](uint64_t s) {
      const auto kind = std::min<uint64_t>(s >> 56, 5);
      return fmt::format("{} of {} {} elements", kNames[kind], s & ((1ULL << 40) - 1),
                         tensor::dtype_name(static_cast<tensor::DType>((s >> 48) & 0xff)));
    };
    throw Error(fmt::format("{} on group '{}': rank {} issued {} while this rank issued {}", what,
                            name(), context().global_rank(r), describe(theirs), describe(sig)),
                "every rank must issue the group's collectives in the same order, with the "
                "same sizes and types");
  }
}

void ShmProcessGroup::run_allreduce(TensorRef t, ReduceOp op) {
  const size_t esize = tensor::dtype_size(t.dtype);
  const size_t per_step = layout_.chunk / esize;
  const int n = size();
  const int me = rank();
  const uint64_t sig = signature(Kind::kAllreduce, t.count, t.dtype, static_cast<int>(op));
  auto* data = static_cast<char*>(t.data);
  std::vector<const void*> inputs(static_cast<size_t>(n));
  for (size_t begin = 0; begin < t.count; begin += per_step) {
    const Shares shares = split(std::min(per_step, t.count - begin), n);
    char* chunk = data + begin * esize;
    const uint64_t step = begin_step(sig);
    char* staged = in_slot(me, step);
    for (int j = 0; j < n; ++j) {
      if (j == me) continue;
      std::memcpy(staged + shares.lo(j) * esize, chunk + shares.lo(j) * esize,
                  (shares.hi(j) - shares.lo(j)) * esize);
    }
    mark(&RankControl::published, step);
    wait_for(&RankControl::published, step, -1, "allreduce");
    check_signatures(step, sig, -1, "allreduce");

    const size_t lo = shares.lo(me);
    for (int j = 0; j < n; ++j) {
      inputs[static_cast<size_t>(j)] = (j == me ? chunk : in_slot(j, step)) + lo * esize;
    }
    // This rank's share of the result goes to its own tensor and, for the others, to the
    // shared output slot, in one pass.
    char* result = out_slot(step);
    reduce_inputs(chunk + lo * esize, inputs.data(), n, shares.hi(me) - lo, t.dtype, op, n,
                  result + lo * esize);
    mark(&RankControl::reduced, step);
    for (int k = 1; k < n; ++k) {
      const int j = (me + k) % n;
      wait_for(&RankControl::reduced, step, j, "allreduce");
      std::memcpy(chunk + shares.lo(j) * esize, result + shares.lo(j) * esize,
                  (shares.hi(j) - shares.lo(j)) * esize);
    }
    mark(&RankControl::done, step);
  }
}

void ShmProcessGroup::run_reduce_scatter(TensorRef out, TensorRef in, ReduceOp op) {
  const size_t esize = tensor::dtype_size(out.dtype);
  const int n = size();
  const int me = rank();
  const size_t per_step = std::max<size_t>(1, layout_.chunk / (esize * static_cast<size_t>(n)));
  const size_t block = out.count;
  const uint64_t sig = signature(Kind::kReduceScatter, out.count, out.dtype, static_cast<int>(op));
  const auto* src = static_cast<const char*>(in.data);
  std::vector<const void*> inputs(static_cast<size_t>(n));
  for (size_t begin = 0; begin < block; begin += per_step) {
    const size_t len = std::min(per_step, block - begin);
    const uint64_t step = begin_step(sig);
    char* staged = in_slot(me, step);
    for (int j = 0; j < n; ++j) {
      if (j == me) continue;
      std::memcpy(staged + static_cast<size_t>(j) * per_step * esize,
                  src + (static_cast<size_t>(j) * block + begin) * esize, len * esize);
    }
    mark(&RankControl::published, step);
    wait_for(&RankControl::published, step, -1, "reduce_scatter");
    check_signatures(step, sig, -1, "reduce_scatter");
    for (int j = 0; j < n; ++j) {
      inputs[static_cast<size_t>(j)] =
          j == me ? src + (static_cast<size_t>(me) * block + begin) * esize
                  : in_slot(j, step) + static_cast<size_t>(me) * per_step * esize;
    }
    reduce_inputs(static_cast<char*>(out.data) + begin * esize, inputs.data(), n, len, out.dtype,
                  op, n);
    mark(&RankControl::done, step);
  }
}

void ShmProcessGroup::run_allgather(TensorRef out, TensorRef in) {
  const size_t esize = tensor::dtype_size(in.dtype);
  const int n = size();
  const int me = rank();
  const size_t per_step = layout_.chunk / esize;
  const size_t block = in.count;
  const uint64_t sig = signature(Kind::kAllgather, in.count, in.dtype, 0);
  const auto* src = static_cast<const char*>(in.data);
  auto* dst = static_cast<char*>(out.data);
  for (size_t begin = 0; begin < block; begin += per_step) {
    const size_t len = std::min(per_step, block - begin);
    const uint64_t step = begin_step(sig);
    std::memcpy(in_slot(me, step), src + begin * esize, len * esize);
    mark(&RankControl::published, step);
    char* own = dst + (static_cast<size_t>(me) * block + begin) * esize;
    if (own != src + begin * esize) std::memmove(own, src + begin * esize, len * esize);
    for (int k = 1; k < n; ++k) {
      const int j = (me + k) % n;
      wait_for(&RankControl::published, step, j, "allgather");
      check_signatures(step, sig, j, "allgather");
      std::memcpy(dst + (static_cast<size_t>(j) * block + begin) * esize, in_slot(j, step),
                  len * esize);
    }
    mark(&RankControl::done, step);
  }
}

void ShmProcessGroup::run_broadcast(TensorRef t, int root) {
  const size_t esize = tensor::dtype_size(t.dtype);
  const size_t per_step = layout_.chunk / esize;
  const uint64_t sig = signature(Kind::kBroadcast, t.count, t.dtype, root);
  auto* data = static_cast<char*>(t.data);
  for (size_t begin = 0; begin < t.count; begin += per_step) {
    const size_t len = std::min(per_step, t.count - begin);
    const uint64_t step = begin_step(sig);
    if (rank() == root) {
      std::memcpy(in_slot(root, step), data + begin * esize, len * esize);
      mark(&RankControl::published, step);
    } else {
      mark(&RankControl::published, step);
      wait_for(&RankControl::published, step, root, "broadcast");
      check_signatures(step, sig, root, "broadcast");
      std::memcpy(data + begin * esize, in_slot(root, step), len * esize);
    }
    mark(&RankControl::done, step);
  }
}

void ShmProcessGroup::run_barrier() {
  const uint64_t sig = signature(Kind::kBarrier, 0, tensor::DType::kF32, 0);
  const uint64_t step = begin_step(sig);
  mark(&RankControl::published, step);
  wait_for(&RankControl::published, step, -1, "barrier");
  check_signatures(step, sig, -1, "barrier");
  mark(&RankControl::done, step);
}

WorkPtr ShmProcessGroup::send_impl(TensorRef t, int dst, int tag, bool async_op) {
  auto work = p2p_->send(t, dst, tag);
  if (async_op) return work;
  work->wait();
  return completed_work();
}

WorkPtr ShmProcessGroup::recv_impl(TensorRef t, int src, int tag, bool async_op) {
  auto work = p2p_->recv(t, src, tag);
  if (async_op) return work;
  work->wait();
  return completed_work();
}

}  // namespace ds::comm
