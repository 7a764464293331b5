#include "zero/grad_reduce.h"

#include <algorithm>
#include <cstdlib>

#include "util/error.h"
#include "zero/step_timer.h"

namespace ds::zero {

using tensor::DType;

ReducePlan ReducePlan::from_config(const config::DsConfig& ds, DType storage, int world) {
  ReducePlan p;
  switch (ds.communication_data_type) {
    case config::CommDataType::kFp32:
      p.wire = DType::kF32;
      break;
    case config::CommDataType::kFp16:
      p.wire = DType::kF16;
      break;
    case config::CommDataType::kBf16:
      p.wire = DType::kBF16;
      break;
    case config::CommDataType::kDefault:
      p.wire = storage;
      break;
  }
  const bool average = !ds.gradient_allreduce_sum;
  const double n = world;
  if (ds.prescale_gradients) {
    p.pre = static_cast<float>(1.0 / n);
  } else if (average && ds.gradient_predivide_factor == 1.0) {
    // NCCL averages a 16-bit type by multiplying each element by 1/N rounded to that type
    // (bf16(1/3) = 0.334, 0.2 % high); only a power of two survives the rounding. Otherwise the
    // 1/N is applied in fp32 as the gradients are cast to the wire, before a sum.
    const bool exact_in_16_bits = (world & (world - 1)) == 0;
    if (tensor::dtype_size(p.wire) == 2 && !exact_in_16_bits) {
      p.pre = static_cast<float>(1.0 / n);
    } else {
      p.op = Reduction::kMean;
    }
  } else {
    const double f = ds.gradient_predivide_factor;
    p.pre = static_cast<float>(1.0 / f);
    if (average && f != n) p.post = static_cast<float>(f / n);
  }
  return p;
}

std::vector<std::vector<int>> group_layers(const Partition& part, const std::vector<int>& layers,
                                           int64_t bucket_elements) {
  std::vector<std::vector<int>> buckets;
  int64_t filled = 0;
  for (int l : layers) {
    const int64_t n = part.layers[l].padded;
    const bool consecutive = !buckets.empty() && std::abs(buckets.back().back() - l) == 1;
    if (!consecutive || filled + n > bucket_elements) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(l);
    filled += n;
  }
  for (std::vector<int>& b : buckets) std::sort(b.begin(), b.end());
  return buckets;
}

BucketReducer::BucketReducer(DpComm& comm, tensor::Ops& ops, const Partition& part,
                             const ReducePlan& plan, int64_t largest_bucket, bool overlap,
                             double& comm_seconds, Deliver deliver)
    : comm_(comm),
      ops_(ops),
      part_(part),
      plan_(plan),
      overlap_(overlap),
      comm_seconds_(comm_seconds),
      largest_bucket_(largest_bucket),
      deliver_(std::move(deliver)) {
  piece_ = ops_.allocate(tensor::dtype_size(plan.wire) * (largest_bucket / part.world),
                         tensor::MemoryCategory::kCommunication);
}

void BucketReducer::start(const std::vector<int>& bucket, const void* source, DType dtype) {
  finish();
  const int64_t base = part_.layers[bucket.front()].full_offset;
  int64_t piece_total = 0;
  for (int l : bucket) piece_total += part_.layers[l].own.size;
  const void* wire = source;
  if (bucket.size() > 1 || dtype != plan_.wire || plan_.pre != 1.0f) {
    const size_t wire_size = tensor::dtype_size(plan_.wire);
    if (packed_.empty()) {
      packed_ = ops_.allocate(wire_size * largest_bucket_, tensor::MemoryCategory::kCommunication);
    }
    char* out = static_cast<char*>(packed_.data());
    const auto* in = static_cast<const char*>(source);
    for (int r = 0; r < part_.world; ++r) {
      for (int l : bucket) {
        const LayerShard& s = part_.layers[l];
        const int64_t from = s.full_offset - base + r * s.own.size;
        ops_.convert_scaled(out, plan_.wire, in + tensor::dtype_size(dtype) * from, dtype,
                            s.own.size, plan_.pre);
        out += wire_size * s.own.size;
      }
    }
    wire = packed_.data();
  }
  layers_ = &bucket;
  {
    ScopedTimer timer(comm_seconds_);
    op_ = comm_.reduce_scatter(wire, piece_.data(), plan_.wire, piece_total, plan_.op,
                               overlap_ ? Mode::kAsync : Mode::kBlocking);
  }
  if (!overlap_) finish();
}

void BucketReducer::finish() {
  if (!op_) return;
  {
    ScopedTimer timer(comm_seconds_);
    op_->wait();
  }
  op_.reset();
  const size_t wire_size = tensor::dtype_size(plan_.wire);
  const auto* piece = static_cast<const char*>(piece_.data());
  for (int l : *layers_) {
    deliver_(l, piece, plan_.wire, plan_.post);
    piece += wire_size * part_.layers[l].own.size;
  }
}

}  // namespace ds::zero
