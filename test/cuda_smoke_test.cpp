// Runs only where a GPU is present; elsewhere it reports why and passes as skipped.
#include <catch2/catch.hpp>
#include <cctype>
#include <cstdio>
#include <string>

#include "tensor/cuda/device_info.h"

TEST_CASE("a CUDA kernel round-trips through device memory", "[cuda]") {
  const auto info = ds::tensor::cuda::query_devices();
  if (info.device_count == 0) {
    WARN("no CUDA device (" << info.error << "): skipped");
    return;
  }
  std::string error;
  CHECK(ds::tensor::cuda::fill_round_trip(1.5f, 1000, &error));
  INFO(error);
}

// The identity ranks compare to find a shared GPU (worker/gpu_sharing.h): CUDA's device 0 is a
// GPU nvidia-smi lists with the same UUID, at the same PCI address (nvidia-smi writes the domain
// with 8 digits, CUDA with 4).
TEST_CASE("device 0's UUID and PCI address are those nvidia-smi lists for it", "[cuda]") {
  if (ds::tensor::cuda::query_devices().device_count == 0) return;
  FILE* smi =
      popen("nvidia-smi --query-gpu=uuid,pci.bus_id --format=csv,noheader 2>/dev/null", "r");
  REQUIRE(smi != nullptr);
  std::string listing;
  char buffer[256];
  while (fgets(buffer, sizeof buffer, smi) != nullptr) listing += buffer;
  if (pclose(smi) != 0 || listing.empty()) {
    WARN("no nvidia-smi: skipped");
    return;
  }
  const std::string uuid = ds::tensor::cuda::device_uuid(0);
  std::string bus = ds::tensor::cuda::device_pci_bus_id(0);
  INFO("nvidia-smi: " << listing << "CUDA: " << uuid << ", " << bus);
  REQUIRE(uuid.rfind("GPU-", 0) == 0);
  const size_t line = listing.find(uuid + ", ");
  REQUIRE(line != std::string::npos);
  const auto upper = [](std::string text) {
    for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return text;
  };
  const std::string listed = upper(listing.substr(line, listing.find('\n', line) - line));
  bus = upper(bus);
  REQUIRE(listed.size() >= bus.size());
  CHECK(listed.compare(listed.size() - bus.size(), bus.size(), bus) == 0);
}
