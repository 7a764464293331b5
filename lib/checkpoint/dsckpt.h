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
// The consolidated weights with Hugging Face names: one safetensors file (format
// "safetensors"), or a folder transformers' from_pretrained loads (format "hf":
// config.json + weights, sharded above `shard_bytes`).
void export_command(const std::filesystem::path& dir, const std::string& tag,
                    const std::filesystem::path& out, const std::string& dtype,
                    const std::string& format, int64_t shard_bytes, std::ostream& out_text);

}  // namespace ds::checkpoint
