#include "zero/process_group_comm.h"

#include <cstring>

namespace ds::zero {

using comm::ReduceOp;
using tensor::DType;
using tensor::Tensor;

ProcessGroupComm::ProcessGroupComm(std::shared_ptr<comm::ProcessGroup> group)
    : group_(std::move(group)) {}

void* ProcessGroupComm::scratch(size_t bytes) {
  if (scratch_.size() < bytes)
    scratch_ = tensor::Buffer(bytes, tensor::MemoryCategory::kCommunication);
  return scratch_.data();
}

void ProcessGroupComm::allreduce_mean(float* data, int64_t n) {
  Tensor t = Tensor::wrap(data, {n}, DType::kF32);
  group_->allreduce(t, ReduceOp::kAvg);
}

void ProcessGroupComm::reduce_scatter_mean(const float* full, float* out, int64_t piece) {
  const Tensor input = Tensor::wrap(const_cast<float*>(full), {piece * size()}, DType::kF32);
  Tensor output = Tensor::wrap(out, {piece}, DType::kF32);
  group_->reduce_scatter(output, input, ReduceOp::kAvg);
}

namespace {
struct WorkOp final : PendingOp {
  explicit WorkOp(comm::WorkPtr w) : work(std::move(w)) {}
  void wait() override { work->wait(); }
  comm::WorkPtr work;
};
}  // namespace

std::unique_ptr<PendingOp> ProcessGroupComm::reduce_scatter_mean_async(const float* full,
                                                                       float* out, int64_t piece) {
  const Tensor input = Tensor::wrap(const_cast<float*>(full), {piece * size()}, DType::kF32);
  Tensor output = Tensor::wrap(out, {piece}, DType::kF32);
  return std::make_unique<WorkOp>(group_->reduce_scatter(output, input, ReduceOp::kAvg, true));
}

void ProcessGroupComm::allgather(const void* piece, void* out, DType dtype, int64_t n) {
  const size_t bytes = tensor::dtype_size(dtype) * static_cast<size_t>(n);
  // The engine gathers in place (the piece sits at this rank's block of `out`); give the
  // backend a separate input so that it never reads what it is writing.
  void* input = scratch(bytes);
  std::memcpy(input, piece, bytes);
  const Tensor in = Tensor::wrap(input, {n}, dtype);
  Tensor output = Tensor::wrap(out, {n * size()}, dtype);
  group_->allgather(output, in);
}

double ProcessGroupComm::allreduce_sum(double value) {
  // No f64 on the wire, and an fp32 sum would lose the low bits of losses and squared
  // norms: gather every rank's double as raw bytes and add them here, in rank order, so
  // that every rank gets the same exact-as-double sum.
  const int n = size();
  auto* all = static_cast<double*>(scratch(sizeof(double) * (n + 1)));
  double* mine = all + n;
  *mine = value;
  const Tensor in = Tensor::wrap(mine, {2}, DType::kF32);
  Tensor out = Tensor::wrap(all, {2 * n}, DType::kF32);
  group_->allgather(out, in);
  double sum = 0;
  for (int r = 0; r < n; ++r) sum += all[r];
  return sum;
}

bool ProcessGroupComm::allreduce_any(bool value) {
  float flag = value ? 1.0f : 0.0f;
  Tensor t = Tensor::wrap(&flag, {1}, DType::kF32);
  group_->allreduce(t, ReduceOp::kMax);
  return flag != 0.0f;
}

}  // namespace ds::zero
