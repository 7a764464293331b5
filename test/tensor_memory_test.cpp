// Memory accounting (Buffer, MemoryTracker) and the Tensor type's views and checks.
#include <catch2/catch.hpp>
#include <cstdint>
#include <thread>
#include <vector>

#include "tensor/memory.h"
#include "tensor/tensor.h"
#include "util/error.h"

using ds::tensor::Buffer;
using ds::tensor::DType;
using ds::tensor::MemoryCategory;
using ds::tensor::MemoryTracker;
using ds::tensor::Tensor;

TEST_CASE("Buffer registers its bytes while it lives and the peak stays", "[memory]") {
  auto& tracker = MemoryTracker::instance();
  const size_t grads0 = tracker.bytes(MemoryCategory::kGradients);
  const size_t params0 = tracker.bytes(MemoryCategory::kParameters);
  const size_t total0 = tracker.total();
  tracker.reset_peaks();
  {
    Buffer a(1000, MemoryCategory::kGradients);
    CHECK(tracker.bytes(MemoryCategory::kGradients) == grads0 + 1000);
    CHECK(tracker.bytes(MemoryCategory::kParameters) == params0);
    CHECK(tracker.total() == total0 + 1000);
    {
      Buffer b(24, MemoryCategory::kGradients);
      CHECK(tracker.bytes(MemoryCategory::kGradients) == grads0 + 1024);
    }
    CHECK(tracker.bytes(MemoryCategory::kGradients) == grads0 + 1000);
    CHECK(tracker.peak(MemoryCategory::kGradients) == grads0 + 1024);
    CHECK(ds::tensor::memory_peak(MemoryCategory::kGradients) == grads0 + 1024);
  }
  CHECK(ds::tensor::memory_bytes(MemoryCategory::kGradients) == grads0);
  CHECK(ds::tensor::memory_total() == total0);
  CHECK(tracker.peak(MemoryCategory::kGradients) == grads0 + 1024);
  CHECK(tracker.peak_total() == total0 + 1024);
  tracker.reset_peaks();
  CHECK(tracker.peak(MemoryCategory::kGradients) == grads0);
}

TEST_CASE("Buffer is aligned, zeroed and moves without double counting", "[memory]") {
  auto& tracker = MemoryTracker::instance();
  const size_t act0 = tracker.bytes(MemoryCategory::kActivations);
  Buffer a(4 * 37, MemoryCategory::kActivations);
  REQUIRE(a.data() != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a.data()) % Buffer::kAlignment == 0);
  for (int i = 0; i < 37; ++i) CHECK(a.as<float>()[i] == 0.0f);

  Buffer b(std::move(a));
  CHECK(a.empty());
  CHECK(a.data() == nullptr);
  CHECK(b.size() == 4 * 37);
  CHECK(tracker.bytes(MemoryCategory::kActivations) == act0 + 4 * 37);

  Buffer c(8, MemoryCategory::kActivations);
  c = std::move(b);  // c's own 8 bytes are released
  CHECK(tracker.bytes(MemoryCategory::kActivations) == act0 + 4 * 37);
  c.reset();
  CHECK(c.empty());
  CHECK(tracker.bytes(MemoryCategory::kActivations) == act0);

  Buffer empty(0, MemoryCategory::kOther);
  CHECK(empty.data() == nullptr);
  CHECK(ds::tensor::memory_category_name(MemoryCategory::kOptimizerState) == "optimizer_state");
}

TEST_CASE("MemoryTracker counts from many threads", "[memory]") {
  auto& tracker = MemoryTracker::instance();
  const size_t comm0 = tracker.bytes(MemoryCategory::kCommunication);
  tracker.reset_peaks();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 200; ++i) {
        Buffer b(128, MemoryCategory::kCommunication);
        b.as<char>()[0] = 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(tracker.bytes(MemoryCategory::kCommunication) == comm0);
  const size_t peak = tracker.peak(MemoryCategory::kCommunication);
  CHECK(peak >= comm0 + 128);
  CHECK(peak <= comm0 + 8 * 128);
}

TEST_CASE("Tensor owns or views memory", "[tensor]") {
  auto& tracker = MemoryTracker::instance();
  const size_t params0 = tracker.bytes(MemoryCategory::kParameters);
  {
    Tensor t = Tensor::zeros({2, 3, 4}, DType::kF32, MemoryCategory::kParameters);
    CHECK(t.numel() == 24);
    CHECK(t.nbytes() == 96);
    CHECK(t.ndim() == 3);
    CHECK(t.dim(-1) == 4);
    CHECK(t.owns_memory());
    CHECK(t.device().is_cpu());
    CHECK(t.str() == "f32[2, 3, 4] cpu");
    CHECK(tracker.bytes(MemoryCategory::kParameters) == params0 + 96);

    float* p = t.data<float>();
    for (int i = 0; i < 24; ++i) p[i] = static_cast<float>(i);
    Tensor rows = t.slice_rows(1, 2);
    CHECK(rows.shape() == ds::tensor::Shape{1, 3, 4});
    CHECK(rows.data<float>()[0] == 12.0f);
    CHECK_FALSE(rows.owns_memory());
    Tensor flat = t.reshaped({24});
    CHECK(flat.data<float>()[23] == 23.0f);
    CHECK_THROWS_AS(t.reshaped({5, 5}), ds::Error);
    CHECK_THROWS_AS(t.data<uint16_t>(), ds::Error);
    CHECK_THROWS_AS(t.dim(3), ds::Error);

    Tensor moved = std::move(t);
    CHECK(moved.data<float>()[5] == 5.0f);
    CHECK(t.numel() == 0);
    CHECK(t.raw() == nullptr);
    CHECK(tracker.bytes(MemoryCategory::kParameters) == params0 + 96);
  }
  CHECK(tracker.bytes(MemoryCategory::kParameters) == params0);
}

TEST_CASE("Parameters are views into one flat buffer", "[tensor]") {
  Buffer flat(4 * 100, MemoryCategory::kParameters);
  Tensor w = Tensor::view(flat, 0, {8, 10}, DType::kF32);
  Tensor b = Tensor::view(flat, 4 * 80, {10}, DType::kF32);
  Tensor h = Tensor::view(flat, 4 * 90, {20}, DType::kBF16);  // 40 bytes: exactly the rest
  w.data<float>()[79] = 1.5f;
  b.data<float>()[0] = 2.5f;
  CHECK(flat.as<float>()[79] == 1.5f);
  CHECK(flat.as<float>()[80] == 2.5f);
  CHECK(h.data<uint16_t>() == reinterpret_cast<uint16_t*>(flat.as<float>() + 90));
  CHECK_THROWS_AS(Tensor::view(flat, 4 * 91, {10}, DType::kF32), ds::Error);  // past the end
  CHECK_THROWS_AS(Tensor::view(flat, 2, {1}, DType::kF32), ds::Error);        // misaligned
  b.zero();
  CHECK(flat.as<float>()[80] == 0.0f);
  CHECK(flat.as<float>()[79] == 1.5f);

  float raw[6] = {};
  Tensor wrapped = Tensor::wrap(raw, {2, 3}, DType::kF32);
  wrapped.data<float>()[4] = 7.0f;
  CHECK(raw[4] == 7.0f);
  CHECK(Tensor::wrap(raw, {1}, DType::kF32, ds::tensor::Device::cuda(1)).device().str() ==
        "cuda:1");
}
