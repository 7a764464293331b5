// Where memory lives and ops run: the host, or a CUDA device by its ordinal among the devices
// this process sees (after CUDA_VISIBLE_DEVICES).
//
// The emulated device is host memory that the code must treat as a device's: it is counted
// as device memory, and its Ops (the CPU's kernels) are reached the way a GPU's are. Tests run
// the device paths (states on the device, staged collectives, host copies for checkpoints)
// on it without a GPU; it is not a user-facing choice.
#pragma once

#include <cstdint>
#include <string>

namespace ds::tensor {

enum class DeviceType : uint8_t { kCpu, kCuda, kEmulated };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i) { return {DeviceType::kCuda, i}; }
  static Device emulated() { return {DeviceType::kEmulated, 0}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  std::string str() const;  // "cpu", "cuda:0"
  friend bool operator==(const Device&, const Device&) = default;
};

}  // namespace ds::tensor
