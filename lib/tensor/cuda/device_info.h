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

// GPU `device`'s UUID as nvidia-smi prints it ("GPU-" and 8-4-4-4-12 hex digits): the same in
// every process that sees the GPU, however its CUDA_VISIBLE_DEVICES numbers it, so the log names
// a shared GPU by it. Throws ds::Error when the runtime cannot say.
std::string device_uuid(int device);

// GPU `device`'s PCI address ("0000:65:00.0"), which the MIG slices of one GPU share while each
// has a UUID of its own. Throws ds::Error when the runtime cannot say.
std::string device_pci_bus_id(int device);

// Fills `count` floats on device memory with `value` and copies them back;
// a round trip through a real kernel, for the smoke test.
bool fill_round_trip(float value, int count, std::string* error);

}  // namespace ds::tensor::cuda
