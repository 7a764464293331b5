#include "comm/nccl/nccl_process_group.h"

#include <fmt/format.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "comm/nccl/nccl_check.h"

namespace ds::comm {
namespace {

ncclDataType_t nccl_type(tensor::DType dtype) {
  switch (dtype) {
    case tensor::DType::kF32:
      return ncclFloat32;
    case tensor::DType::kBF16:
      return ncclBfloat16;
    case tensor::DType::kF16:
      return ncclFloat16;
  }
  return ncclFloat32;
}

// NCCL's reduction for `op` over `ranks` ranks. On one rank every reduction is the identity, and
// NCCL up to 2.29.2 (fixed by 2.29.7) gets an average wrong there: its one-rank kernel (onerank.cu)
// gives each block a segment of the elements rounded down, so an out-of-place average whose count
// the blocks do not split evenly leaves its last elements unwritten (seen with PyTorch's NCCL on
// an H100: a reduce_scatter of 2^20 + 3 floats left the last 3 at zero). A sum on one rank is a
// plain copy.
ncclRedOp_t nccl_op(ReduceOp op, int ranks) {
  if (ranks == 1) return ncclSum;
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
  }
  return ncclSum;
}

class NcclWork : public Work {
 public:
  NcclWork(NcclProcessGroup* group, std::string op, cudaEvent_t event)
      : group_(group), op_(std::move(op)), event_(event) {}
  ~NcclWork() override { cudaEventDestroy(event_); }

  void wait(Milliseconds timeout) override {
    std::lock_guard lock(mutex_);
    if (done_) return;
    group_->wait_event(event_, op_, timeout);
    done_ = true;
  }
  bool is_completed() override {
    std::lock_guard lock(mutex_);
    return done_ || cudaEventQuery(event_) == cudaSuccess;
  }

 private:
  std::mutex mutex_;
  NcclProcessGroup* group_;  // the caller keeps the group alive while its work is pending
  std::string op_;
  cudaEvent_t event_;
  bool done_ = false;
};

// Set once any group of this process has aborted its communicator: the process is failing, and
// its other groups' peers may be gone too, so those are aborted rather than destroyed when they
// are released (ncclCommDestroy can wait for a peer that will never come; ncclCommAbort cannot).
std::atomic<bool> process_failing{false};

}  // namespace

NcclProcessGroup::NcclProcessGroup(GroupContext context) : ProcessGroup(std::move(context)) {
  const GroupContext& ctx = this->context();
  if (ctx.cuda_device < 0) {
    throw UsageError(
        fmt::format("group '{}' asks for NCCL but this rank has no GPU assigned", ctx.name),
        "run on a GPU node, or use DS_COMM_BACKEND=gloo");
  }
  // The library loaded may be older than the headers built against (a GPU machine's own NCCL).
  int version = 0;
  DS_NCCL_CHECK(ncclGetVersion(&version));
  if (version < NCCL_VERSION(2, 14, 0)) {
    throw UsageError(
        fmt::format("group '{}': the NCCL library loaded is version {}, older than "
                    "2.14, which non-blocking communicators need",
                    ctx.name, version),
        "put NCCL 2.14 or later first on LD_LIBRARY_PATH, or use DS_COMM_BACKEND=gloo");
  }
  DS_CUDA_CHECK(cudaSetDevice(ctx.cuda_device));
  try {
    DS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DS_CUDA_CHECK(cudaEventCreateWithFlags(&producer_ready_, cudaEventDisableTiming));
    DS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&barrier_value_), sizeof(float)));

    ncclUniqueId id;
    if (ctx.rank == 0) {
      DS_NCCL_CHECK(ncclGetUniqueId(&id));
      ctx.store->set("nccl/unique_id", std::string(reinterpret_cast<const char*>(&id), sizeof id));
    } else {
      const std::string bytes = ctx.store->get("nccl/unique_id");
      DS_CHECK(bytes.size() == sizeof id, "NCCL unique id of {} bytes", bytes.size());
      std::memcpy(&id, bytes.data(), sizeof id);
    }
    // Non-blocking init, so that a peer dying during setup times out instead of hanging.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    DS_NCCL_CHECK(ncclCommInitRankConfig(&comm_, ctx.size, id, ctx.rank, &config));
    wait_until_issued("NCCL communicator setup");
  } catch (...) {
    // No destructor runs for a constructor that throws; a half-made communicator is aborted.
    aborted_ = true;
    process_failing = true;
    release();
    throw;
  }
}

