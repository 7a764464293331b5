#include "zero/process_group_comm.h"

#include <vector>

#include "util/error.h"

namespace ds::zero {

using comm::ReduceOp;
using tensor::DType;
using tensor::Tensor;

ProcessGroupComm::ProcessGroupComm(std::shared_ptr<comm::ProcessGroup> group, tensor::Ops& ops)
    : group_(std::move(group)), ops_(ops) {}

void* ProcessGroupComm::scratch(size_t bytes) {
  if (scratch_.size() < bytes)
    scratch_ = ops_.allocate(bytes, tensor::MemoryCategory::kCommunication);
  return scratch_.data();
}

Tensor ProcessGroupComm::wrap(void* data, int64_t n, DType dtype) const {
  return Tensor::wrap(data, {n}, dtype, ops_.device());
}

namespace {

ReduceOp reduce_op(Reduction op) {
  return op == Reduction::kMean ? ReduceOp::kAvg : ReduceOp::kSum;
}

struct WorkOp final : PendingOp {
  explicit WorkOp(comm::WorkPtr w) : work(std::move(w)) {}
  // An op dropped unwaited (an error unwinding) must finish, or fail by the collective timeout,
  // before its buffers are freed: freeing GPU memory waits for the device with no timeout.
  ~WorkOp() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override {
    if (!work) return;
    comm::WorkPtr finishing = std::move(work);
    finishing->wait();
  }
  comm::WorkPtr work;
};

}  // namespace

void ProcessGroupComm::allreduce(void* data, DType dtype, int64_t n, Reduction op) {
  Tensor t = wrap(data, n, dtype);
  group_->allreduce(t, reduce_op(op));
}

std::unique_ptr<PendingOp> ProcessGroupComm::reduce_scatter(const void* full, void* out,
                                                            DType dtype, int64_t piece,
                                                            Reduction op, Mode mode) {
  const Tensor input = wrap(const_cast<void*>(full), piece * size(), dtype);
  Tensor output = wrap(out, piece, dtype);
  return std::make_unique<WorkOp>(
      group_->reduce_scatter(output, input, reduce_op(op), mode == Mode::kAsync));
}

std::unique_ptr<PendingOp> ProcessGroupComm::allgather(const void* piece, void* out, DType dtype,
                                                       int64_t n, Mode mode) {
  const size_t bytes = tensor::dtype_size(dtype) * static_cast<size_t>(n);
  const void* input = piece;
  const char* out_begin = static_cast<const char*>(out);
  const char* piece_at = static_cast<const char*>(piece);
  if (piece_at >= out_begin && piece_at < out_begin + bytes * size()) {
    // An in-place gather (the piece sits at this rank's block of `out`): give the backend
    // a separate input so that it never reads what it is writing.
    DS_CHECK(mode == Mode::kBlocking, "an async allgather cannot gather in place");
    void* copy = scratch(bytes);
    ops_.copy(copy, piece, bytes);
    input = copy;
  }
  const Tensor in = wrap(const_cast<void*>(input), n, dtype);
  Tensor output = wrap(out, n * size(), dtype);
  return std::make_unique<WorkOp>(group_->allgather(output, in, mode == Mode::kAsync));
}

double ProcessGroupComm::allreduce_sum(double value) {
  // No f64 on the wire, and an fp32 sum would lose the low bits of losses and squared
  // norms: gather every rank's double as raw bytes and add them here, in rank order, so
  // that every rank gets the same exact-as-double sum.
  const int n = size();
  auto* all = static_cast<double*>(scratch(sizeof(double) * (n + 1)));
  double* mine = all + n;
  ops_.upload(mine, &value, sizeof value);
  const Tensor in = wrap(mine, 2, DType::kF32);
  Tensor out = wrap(all, 2 * n, DType::kF32);
  group_->allgather(out, in);
  gathered_.resize(static_cast<size_t>(n));  // sized once: the group does not change
  ops_.download(gathered_.data(), all, sizeof(double) * gathered_.size());
  double sum = 0;
  for (double v : gathered_) sum += v;
  return sum;
}

bool ProcessGroupComm::allreduce_any(bool value) {
  float flag = value ? 1.0f : 0.0f;
  auto* slot = static_cast<float*>(scratch(sizeof flag));
  ops_.upload(slot, &flag, sizeof flag);
  Tensor t = wrap(slot, 1, DType::kF32);
  group_->allreduce(t, ReduceOp::kMax);
  ops_.download(&flag, slot, sizeof flag);
  return flag != 0.0f;
}

}  // namespace ds::zero
