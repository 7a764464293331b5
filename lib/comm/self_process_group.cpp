#include "comm/self_process_group.h"

#include <cstring>

#include "comm/reduce_kernels.h"

namespace ds::comm {

SelfProcessGroup::SelfProcessGroup(GroupContext context) : CpuProcessGroup(std::move(context)) {
  DS_CHECK(size() == 1, "a self group has one rank, not {}", size());
}

void SelfProcessGroup::run_allreduce(TensorRef t, ReduceOp op) {
  // Through the reduction kernel, so that rounding matches the multi-rank backends.
  const void* inputs[] = {t.data};
  reduce_inputs(t.data, inputs, 1, t.count, t.dtype, op, 1);
}

void SelfProcessGroup::run_reduce_scatter(TensorRef out, TensorRef in, ReduceOp op) {
  const void* inputs[] = {in.data};
  reduce_inputs(out.data, inputs, 1, out.count, out.dtype, op, 1);
}

void SelfProcessGroup::run_allgather(TensorRef out, TensorRef in) {
  if (out.data != in.data) std::memmove(out.data, in.data, in.bytes());
}

}  // namespace ds::comm