NcclProcessGroup::~NcclProcessGroup() { release(); }

void NcclProcessGroup::release() noexcept {
  if (comm_ != nullptr) {
    if (!aborted_ && !process_failing && finalized()) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  comm_ = nullptr;
  if (barrier_value_ != nullptr) cudaFree(barrier_value_);
  barrier_value_ = nullptr;
  if (producer_ready_ != nullptr) cudaEventDestroy(producer_ready_);
  producer_ready_ = nullptr;
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

// NCCL asks for ncclCommFinalize before ncclCommDestroy: it completes the operations still queued
// and lets the peers' proxies take their connections down together. A non-blocking communicator
// finalizes in the background; a peer that never does leaves it in progress until the collective
// timeout, and the caller then aborts rather than destroys.
bool NcclProcessGroup::finalized() noexcept {
  const ncclResult_t started = ncclCommFinalize(comm_);
  if (started != ncclSuccess && started != ncclInProgress) return false;
  return settled_state(Clock::now() + context().timeout) == ncclSuccess;
}

ncclResult_t NcclProcessGroup::settled_state(Clock::time_point deadline) noexcept {
  while (true) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
    if (query != ncclSuccess) return query;
    if (state != ncclInProgress || Clock::now() >= deadline) return state;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

void NcclProcessGroup::follow(cudaStream_t producer) {
  std::lock_guard lock(mutex_);
  producer_ = producer;
}

bool NcclProcessGroup::accepts(const tensor::Device& device) const {
  return device.type == tensor::DeviceType::kCuda && device.index == context().cuda_device;
}

void NcclProcessGroup::check_usable(std::string_view op) {
  if (aborted_) {
    throw Error(fmt::format("{} on group '{}': the NCCL communicator was aborted after an "
                            "earlier failure",
                            op, name()),
                "restart the run");
  }
}

void NcclProcessGroup::wait_event(cudaEvent_t event, std::string_view op, Milliseconds timeout) {
  // Overlapped work often ends soon after its wait begins, so the wait first polls without
  // sleeping: a sleep lasts at least the kernel's timer slack, 50 µs, which would be added to
  // every such wait. Past kSpinFor it sleeps between polls, leaving the core to other threads.
  constexpr auto kSpinFor = std::chrono::microseconds(200);
  constexpr auto kPollEvery = std::chrono::microseconds(100);
  const auto start = Clock::now();
  const Milliseconds limit = std::min(timeout, context().timeout);
  while (true) {
    // First: after an abort, the aborted kernels' events fire too, over results never made.
    check_usable(op);
    const cudaError_t state = cudaEventQuery(event);
    if (state == cudaSuccess) return;
    if (state != cudaErrorNotReady) DS_CUDA_CHECK(state);
    ncclResult_t async_error = ncclSuccess;
    DS_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async_error));
    const auto waited = Clock::now() - start;
    if ((async_error != ncclSuccess && async_error != ncclInProgress) || waited >= limit) {
      abort_and_throw(op, async_error, waited >= limit, limit);
    }
    if (waited < kSpinFor) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(kPollEvery);
    }
  }
}

void NcclProcessGroup::abort_and_throw(std::string_view op, ncclResult_t state, bool timed_out,
                                       Milliseconds limit) {
  aborted_ = true;
  process_failing = true;
  ncclCommAbort(comm_);  // frees the kernels stuck waiting for a peer
  comm_ = nullptr;
  throw failure(op, timed_out ? fmt::format("no progress within {}", format_duration(limit))
                              : std::string(ncclGetErrorString(state)));
}

