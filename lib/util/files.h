// File helpers that fail with a message naming the file.
#pragma once

#include <filesystem>
#include <string>

namespace ds {

// The whole file as bytes; throws UsageError naming the path when it can't be read.
std::string read_text_file(const std::filesystem::path& path, const char* what = "file");

// `path` as written in a config: absolute stays, relative is taken from `base_dir`.
std::filesystem::path resolve_relative(const std::filesystem::path& base_dir,
                                       const std::string& path);

}  // namespace ds
