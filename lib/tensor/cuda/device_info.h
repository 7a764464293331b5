// What the CUDA runtime sees: used by dsworker to pick a device and by the
// cuda-labelled tests to skip themselves on machines without a GPU.
#pragma once

#include <string>

namespace ds::tensor::cuda {

struct DeviceInfo {
  int device_count = 0;
  int runtime_version = 0;  // e.g. 13000
  int driver_version = 0;   // 0 when no driver is installed
  std::string first_device_name;
  std::string error;  // why no device is usable, when device_count is 0
};

DeviceInfo query_devices();

// Fills `count` floats on device memory with `value` and copies them back;
// a round trip through a real kernel, for the smoke test.
bool fill_round_trip(float value, int count, std::string* error);

}  // namespace ds::tensor::cuda
