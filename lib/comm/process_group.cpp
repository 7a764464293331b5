#include "comm/process_group.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <thread>

#include "comm/prefix_store.h"
#include "comm/rendezvous.h"

namespace ds::comm {

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
  }
  return "?";
}

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kShm:
      return "shm";
    case Backend::kGloo:
      return "gloo";
    case Backend::kNccl:
      return "nccl";
  }
  return "?";
}

Backend parse_backend(std::string_view text, std::string_view source) {
  for (Backend b : {Backend::kAuto, Backend::kShm, Backend::kGloo, Backend::kNccl}) {
    if (text == backend_name(b)) return b;
  }
  throw UsageError(fmt::format("{}='{}' is not a communication backend", source, text),
                   "use auto, shm, gloo or nccl");
}

int GroupContext::global_rank(int group_rank) const {
  return global_ranks.empty() ? group_rank : global_ranks.at(static_cast<size_t>(group_rank));
}

TensorRef TensorRef::of(const tensor::Tensor& t) {
  return {const_cast<void*>(t.raw()), static_cast<size_t>(t.numel()), t.dtype(), t.device()};
}

ProcessGroup::ProcessGroup(GroupContext context) : context_(std::move(context)) {
  DS_CHECK(context_.size >= 1 && context_.rank >= 0 && context_.rank < context_.size,
           "rank {} outside a group of {}", context_.rank, context_.size);
  DS_CHECK(context_.global_ranks.empty() ||
               context_.global_ranks.size() == static_cast<size_t>(context_.size),
           "group {} lists {} ranks for size {}", context_.name, context_.global_ranks.size(),
           context_.size);
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::check_tensor(std::string_view op, const tensor::Tensor& t) const {
  if (t.numel() > 0 && t.raw() == nullptr) {
    throw Error(fmt::format("{} on group '{}': tensor {} has no memory", op, name(), t.str()));
  }
  if (!accepts(t.device())) {
    throw Error(fmt::format("{} on group '{}': backend {} cannot move a tensor on {}", op, name(),
                            backend(), t.device().str()),
                "use nccl for GPU tensors and shm or gloo for CPU tensors (DS_COMM_BACKEND)");
  }
}

void ProcessGroup::check_peer(std::string_view op, int peer, std::string_view role) const {
  if (peer < 0 || peer >= size()) {
    throw Error(fmt::format("{} on group '{}': {} {} is not a rank of this group of {}", op, name(),
                            role, peer, size()));
  }
}

WorkPtr ProcessGroup::allreduce(tensor::Tensor& tensor, ReduceOp op, bool async_op) {
  check_tensor("allreduce", tensor);
  return allreduce_impl(TensorRef::of(tensor), op, async_op);
}

WorkPtr ProcessGroup::reduce_scatter(tensor::Tensor& output, const tensor::Tensor& input,
                                     ReduceOp op, bool async_op) {
  check_tensor("reduce_scatter", output);
  check_tensor("reduce_scatter", input);
  if (input.dtype() != output.dtype() || input.numel() != output.numel() * size()) {
    throw Error(
        fmt::format("reduce_scatter on group '{}': input {} must hold {} blocks of the "
                    "output {}",
                    name(), input.str(), size(), output.str()));
  }
  return reduce_scatter_impl(TensorRef::of(output), TensorRef::of(input), op, async_op);
}

WorkPtr ProcessGroup::allgather(tensor::Tensor& output, const tensor::Tensor& input,
                                bool async_op) {
  check_tensor("allgather", output);
  check_tensor("allgather", input);
  if (input.dtype() != output.dtype() || output.numel() != input.numel() * size()) {
    throw Error(
        fmt::format("allgather on group '{}': output {} must hold {} blocks of the "
                    "input {}",
                    name(), output.str(), size(), input.str()));
  }
  return allgather_impl(TensorRef::of(output), TensorRef::of(input), async_op);
}

WorkPtr ProcessGroup::broadcast(tensor::Tensor& tensor, int root, bool async_op) {
  check_tensor("broadcast", tensor);
  check_peer("broadcast", root, "root");
  return broadcast_impl(TensorRef::of(tensor), root, async_op);
}

WorkPtr ProcessGroup::send(const tensor::Tensor& tensor, int dst, int tag, bool async_op) {
  check_tensor("send", tensor);
  check_peer("send", dst, "destination");
  if (dst == rank())
    throw Error(fmt::format("send on group '{}': a rank cannot send to itself", name()));
  if (tag < 0) throw Error(fmt::format("send on group '{}': tag {} is negative", name(), tag));
  return send_impl(TensorRef::of(tensor), dst, tag, async_op);
}

WorkPtr ProcessGroup::recv(tensor::Tensor& tensor, int src, int tag, bool async_op) {
  check_tensor("recv", tensor);
  check_peer("recv", src, "source");
  if (src == rank())
    throw Error(fmt::format("recv on group '{}': a rank cannot receive from itself", name()));
  if (tag < 0) throw Error(fmt::format("recv on group '{}': tag {} is negative", name(), tag));
  return recv_impl(TensorRef::of(tensor), src, tag, async_op);
}

WorkPtr ProcessGroup::barrier(bool async_op) { return barrier_impl(async_op); }

WorkPtr ProcessGroup::allreduce_impl(TensorRef, ReduceOp, bool) { unsupported("allreduce"); }
WorkPtr ProcessGroup::reduce_scatter_impl(TensorRef, TensorRef, ReduceOp, bool) {
  unsupported("reduce_scatter");
}
WorkPtr ProcessGroup::allgather_impl(TensorRef, TensorRef, bool) { unsupported("allgather"); }
WorkPtr ProcessGroup::broadcast_impl(TensorRef, int, bool) { unsupported("broadcast"); }
WorkPtr ProcessGroup::send_impl(TensorRef, int, int, bool) { unsupported("send"); }
WorkPtr ProcessGroup::recv_impl(TensorRef, int, int, bool) { unsupported("recv"); }
WorkPtr ProcessGroup::barrier_impl(bool) { unsupported("barrier"); }

void ProcessGroup::unsupported(std::string_view op) const {
  throw Error(fmt::format("backend {} does not support {}", backend(), op),
              "choose another backend with DS_COMM_BACKEND");
}

Error ProcessGroup::failure(std::string_view op, const std::string& detail) const {
  std::vector<int> members;
  for (int r = 0; r < size(); ++r) {
    if (r != rank()) members.push_back(context_.global_rank(r));
  }
  std::string culprit;
  if (context_.root_store) {
    // The server notices a closed connection within a poll round; give it a moment.
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    try {
      while (true) {
        const std::vector<int> gone = gone_ranks(*context_.root_store, members);
        if (!gone.empty()) {
          culprit = fmt::format("{} exited or was killed (its store connection closed)",
                                format_ranks(gone));
          break;
        }
        if (Clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    } catch (const Error&) {
      culprit = "the store is unreachable too, so rank 0 (which hosts it) has probably died";
    }
  }
  const std::string what =
      culprit.empty() ? fmt::format("{} on group '{}' failed: {}", op, name(), detail)
                      : fmt::format("{} on group '{}' failed: {}; {}", op, name(), culprit, detail);
  return Error(what,
               "look at the named rank's log for why it stopped; a hung peer is reported "
               "after the collective timeout (DS_COLLECTIVE_TIMEOUT, seconds)");
}

std::shared_ptr<ProcessGroup> ProcessGroup::new_group(const std::vector<int>& ranks,
                                                      std::string label) {
  return new_group(ranks, std::move(label), context_.backend, context_.cuda_device);
}

std::shared_ptr<ProcessGroup> ProcessGroup::new_group(const std::vector<int>& ranks,
                                                      std::string label, Backend backend,
                                                      int cuda_device) {
  if (ranks.empty() || !std::is_sorted(ranks.begin(), ranks.end()) ||
      std::adjacent_find(ranks.begin(), ranks.end()) != ranks.end() || ranks.front() < 0 ||
      ranks.back() >= size()) {
    throw Error(
        fmt::format("new_group on group '{}': ranks [{}] must be ascending, distinct "
                    "ranks of this group of {}",
                    name(), fmt::join(ranks, ", "), size()));
  }
  const int id = ++subgroups_;
  const auto me = std::find(ranks.begin(), ranks.end(), rank());
  if (me == ranks.end()) return nullptr;

  GroupContext child = context_;
  child.name = label.empty() ? fmt::format("{}.{}", name(), id) : std::move(label);
  child.backend = backend;
  child.cuda_device = cuda_device;
  child.rank = static_cast<int>(me - ranks.begin());
  child.size = static_cast<int>(ranks.size());
  child.global_ranks.clear();
  for (int r : ranks) child.global_ranks.push_back(context_.global_rank(r));
  // Keyed by position in the parent's sequence, so the same call on every rank meets.
  child.store = std::make_shared<PrefixStore>(fmt::format("sub{}", id), context_.store);
  return create_process_group(std::move(child));
}

}  // namespace ds::comm
