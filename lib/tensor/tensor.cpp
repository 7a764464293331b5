#include "tensor/tensor.h"

#include <fmt/ranges.h>

#include <cstring>
#include <utility>

namespace ds::tensor {

std::string Device::str() const {
  switch (type) {
    case DeviceType::kCpu:
      return "cpu";
    case DeviceType::kEmulated:
      return "emulated";
    case DeviceType::kCuda:
      break;
  }
  return fmt::format("cuda:{}", index);
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    DS_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Tensor::Tensor(void* data, Shape shape, DType dtype, Device device)
    : data_(data),
      shape_(std::move(shape)),
      numel_(shape_numel(shape_)),
      dtype_(dtype),
      device_(device) {}

Tensor::Tensor(Tensor&& other) noexcept
    : owned_(std::move(other.owned_)),
      data_(std::exchange(other.data_, nullptr)),
      shape_(std::exchange(other.shape_, {})),
      numel_(std::exchange(other.numel_, 0)),
      dtype_(other.dtype_),
      device_(other.device_) {}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    owned_ = std::move(other.owned_);
    data_ = std::exchange(other.data_, nullptr);
    shape_ = std::exchange(other.shape_, {});
    numel_ = std::exchange(other.numel_, 0);
    dtype_ = other.dtype_;
    device_ = other.device_;
  }
  return *this;
}

Tensor Tensor::zeros(Shape shape, DType dtype, MemoryCategory category) {
  Tensor t(nullptr, std::move(shape), dtype, Device::cpu());
  t.owned_ = Buffer(t.nbytes(), category);
  t.data_ = t.owned_.data();
  return t;
}

Tensor Tensor::view(Buffer& buffer, size_t byte_offset, Shape shape, DType dtype) {
  Tensor t(nullptr, std::move(shape), dtype, Device::cpu());
  DS_CHECK(byte_offset % dtype_size(dtype) == 0, "view offset {} is not aligned to {}", byte_offset,
           dtype_name(dtype));
  DS_CHECK(byte_offset <= buffer.size() && t.nbytes() <= buffer.size() - byte_offset,
           "view {} at byte {} runs past a buffer of {} bytes", t.str(), byte_offset,
           buffer.size());
  t.data_ = static_cast<char*>(buffer.data()) + byte_offset;
  return t;
}

Tensor Tensor::wrap(void* data, Shape shape, DType dtype, Device device) {
  return Tensor(data, std::move(shape), dtype, device);
}

Tensor Tensor::view() const { return Tensor(data_, shape_, dtype_, device_); }

Tensor Tensor::reshaped(Shape shape) const {
  Tensor t(data_, std::move(shape), dtype_, device_);
  DS_CHECK(t.numel_ == numel_, "cannot reshape {} to {}", str(), shape_str(t.shape_));
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  DS_CHECK(!shape_.empty(), "cannot slice a scalar tensor");
  DS_CHECK(0 <= begin && begin <= end && end <= shape_[0], "rows [{}, {}) out of range for {}",
           begin, end, str());
  Shape shape = shape_;
  shape[0] = end - begin;
  const int64_t row = shape_[0] == 0 ? 0 : numel_ / shape_[0];
  char* base = static_cast<char*>(data_) + begin * row * static_cast<int64_t>(dtype_size(dtype_));
  return Tensor(base, std::move(shape), dtype_, device_);
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int k = i < 0 ? i + n : i;
  DS_CHECK(0 <= k && k < n, "dimension {} out of range for {}", i, str());
  return shape_[k];
}

void Tensor::zero() {
  DS_CHECK(device_.is_cpu(), "Tensor::zero on {} needs a device kernel", device_.str());
  if (nbytes() > 0) std::memset(data_, 0, nbytes());
}

std::string Tensor::str() const {
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_str(shape_), device_.str());
}

}  // namespace ds::tensor
