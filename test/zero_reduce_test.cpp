// How gradients are grouped into buckets, packed for the wire and scaled: DeepSpeed's
// rules for communication_data_type, prescale_gradients and gradient_predivide_factor.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "config/model_config.h"
#include "config/train_config.h"
#include "model/gpt.h"
#include "tensor/dtype.h"
#include "zero/engine.h"
#include "zero/grad_reduce.h"

using namespace ds;
using tensor::DType;
using zero::ReducePlan;
using zero::Reduction;

namespace {

// A data-parallel group whose other ranks contribute nothing: reduce_scatter hands this
// rank its block of `full` as it is, and remembers what it was given.
class EchoComm final : public zero::DpComm {
 public:
  EchoComm(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce(void*, DType, int64_t, Reduction) override {}
  std::unique_ptr<zero::PendingOp> reduce_scatter(const void* full, void* out, DType dtype,
                                                  int64_t piece, Reduction, zero::Mode) override {
    const size_t bytes = tensor::dtype_size(dtype) * piece;
    sent.assign(static_cast<const char*>(full), static_cast<const char*>(full) + bytes * size_);
    std::memcpy(out, static_cast<const char*>(full) + bytes * rank_, bytes);
    return zero::finished_op();
  }
  std::unique_ptr<zero::PendingOp> allgather(const void*, void*, DType, int64_t,
                                             zero::Mode) override {
    return zero::finished_op();
  }
  double allreduce_sum(double v) override { return v; }
  bool allreduce_any(bool v) override { return v; }
  std::vector<char> sent;

 private:
  int rank_, size_;
};

config::DsConfig ds_config() { return {}; }

}  // namespace

TEST_CASE("the reduce plan follows DeepSpeed's averaging rules", "[zero][reduce]") {
  config::DsConfig ds = ds_config();
  SECTION("by default the backend takes the mean on the storage dtype") {
    const ReducePlan p = ReducePlan::from_config(ds, DType::kBF16, 4);
    CHECK(p.wire == DType::kBF16);
    CHECK(p.op == Reduction::kMean);
    CHECK_FALSE(p.scales());
  }
  SECTION("a 16-bit mean over a world that is not a power of two is scaled in fp32 first") {
    // NCCL would multiply by 1/3 rounded to bf16, 0.334.
    const ReducePlan p = ReducePlan::from_config(ds, DType::kBF16, 3);
    CHECK(p.op == Reduction::kSum);
    CHECK(p.pre == static_cast<float>(1.0 / 3.0));
    CHECK(p.post == 1.0f);
    CHECK(ReducePlan::from_config(ds, DType::kF16, 6).pre == static_cast<float>(1.0 / 6.0));
    CHECK(ReducePlan::from_config(ds, DType::kF32, 3).op == Reduction::kMean);
    CHECK(ReducePlan::from_config(ds, DType::kBF16, 8).op == Reduction::kMean);
  }
  SECTION("communication_data_type overrides the storage dtype") {
    ds.communication_data_type = config::CommDataType::kFp32;
    CHECK(ReducePlan::from_config(ds, DType::kF16, 2).wire == DType::kF32);
    ds.communication_data_type = config::CommDataType::kBf16;
    CHECK(ReducePlan::from_config(ds, DType::kF32, 2).wire == DType::kBF16);
  }
  SECTION("prescale_gradients divides by the world before a sum") {
    ds.prescale_gradients = true;
    const ReducePlan p = ReducePlan::from_config(ds, DType::kF32, 4);
    CHECK(p.op == Reduction::kSum);
    CHECK(p.pre == 0.25f);
    CHECK(p.post == 1.0f);
  }
  SECTION("gradient_predivide_factor splits 1/N into before and after") {
    ds.gradient_predivide_factor = 2.0;
    const ReducePlan p = ReducePlan::from_config(ds, DType::kF32, 8);
    CHECK(p.op == Reduction::kSum);
    CHECK(p.pre == 0.5f);
    CHECK(p.post == 0.25f);
    // A factor equal to the world size leaves nothing for after.
    CHECK(ReducePlan::from_config(ds, DType::kF32, 2).post == 1.0f);
  }
  SECTION("gradient_allreduce_op sum never divides by the world") {
    ds.gradient_allreduce_sum = true;
    const ReducePlan p = ReducePlan::from_config(ds, DType::kF32, 4);
    CHECK(p.op == Reduction::kSum);
    CHECK_FALSE(p.scales());
  }
}

TEST_CASE("layers group into buckets of neighbours within reduce_bucket_size", "[zero][reduce]") {
  config::ModelConfig m;
  m.n_layer = 4;
  m.n_embd = 32;
  m.n_head = 2;
  m.vocab_size = 64;
  m.block_size = 16;
  const auto layout = model::build_layout(m);
  const auto part = zero::Partition::build(layout, 0, 2);
  const int64_t block = part.layers[1].padded;
  const std::vector<int> up = {0, 1, 2, 3, 4, 5};
  CHECK(zero::group_layers(part, up, 1).size() == 6);  // every layer alone
  CHECK(zero::group_layers(part, up, int64_t{1} << 40).size() == 1);
  // The backward walk fills buckets from the top; each bucket comes out ascending.
  const auto down = zero::group_layers(part, {5, 4, 3, 2, 1}, 2 * block + part.layers[5].padded);
  REQUIRE(down.size() == 2);
  CHECK(down[0] == std::vector<int>{3, 4, 5});
  CHECK(down[1] == std::vector<int>{1, 2});
}

TEST_CASE("a bucket travels rank-major and comes back as the own pieces", "[zero][reduce]") {
  config::ModelConfig m;
  m.n_layer = 2;
  m.n_embd = 32;
  m.n_head = 2;
  m.vocab_size = 64;
  m.block_size = 16;
  const auto layout = model::build_layout(m);
  const int world = 2, rank = 1;
  const auto part = zero::Partition::build(layout, rank, world);
  EchoComm comm(rank, world);
  config::DsConfig ds = ds_config();
  ds.communication_data_type = config::CommDataType::kBf16;
  ds.gradient_predivide_factor = 2.0;  // ×0.5 before, ×1 after on 2 ranks
  const ReducePlan plan = ReducePlan::from_config(ds, DType::kF32, world);
  double seconds = 0;
  const std::vector<int> bucket = {1, 2};
  const int64_t total = part.layers[1].padded + part.layers[2].padded;
  std::vector<float> grads(static_cast<size_t>(total));
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = static_cast<float>(i % 200);
  std::vector<std::vector<float>> delivered(3);
  zero::BucketReducer reducer(comm, tensor::cpu_ops(), part, plan, total, false, seconds,
                              [&](int layer, const void* piece, DType dtype, float scale) {
                                CHECK(dtype == DType::kBF16);
                                CHECK(scale == 1.0f);
                                const auto n = part.layers[layer].own.size;
                                auto& out = delivered[layer];
                                out.resize(n);
                                const auto* bits = static_cast<const uint16_t*>(piece);
                                for (int64_t i = 0; i < n; ++i)
                                  out[i] = tensor::bf16_to_f32(bits[i]);
                              });
  reducer.start(bucket, grads.data(), DType::kF32);
  // Rank 1 got piece 1 of each layer, halved (integers up to 200 are exact in bf16).
  const int64_t base = part.layers[1].full_offset;
  for (int layer : bucket) {
    const auto& s = part.layers[layer];
    REQUIRE(delivered[layer].size() == static_cast<size_t>(s.own.size));
    for (int64_t i = 0; i < s.own.size; ++i) {
      CHECK(delivered[layer][i] == 0.5f * grads[s.full_offset - base + s.own.offset + i]);
    }
  }
  CHECK(comm.sent.size() == sizeof(uint16_t) * total);
}

TEST_CASE("a ZeRO-3 rank reads only its own pieces of the starting weights", "[zero][engine]") {
  const auto cfg = config::parse_train_config(
      config::parse_document(
          "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 64, block_size: 16}\n"
          "data: {train: unused.txt}\n"
          "deepspeed: {train_batch_size: 4, train_micro_batch_size_per_gpu: 2,\n"
          "  zero_optimization: {stage: 3, stage3_param_persistence_threshold: 0}}\n",
          "t.yaml", "", false),
      2);
  model::Gpt gpt(cfg.model);
  const auto& layout = gpt.layout();
  const auto part = zero::Partition::build(layout, 1, 2);
  int64_t requested = 0;
  const zero::InitialWeights reader = [&](int64_t offset, int64_t count, float* dst) {
    requested += count;
    // Every range lies inside one layer's piece of rank 1.
    bool inside = false;
    for (const auto& s : part.layers) {
      const int64_t begin = s.layer_offset + s.own.offset;
      inside |= offset >= begin && offset + count <= begin + s.own.size;
    }
    CHECK(inside);
    std::fill(dst, dst + count, 0.01f);
  };
  zero::Engine engine(cfg, gpt, reader, std::make_unique<EchoComm>(1, 2));
  CHECK(requested <= layout.total / 2 + 64);
  CHECK(requested >= layout.parameter_count() / 2 - 64);
}