// NCCL's non-blocking mode: a call (and the communicator's setup) has finished issuing its work
// once the async state leaves ncclInProgress.
void NcclProcessGroup::wait_until_issued(std::string_view op) {
  const ncclResult_t state = settled_state(Clock::now() + context().timeout);
  if (state != ncclSuccess) abort_and_throw(op, state, state == ncclInProgress, context().timeout);
}

template <typename Launch>
WorkPtr NcclProcessGroup::enqueue(std::string_view op, bool async_op, Launch&& launch) {
  std::lock_guard lock(mutex_);
  check_usable(op);
  DS_CUDA_CHECK(cudaSetDevice(context().cuda_device));
  // Order after the work the caller queued on the producer stream (which made the tensors),
  // without making that stream wait for us.
  DS_CUDA_CHECK(cudaEventRecord(producer_ready_, producer_));
  DS_CUDA_CHECK(cudaStreamWaitEvent(stream_, producer_ready_, 0));
  launch();
  // A non-blocking communicator may still be issuing the kernels when the call returns
  // (ncclInProgress): the event below must be recorded after them.
  wait_until_issued(op);
  cudaEvent_t done = nullptr;
  DS_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  DS_CUDA_CHECK(cudaEventRecord(done, stream_));
  auto work = std::make_shared<NcclWork>(this, fmt::format("{} on group '{}'", op, name()), done);
  if (async_op) return work;
  work->wait(Work::kNoTimeout);
  return completed_work();
}

WorkPtr NcclProcessGroup::allreduce_impl(TensorRef t, ReduceOp op, bool async_op) {
  return enqueue("allreduce", async_op, [&] {
    DS_NCCL_CHECK(ncclAllReduce(t.data, t.data, t.count, nccl_type(t.dtype), nccl_op(op, size()),
                                comm_, stream_));
  });
}

WorkPtr NcclProcessGroup::reduce_scatter_impl(TensorRef out, TensorRef in, ReduceOp op,
                                              bool async_op) {
  return enqueue("reduce_scatter", async_op, [&] {
    DS_NCCL_CHECK(ncclReduceScatter(in.data, out.data, out.count, nccl_type(out.dtype),
                                    nccl_op(op, size()), comm_, stream_));
  });
}

WorkPtr NcclProcessGroup::allgather_impl(TensorRef out, TensorRef in, bool async_op) {
  return enqueue("allgather", async_op, [&] {
    DS_NCCL_CHECK(ncclAllGather(in.data, out.data, in.count, nccl_type(in.dtype), comm_, stream_));
  });
}

WorkPtr NcclProcessGroup::broadcast_impl(TensorRef t, int root, bool async_op) {
  return enqueue("broadcast", async_op, [&] {
    DS_NCCL_CHECK(ncclBroadcast(t.data, t.data, t.count, nccl_type(t.dtype), root, comm_, stream_));
  });
}

// NCCL matches point-to-point messages by order alone; tags are accepted and not checked.
WorkPtr NcclProcessGroup::send_impl(TensorRef t, int dst, int, bool async_op) {
  return enqueue("send", async_op, [&] {
    DS_NCCL_CHECK(ncclSend(t.data, t.count, nccl_type(t.dtype), dst, comm_, stream_));
  });
}

WorkPtr NcclProcessGroup::recv_impl(TensorRef t, int src, int, bool async_op) {
  return enqueue("recv", async_op, [&] {
    DS_NCCL_CHECK(ncclRecv(t.data, t.count, nccl_type(t.dtype), src, comm_, stream_));
  });
}

WorkPtr NcclProcessGroup::barrier_impl(bool async_op) {
  return enqueue("barrier", async_op, [&] {
    DS_NCCL_CHECK(
        ncclAllReduce(barrier_value_, barrier_value_, 1, ncclFloat32, ncclSum, comm_, stream_));
  });
}

}  // namespace ds::comm
