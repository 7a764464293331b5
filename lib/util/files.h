// File helpers that fail with a message naming the file.
#pragma once

#include <filesystem>
#include <string>

namespace ds {

// The whole file as bytes; throws UsageError naming the path when it can't be read.
std::string read_text_file(const std::filesystem::path& path, const char* what = "file");

// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a
// torn one: a temporary file in the same folder, fsync, rename, fsync of the folder.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);
// fsync of a folder, so that renames inside it survive a crash.
void sync_directory(const std::filesystem::path& dir);

// `path` as written in a config: absolute stays, relative is taken from `base_dir`.
std::filesystem::path resolve_relative(const std::filesystem::path& base_dir,
                                       const std::string& path);

}  // namespace ds
