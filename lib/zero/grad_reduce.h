// Averaging gradients over data-parallel ranks the way a ds_config asks for it.
//
// ReducePlan: on what dtype gradients travel (communication_data_type; by default the
// storage dtype, as DeepSpeed sends bf16/fp16 gradients as they are) and where the 1/N
// goes (prescale_gradients, gradient_predivide_factor, gradient_allreduce_op).
//
// BucketReducer: reduce-scatters groups of layers ("buckets" of at most
// reduce_bucket_size elements) with one collective each. A bucket's layers are packed
// rank-major on the wire — piece r of every layer, then piece r+1 — so that the
// collective hands every rank exactly its own piece of each layer.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "config/ds_config.h"
#include "tensor/memory.h"
#include "tensor/ops.h"
#include "zero/dp_comm.h"
#include "zero/shard.h"

namespace ds::zero {

struct ReducePlan {
  tensor::DType wire = tensor::DType::kF32;
  float pre = 1;   // gradients are multiplied by this before the collective
  float post = 1;  // and the reduced result by this after it
  Reduction op = Reduction::kSum;

  // DeepSpeed's rules: prescale → ×1/N before a sum; otherwise ×1/predivide before and
  // ×predivide/N after (no 1/N with gradient_allreduce_op "sum"). The plain mean is left
  // to the backend (kMean: it divides its fp32 accumulator and rounds once), except on a 16-bit
  // wire over a world that is not a power of two, where NCCL's 1/N would be rounded: ×1/N before.
  static ReducePlan from_config(const config::DsConfig& ds, tensor::DType storage, int world);
  bool scales() const { return pre != 1.0f || post != 1.0f; }
};

// Neighbouring layers, in the order `layers` lists them (ascending, or descending for a
// backward walk), grouped so that each group's padded elements stay within
// `bucket_elements` (a larger layer is a group of its own). Each group is ascending.
std::vector<std::vector<int>> group_layers(const Partition& part, const std::vector<int>& layers,
                                           int64_t bucket_elements);

class BucketReducer {
 public:
  // Receives layer `layer`'s reduced piece (own.size elements of `dtype`); the caller
  // multiplies by `scale` (the plan's post factor) as it stores it.
  using Deliver =
      std::function<void(int layer, const void* piece, tensor::DType dtype, float scale)>;

  // `largest_bucket`: the most padded elements a bucket holds. With `overlap`, start()
  // returns while the bucket travels and the next start() or finish() collects it.
  // `deliver` stores each reduced piece (what the ZeRO stage keeps of it).
  // `ops` runs where the gradients live (the buffers here are allocated there too).
  BucketReducer(DpComm& comm, tensor::Ops& ops, const Partition& part, const ReducePlan& plan,
                int64_t largest_bucket, bool overlap, double& comm_seconds, Deliver deliver);

  // Reduces the ascending layers of `bucket`, whose padded gradients lie back to back
  // from `source` (elements of `dtype`, the layout of a full buffer from the first layer
  // on). Without packing (one layer already on the wire dtype), `source` itself travels
  // and must stay untouched until the bucket is delivered; so must `bucket`.
  void start(const std::vector<int>& bucket, const void* source, tensor::DType dtype);
  // Waits for the bucket in flight, if any, and delivers it. start() does this first,
  // so one bucket travels at a time: the backends run collectives in order anyway.
  void finish();

 private:
  DpComm& comm_;
  tensor::Ops& ops_;
  const Partition& part_;
  ReducePlan plan_;
  bool overlap_;
  double& comm_seconds_;
  tensor::Buffer packed_;  // the rank-major wire copy of a bucket (allocated when first needed)
  tensor::Buffer piece_;   // this rank's reduced pieces of the bucket's layers
  int64_t largest_bucket_;
  Deliver deliver_;
  // The bucket in flight.
  const std::vector<int>* layers_ = nullptr;
  std::unique_ptr<PendingOp> op_;
};

}  // namespace ds::zero
