// A parsed config file: its YAML tree (JSON is read as YAML so that every key
// keeps its line and column) and the name under which errors report it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <memory>
#include <string>

#include "util/error.h"

namespace ds::config {

struct Document {
  std::string name;           // the path as the user gave it, for messages
  std::filesystem::path dir;  // relative paths inside resolve from here
  YAML::Node root;
};
using DocumentPtr = std::shared_ptr<const Document>;

// Reads and parses a .yaml/.yml/.cfg/.json file. JSON is first checked strictly
// (YAML would accept `{"a": 1,,}`), then read through yaml-cpp for positions.
DocumentPtr load_document(const std::filesystem::path& path, const char* what);

// Parses text already in memory; `json` turns on the strict JSON check.
DocumentPtr parse_document(const std::string& text, std::string name, std::filesystem::path dir,
                           bool json);

// A config error: "<file>:<line>:<column>: <key.path>: <what>", exit code 2.
class ConfigError : public UsageError {
 public:
  ConfigError(const Document& doc, const YAML::Mark& mark, const std::string& key_path,
              const std::string& what, std::string hint = "");
};

}  // namespace ds::config
