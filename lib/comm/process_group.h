// ProcessGroup: the one collective interface (DESIGN.md), shaped like c10d's Backend.hpp.
// The public calls check their arguments and then call a backend's *_impl; a backend that
// lacks an operation inherits the default, which throws "backend X does not support Y".
//
// Every rank of a group must issue the group's collectives in the same order (as with NCCL
// and Gloo). Point-to-point messages between two ranks match in order per tag.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "comm/store.h"
#include "comm/work.h"
#include "tensor/tensor.h"

namespace ds::comm {

enum class ReduceOp : uint8_t { kSum, kAvg, kMax };
std::string_view reduce_op_name(ReduceOp op);  // "sum", "avg", "max"

// Which implementation moves the bytes. kAuto: NCCL for GPU groups; shared memory when every
// rank of a CPU group is on this host; else Gloo over TCP.
enum class Backend : uint8_t { kAuto, kShm, kGloo, kNccl };
std::string_view backend_name(Backend backend);
// "auto", "shm", "gloo", "nccl"; throws UsageError naming `source` (e.g. DS_COMM_BACKEND).
Backend parse_backend(std::string_view text, std::string_view source);

// Everything a backend needs to set a group up.
struct GroupContext {
  std::string name = "world";  // for messages: "world", "data.0", "pipe.1"
  int rank = 0;                // in this group
  int size = 1;
  std::vector<int> global_ranks;      // group rank -> world rank; empty: the identity
  std::shared_ptr<Store> store;       // this group's own key space
  std::shared_ptr<Store> root_store;  // the run's store without prefixes (gone-rank keys)
  Milliseconds timeout = std::chrono::seconds(300);  // per collective
  Backend backend = Backend::kAuto;                  // requested; subgroups request the same
  std::string master_addr = "127.0.0.1";  // Gloo binds to the interface that reaches it ...
  std::string socket_ifname;              // ... unless DS_SOCKET_IFNAME names one
  int cuda_device = -1;                   // NCCL: this rank's GPU
  size_t shm_chunk_bytes = 0;             // shm: bytes per rank per pipelined step; 0: default

  int global_rank(int group_rank) const;
};

// A tensor as the backends see it: contiguous memory, element count, type, place.
struct TensorRef {
  void* data = nullptr;
  size_t count = 0;
  tensor::DType dtype = tensor::DType::kF32;
  tensor::Device device;

  size_t bytes() const { return count * tensor::dtype_size(dtype); }
  static TensorRef of(const tensor::Tensor& t);
};

class ProcessGroup {
 public:
  explicit ProcessGroup(GroupContext context);
  virtual ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  virtual std::string_view backend() const = 0;
  int rank() const { return context_.rank; }
  int size() const { return context_.size; }
  const std::string& name() const { return context_.name; }
  const GroupContext& context() const { return context_; }

  // In place over every rank's tensor. Avg divides the sum by the group size; bf16 and f16
  // are accumulated in fp32 and rounded once (NCCL: as NCCL does).
  WorkPtr allreduce(tensor::Tensor& tensor, ReduceOp op = ReduceOp::kSum, bool async_op = false);
  // `input` holds size() equal blocks; rank r receives the reduction of every rank's block r.
  WorkPtr reduce_scatter(tensor::Tensor& output, const tensor::Tensor& input,
                         ReduceOp op = ReduceOp::kSum, bool async_op = false);
  // `output` holds size() blocks, block r being rank r's `input`.
  WorkPtr allgather(tensor::Tensor& output, const tensor::Tensor& input, bool async_op = false);
  WorkPtr broadcast(tensor::Tensor& tensor, int root, bool async_op = false);
  // Point to point. On NCCL a group's ops run in order on one stream and a send or receive
  // waits there for its peer's match, asynchronous or not: two ranks that both send to each
  // other first deadlock, so peers order their sends and receives (the pipeline's schedule
  // does). Gloo and shm have no such rule.
  WorkPtr send(const tensor::Tensor& tensor, int dst, int tag = 0, bool async_op = false);
  WorkPtr recv(tensor::Tensor& tensor, int src, int tag = 0, bool async_op = false);
  WorkPtr barrier(bool async_op = false);

  // A group of some of this group's ranks (group ranks, ascending, no repeats), with the same
  // backend request. Like c10d's new_group, every rank of this group calls it with the same
  // list in the same order; ranks outside the list get nullptr. `label` names it in messages.
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, std::string label = "");
  // The same with a backend request and GPU of its own: an NCCL twin of a CPU group, for
  // collectives on GPU buffers beside the host's.
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, std::string label,
                                          Backend backend, int cuda_device);

 protected:
  virtual WorkPtr allreduce_impl(TensorRef tensor, ReduceOp op, bool async_op);
  virtual WorkPtr reduce_scatter_impl(TensorRef output, TensorRef input, ReduceOp op,
                                      bool async_op);
  virtual WorkPtr allgather_impl(TensorRef output, TensorRef input, bool async_op);
  virtual WorkPtr broadcast_impl(TensorRef tensor, int root, bool async_op);
  virtual WorkPtr send_impl(TensorRef tensor, int dst, int tag, bool async_op);
  virtual WorkPtr recv_impl(TensorRef tensor, int src, int tag, bool async_op);
  virtual WorkPtr barrier_impl(bool async_op);
  // Whether this backend moves tensors that live on `device`.
  virtual bool accepts(const tensor::Device& device) const = 0;

  [[noreturn]] void unsupported(std::string_view op) const;
  // The error to throw when `op` failed with `detail`: names the group, and the rank that
  // died when the store knows one (its store connection closed).
  Error failure(std::string_view op, const std::string& detail) const;

 private:
  void check_tensor(std::string_view op, const tensor::Tensor& t) const;
  void check_peer(std::string_view op, int peer, std::string_view role) const;

  GroupContext context_;
  int subgroups_ = 0;
};

// Creates the backend for `context` (resolving kAuto; see Backend). Collective over the
// group's ranks: every member calls it.
std::shared_ptr<ProcessGroup> create_process_group(GroupContext context);

}  // namespace ds::comm
