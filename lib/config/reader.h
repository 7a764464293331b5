// MapReader: typed, validated access to one map of a config file.
//
// Every get_*() both reads a key and registers it as known, so the list of keys a
// section accepts is exactly the list of keys its parser reads — there is no second
// table to keep in sync. finish() then rejects whatever was not read, with a "did
// you mean" suggestion. Every error names file, line, column and key path.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/document.h"

namespace ds::config {

// The values a number may take, and how to say so in a message.
struct Range {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;

  static Range any() { return {}; }
  static Range at_least(double v) { return {v, std::numeric_limits<double>::infinity(), false}; }
  static Range positive() { return {0, std::numeric_limits<double>::infinity(), true}; }
  static Range between(double lo, double hi) { return {lo, hi, false}; }

  bool contains(double v) const;
  std::string describe() const;  // "", ">= 1", "> 0", "between 0 and 3"
};

class MapReader {
 public:
  // `path` is the key path of this map ("" at the root of a file).
  MapReader(DocumentPtr doc, YAML::Node map, std::string path);
  MapReader(DocumentPtr doc, YAML::Node map, std::string path, YAML::Mark where);

  const Document& document() const { return *doc_; }
  const std::string& path() const { return path_; }

  // Whether the key is present with a non-null value; registers it as known.
  bool has(std::string_view key);
  // Whether the key holds the string "auto" (Hugging Face style placeholders).
  bool is_auto(std::string_view key);

  // Absent, null or "auto" give the default.
  bool get_bool(std::string_view key, bool fallback);
  int64_t get_int(std::string_view key, int64_t fallback, Range range = Range::any());
  double get_double(std::string_view key, double fallback, Range range = Range::any());
  std::string get_string(std::string_view key, std::string fallback);
  // One of `choices`, matched case-insensitively, returned in its canonical spelling.
  std::string get_choice(std::string_view key, std::string fallback,
                         const std::vector<std::string>& choices);
  // Absent, null or "auto" give nullopt: the caller resolves it later.
  std::optional<int64_t> get_optional_int(std::string_view key, Range range = Range::any());
  std::optional<double> get_optional_double(std::string_view key, Range range = Range::any());
  std::optional<std::string> get_optional_string(std::string_view key);
  // A list of exactly `count` numbers.
  std::vector<double> get_doubles(std::string_view key, std::vector<double> fallback, size_t count,
                                  Range range = Range::any());
  // A nested map; nullopt when absent or null.
  std::optional<MapReader> get_map(std::string_view key);
  // Like get_map, but an absent map reads as an empty one (every key defaulted);
  // its errors point at this map.
  MapReader get_map_or_empty(std::string_view key);
  // The config file this key names (a path relative to this document), parsed; a
  // file that cannot be read is reported at the key, a parse error in the file itself.
  MapReader load_referenced(std::string_view key, const std::filesystem::path& path,
                            const char* what) const;
  // The raw node, for values of several shapes (a name or a map); registers the key.
  YAML::Node raw(std::string_view key);

  // Of several spellings of one key (aliases, deprecated names), the one present;
  // an error if more than one is. Returns the first name when none is present.
  std::string pick(std::initializer_list<std::string_view> names);

  // A key DeepSpeed has but dstrain does not implement: an error naming it if present.
  void refuse_unsupported(std::string_view key, std::string_view why);
  // A DeepSpeed feature section dstrain does not implement: allowed only when its
  // "enabled" is false (it then asks for nothing), refused by name otherwise.
  void refuse_unless_disabled(std::string_view key, std::string_view why);

  [[noreturn]] void fail(std::string_view key, const std::string& what,
                         std::string hint = "") const;
  [[noreturn]] void fail_here(const std::string& what, std::string hint = "") const;
  YAML::Mark mark(std::string_view key) const;  // of the value, else of this map
  std::string key_path(std::string_view key) const;

  // Rejects every key that no get_*() registered.
  void finish() const;

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  const Entry* find(std::string_view key) const;
  const Entry* lookup(std::string_view key);  // find + register; null when absent or null
  double number_of(const Entry& entry, const char* expected) const;

  DocumentPtr doc_;
  YAML::Node map_;
  std::string path_;
  YAML::Mark where_;  // of the map, or of its parent when the map is not in the file
  std::vector<Entry> entries_;
  std::vector<std::string> known_;
};

// How a value reads in "found ..." messages: 4, true, the string "fast", a map, a list.
std::string describe_found(const YAML::Node& node);

}  // namespace ds::config
