// The data-parallel collectives the ZeRO engine needs, on flat buffers. One rank
// (SingleRankComm) makes every collective the identity; ProcessGroupComm
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

class DpComm {
 public:
  virtual ~DpComm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data = mean over ranks of data (fp32 gradients).
  virtual void allreduce_mean(float* data, int64_t n) = 0;
  // `full` holds size() * piece floats; out = the mean over ranks of this rank's piece.
  virtual void reduce_scatter_mean(const float* full, float* out, int64_t piece) = 0;
  // The same, started in the background; `full` and `out` must stay untouched until wait().
  virtual std::unique_ptr<PendingOp> reduce_scatter_mean_async(const float* full, float* out,
                                                               int64_t piece) = 0;
  // out (size() * n elements of dtype) = every rank's n-element piece, in rank order.
  // `piece` may lie inside `out` at this rank's place (an in-place gather).
  virtual void allgather(const void* piece, void* out, tensor::DType dtype, int64_t n) = 0;
  virtual double allreduce_sum(double value) = 0;
  virtual bool allreduce_any(bool value) = 0;
};

class SingleRankComm final : public DpComm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_mean(float*, int64_t) override {}
  void reduce_scatter_mean(const float* full, float* out, int64_t piece) override;
  std::unique_ptr<PendingOp> reduce_scatter_mean_async(const float* full, float* out,
                                                       int64_t piece) override;
  void allgather(const void* piece, void* out, tensor::DType dtype, int64_t n) override;
  double allreduce_sum(double value) override { return value; }
  bool allreduce_any(bool value) override { return value; }
};

}  // namespace ds::zero
