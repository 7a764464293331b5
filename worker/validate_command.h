// `dsworker validate FILE [--world-size N]`: load a train.cfg, resolve every
// default and "auto" for a world of N ranks, and print the result as JSON.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>

namespace ds::worker {

// Writes the resolved configuration to `out`; throws ds::Error on bad input.
void validate_command(const std::filesystem::path& config, int64_t world_size, std::ostream& out);

}  // namespace ds::worker
