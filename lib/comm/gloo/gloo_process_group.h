// The Gloo backend: CPU tensors over Gloo's TCP transport, for groups that span hosts (and on
// request, DS_COMM_BACKEND=gloo). Allreduce, allgather, broadcast and barrier are Gloo's own
// algorithms; reduce_scatter is a ring over Gloo's point-to-point buffers; bf16 and f16 travel
// as fp32 so that they accumulate in fp32. Every operation carries the group's timeout, so a
// dead or stuck peer fails the call instead of hanging it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "comm/cpu_process_group.h"

namespace gloo {
class Context;
}

namespace ds::comm {

class GlooProcessGroup : public CpuProcessGroup {
 public:
  // Connects the full mesh with every rank of the group (through context.store).
  explicit GlooProcessGroup(GroupContext context);
  ~GlooProcessGroup() override;

  std::string_view backend() const override { return "gloo"; }

 protected:
  void run_allreduce(TensorRef tensor, ReduceOp op) override;
  void run_reduce_scatter(TensorRef output, TensorRef input, ReduceOp op) override;
  void run_allgather(TensorRef output, TensorRef input) override;
  void run_broadcast(TensorRef tensor, int root) override;
  void run_barrier() override;
  WorkPtr send_impl(TensorRef tensor, int dst, int tag, bool async_op) override;
  WorkPtr recv_impl(TensorRef tensor, int src, int tag, bool async_op) override;

 private:
  // Runs a Gloo call, turning its exceptions into an Error that names the group and the
  // rank that died when the store knows it.
  template <typename F>
  void guarded(std::string_view op, F&& body);
  uint32_t next_tag() { return ++tag_; }
  // fp32 scratch for 16-bit reductions and the reduce_scatter ring; grows, never shrinks.
  float* scratch(size_t floats, size_t which);
  uint64_t p2p_slot(int peer, int tag, bool sending);
  WorkPtr p2p(TensorRef t, int peer, int tag, bool sending, bool async_op);

  std::shared_ptr<::gloo::Context> gloo_;
  uint32_t tag_ = 0;
  std::vector<float> scratch_[2];
  std::mutex p2p_mutex_;
  std::map<std::tuple<int, int, bool>, uint32_t> p2p_sequence_;
};

}  // namespace ds::comm
