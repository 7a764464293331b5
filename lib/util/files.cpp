#include "util/files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ds {

std::string read_text_file(const std::filesystem::path& path, const char* what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw UsageError(fmt::format("{} {} is a directory, not a file", what, path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UsageError(fmt::format("cannot open {} {}: {}", what, path.string(),
                                 std::strerror(errno)),
                     "check the path; relative paths in a config are taken from its folder");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::filesystem::path resolve_relative(const std::filesystem::path& base_dir,
                                       const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute() || base_dir.empty()) return p;
  return (base_dir / p).lexically_normal();
}

}  // namespace ds
