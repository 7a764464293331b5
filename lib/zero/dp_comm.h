// The data-parallel collectives the ZeRO engine needs, on flat buffers of any dtype.
// One rank (SingleRankComm) makes every collective the identity; ProcessGroupComm
// (process_group_comm.h) runs them over a comm::ProcessGroup.
#pragma once

#include <cstdint>
#include <memory>

#include "tensor/dtype.h"

namespace ds::zero {

// A collective in flight: wait() finishes it and rethrows its error.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual void wait() = 0;
};

enum class Reduction { kSum, kMean };

// kBlocking returns a finished op; kAsync returns at once, and the buffers must stay
// untouched until wait().
enum class Mode { kBlocking, kAsync };

class DpComm {
 public:
  virtual ~DpComm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data = the sum or mean over ranks of data (n elements of dtype), in place.
  virtual void allreduce(void* data, tensor::DType dtype, int64_t n, Reduction op) = 0;
  // `full` holds size() * piece elements; out = the reduction over ranks of this rank's
  // piece. The backends accumulate 16-bit dtypes in fp32 and round once.
  virtual std::unique_ptr<PendingOp> reduce_scatter(const void* full, void* out,
                                                    tensor::DType dtype, int64_t piece,
                                                    Reduction op, Mode mode) = 0;
  // out (size() * n elements of dtype) = every rank's n-element piece, in rank order.
  // A blocking gather may have `piece` inside `out` at this rank's place; an async one
  // may not.
  virtual std::unique_ptr<PendingOp> allgather(const void* piece, void* out, tensor::DType dtype,
                                               int64_t n, Mode mode) = 0;
  virtual double allreduce_sum(double value) = 0;
  virtual bool allreduce_any(bool value) = 0;
};

// An op that finished when it was started.
std::unique_ptr<PendingOp> finished_op();

class SingleRankComm final : public DpComm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce(void*, tensor::DType, int64_t, Reduction) override {}
  std::unique_ptr<PendingOp> reduce_scatter(const void* full, void* out, tensor::DType dtype,
                                            int64_t piece, Reduction op, Mode mode) override;
  std::unique_ptr<PendingOp> allgather(const void* piece, void* out, tensor::DType dtype, int64_t n,
                                       Mode mode) override;
  double allreduce_sum(double value) override { return value; }
  bool allreduce_any(bool value) override { return value; }
};

}  // namespace ds::zero
