// Where memory lives and ops run: the host, or a CUDA device by its ordinal among the devices
// this process sees (after CUDA_VISIBLE_DEVICES).
#pragma once

#include <cstdint>
#include <string>

namespace ds::tensor {

enum class DeviceType : uint8_t { kCpu, kCuda };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i) { return {DeviceType::kCuda, i}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  std::string str() const;  // "cpu", "cuda:0"
  friend bool operator==(const Device&, const Device&) = default;
};

}  // namespace ds::tensor
