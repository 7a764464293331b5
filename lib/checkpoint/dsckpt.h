// What `dsckpt` does: inspect, verify and export checkpoints (apps/dsckpt parses the
// command line and calls these).
#pragma once

#include <filesystem>
#include <iosfwd>
#include <string>

namespace ds::checkpoint {

// Tags, steps, layout, sizes and config of every tag in `dir`.
void inspect_command(const std::filesystem::path& dir, std::ostream& out);
// Completeness and checksums of one tag (default: latest); returns the exit code.
int verify_command(const std::filesystem::path& dir, const std::string& tag, std::ostream& out);
// One consolidated safetensors file with Hugging Face GPT-2 names.
void export_command(const std::filesystem::path& dir, const std::string& tag,
                    const std::filesystem::path& out_file, const std::string& dtype,
                    std::ostream& out);

}  // namespace ds::checkpoint
