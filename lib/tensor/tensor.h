// A small contiguous tensor: dtype, shape, device, and either its own Buffer or a non-owning
// view into memory someone else owns. Views are how parameters live: the engine allocates one
// flat buffer per dtype and every parameter is a view at an offset into it.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/memory.h"
#include "util/error.h"

namespace ds::tensor {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[4, 256, 768]"

class Tensor {
 public:
  Tensor() = default;

  // A new zero-filled CPU tensor that owns its memory, accounted under `category`.
  static Tensor zeros(Shape shape, DType dtype, MemoryCategory category);
  // A view of `shape` at `byte_offset` into `buffer`, bounds- and alignment-checked.
  static Tensor view(Buffer& buffer, size_t byte_offset, Shape shape, DType dtype);
  // A view of raw memory (e.g. device memory, or a caller's array); nothing is checked.
  static Tensor wrap(void* data, Shape shape, DType dtype, Device device = Device::cpu());

  // A moved-from tensor is empty, never a dangling alias of the memory it handed over.
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;
  // Copies would silently share or duplicate memory; say which with view() or an explicit copy.
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  // A non-owning alias of the whole tensor; valid while this tensor's memory lives.
  Tensor view() const;
  // A non-owning alias with another shape of the same number of elements.
  Tensor reshaped(Shape shape) const;
  // Rows [begin, end) along the first dimension, as a non-owning view.
  Tensor slice_rows(int64_t begin, int64_t end) const;

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // negative counts from the end
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  Device device() const { return device_; }
  bool owns_memory() const { return !owned_.empty(); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  // Typed access; the element type must match the dtype (uint16_t for bf16 and f16).
  template <typename T>
  T* data() {
    check_type<T>();
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const {
    check_type<T>();
    return static_cast<const T*>(data_);
  }

  void zero();              // CPU only
  std::string str() const;  // "f32[4, 256] cpu"

 private:
  Tensor(void* data, Shape shape, DType dtype, Device device);

  template <typename T>
  void check_type() const {
    if constexpr (std::is_same_v<std::remove_cv_t<T>, float>) {
      DS_CHECK(dtype_ == DType::kF32, "tensor {} read as f32", str());
    } else if constexpr (std::is_same_v<std::remove_cv_t<T>, uint16_t>) {
      DS_CHECK(dtype_ == DType::kBF16 || dtype_ == DType::kF16, "tensor {} read as 16-bit", str());
    } else {
      static_assert(sizeof(T) == 0, "element type must be float or uint16_t");
    }
  }

  Buffer owned_;  // empty for views
  void* data_ = nullptr;
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
  Device device_;
};

}  // namespace ds::tensor
