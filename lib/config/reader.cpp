#include "config/reader.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "util/strings.h"

namespace ds::config {
namespace {

bool is_quoted(const YAML::Node& node) { return node.Tag() == "!"; }

bool is_auto_node(const YAML::Node& node) {
  return node.IsScalar() && to_lower(node.Scalar()) == "auto";
}

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{}", v);
}

}  // namespace

bool Range::contains(double v) const {
  if (min_exclusive ? !(v > min) : !(v >= min)) return false;
  return v <= max;
}

std::string Range::describe() const {
  const bool has_min = !std::isinf(min), has_max = !std::isinf(max);
  if (has_min && has_max)
    return fmt::format("between {} and {}", format_number(min), format_number(max));
  if (has_min) return fmt::format("{} {}", min_exclusive ? ">" : ">=", format_number(min));
  if (has_max) return fmt::format("<= {}", format_number(max));
  return "";
}

std::string describe_found(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "null";
  if (node.IsMap()) return "a map";
  if (node.IsSequence()) return "a list";
  if (is_quoted(node)) return fmt::format("the string \"{}\"", node.Scalar());
  return node.Scalar();
}

MapReader::MapReader(DocumentPtr doc, YAML::Node map, std::string path)
    : MapReader(doc, map, path, map.Mark()) {}

MapReader::MapReader(DocumentPtr doc, YAML::Node map, std::string path, YAML::Mark where)
    : doc_(std::move(doc)), map_(std::move(map)), path_(std::move(path)), where_(where) {
  if (!map_.IsMap()) fail_here(fmt::format("expected a map, found {}", describe_found(map_)));
  for (auto it = map_.begin(); it != map_.end(); ++it) {
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar()) {
      throw ConfigError(*doc_, key_node.Mark(), path_, "keys must be plain names");
    }
    Entry entry{key_node.Scalar(), key_node, it->second};
    if (const Entry* first = find(entry.key)) {
      throw ConfigError(
          *doc_, key_node.Mark(), key_path(entry.key),
          fmt::format("duplicate key (first given at line {})", first->key_node.Mark().line + 1),
          "keep only one (DeepSpeed refuses duplicate keys too)");
    }
    entries_.push_back(std::move(entry));
  }
}

const MapReader::Entry* MapReader::find(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

const MapReader::Entry* MapReader::lookup(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  const Entry* e = find(key);
  if (e == nullptr || e->value.IsNull()) return nullptr;
  return e;
}

std::string MapReader::key_path(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  if (key.empty()) return path_;
  return fmt::format("{}.{}", path_, key);
}

YAML::Mark MapReader::mark(std::string_view key) const {
  if (const Entry* e = find(key)) return e->value.IsNull() ? e->key_node.Mark() : e->value.Mark();
  return where_;
}

void MapReader::fail(std::string_view key, const std::string& what, std::string hint) const {
  throw ConfigError(*doc_, mark(key), key_path(key), what, std::move(hint));
}

void MapReader::fail_here(const std::string& what, std::string hint) const {
  throw ConfigError(*doc_, where_, path_, what, std::move(hint));
}

bool MapReader::has(std::string_view key) { return lookup(key) != nullptr; }

bool MapReader::is_auto(std::string_view key) {
  const Entry* e = lookup(key);
  return e != nullptr && is_auto_node(e->value);
}

bool MapReader::get_bool(std::string_view key, bool fallback) {
  const Entry* e = lookup(key);
  if (e == nullptr || is_auto_node(e->value)) return fallback;
  if (e->value.IsScalar() && !is_quoted(e->value)) {
    const std::string v = to_lower(e->value.Scalar());
    if (v == "true") return true;
    if (v == "false") return false;
  }
  fail(key, fmt::format("expected true or false, found {}", describe_found(e->value)));
}

double MapReader::number_of(const Entry& entry, const char* expected) const {
  const YAML::Node& v = entry.value;
  if (v.IsScalar() && !is_quoted(v)) {
    const std::string& s = v.Scalar();
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return d;
  }
  fail(entry.key, fmt::format("expected {}, found {}", expected, describe_found(v)));
}

std::optional<int64_t> MapReader::get_optional_int(std::string_view key, Range range) {
  const Entry* e = lookup(key);
  if (e == nullptr || is_auto_node(e->value)) return std::nullopt;
  const std::string expected =
      range.describe().empty() ? "an integer" : fmt::format("an integer {}", range.describe());
  const double d = number_of(*e, expected.c_str());
  // DeepSpeed configs write sizes as 5e8; accept any number that is a whole integer.
  if (d != std::floor(d) || std::fabs(d) > 9.0e15 || !range.contains(d)) {
    fail(key, fmt::format("expected {}, found {}", expected, describe_found(e->value)));
  }
  return static_cast<int64_t>(d);
}

int64_t MapReader::get_int(std::string_view key, int64_t fallback, Range range) {
  return get_optional_int(key, range).value_or(fallback);
}

std::optional<double> MapReader::get_optional_double(std::string_view key, Range range) {
  const Entry* e = lookup(key);
  if (e == nullptr || is_auto_node(e->value)) return std::nullopt;
  const std::string expected =
      range.describe().empty() ? "a number" : fmt::format("a number {}", range.describe());
  const double d = number_of(*e, expected.c_str());
  if (!range.contains(d)) {
    fail(key, fmt::format("expected {}, found {}", expected, describe_found(e->value)));
  }
  return d;
}

double MapReader::get_double(std::string_view key, double fallback, Range range) {
  return get_optional_double(key, range).value_or(fallback);
}

std::optional<std::string> MapReader::get_optional_string(std::string_view key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsScalar()) {
    fail(key, fmt::format("expected a string, found {}", describe_found(e->value)));
  }
  return e->value.Scalar();
}

std::string MapReader::get_string(std::string_view key, std::string fallback) {
  return get_optional_string(key).value_or(std::move(fallback));
}

std::string MapReader::get_choice(std::string_view key, std::string fallback,
                                  const std::vector<std::string>& choices) {
  const Entry* e = lookup(key);
  if (e == nullptr || is_auto_node(e->value)) return fallback;
  if (e->value.IsScalar()) {
    const std::string v = to_lower(e->value.Scalar());
    for (const std::string& c : choices) {
      if (to_lower(c) == v) return c;
    }
  }
  std::vector<std::string> quoted;
  for (const std::string& c : choices) quoted.push_back(fmt::format("\"{}\"", c));
  std::string hint;
  if (e->value.IsScalar()) {
    if (auto near = closest_match(e->value.Scalar(), choices)) {
      hint = fmt::format("did you mean \"{}\"?", *near);
    }
  }
  fail(key,
       fmt::format("expected one of {}, found {}", join_choices(quoted), describe_found(e->value)),
       hint);
}

std::vector<double> MapReader::get_doubles(std::string_view key, std::vector<double> fallback,
                                           size_t count, Range range) {
  const Entry* e = lookup(key);
  if (e == nullptr || is_auto_node(e->value)) return fallback;
  const std::string expected = fmt::format("a list of {} numbers{}{}", count,
                                           range.describe().empty() ? "" : " ", range.describe());
  if (!e->value.IsSequence() || e->value.size() != count) {
    fail(key, fmt::format("expected {}, found {}", expected,
                          e->value.IsSequence() ? fmt::format("a list of {}", e->value.size())
                                                : describe_found(e->value)));
  }
  std::vector<double> out;
  for (const YAML::Node& item : e->value) {
    Entry element{std::string(key), e->key_node, item};
    const double d = number_of(element, expected.c_str());
    if (!range.contains(d)) {
      throw ConfigError(*doc_, item.Mark(), key_path(key),
                        fmt::format("expected {}, found {}", expected, describe_found(item)));
    }
    out.push_back(d);
  }
  return out;
}

std::optional<MapReader> MapReader::get_map(std::string_view key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsMap()) {
    fail(key, fmt::format("expected a map, found {}", describe_found(e->value)));
  }
  return MapReader(doc_, e->value, key_path(key));
}

MapReader MapReader::get_map_or_empty(std::string_view key) {
  if (auto map = get_map(key)) return *map;
  return MapReader(doc_, YAML::Node(YAML::NodeType::Map), key_path(key), where_);
}

MapReader MapReader::load_referenced(std::string_view key, const std::filesystem::path& path,
                                     const char* what) const {
  DocumentPtr doc;
  try {
    doc = load_document(path, what);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    fail(key, e.what(), e.hint());
  }
  return MapReader(doc, doc->root, "");
}

YAML::Node MapReader::raw(std::string_view key) {
  const Entry* e = lookup(key);
  return e == nullptr ? YAML::Node() : e->value;
}

std::string MapReader::pick(std::initializer_list<std::string_view> names) {
  std::string present;
  for (std::string_view name : names) {
    if (!has(name)) continue;
    if (!present.empty()) {
      fail(name,
           fmt::format("given together with '{}', another spelling of the same key",
                       key_path(present)),
           "keep one of them");
    }
    present = name;
  }
  return present.empty() ? std::string(*names.begin()) : present;
}

void MapReader::refuse_unsupported(std::string_view key, std::string_view why) {
  if (!has(key)) return;
  fail(key, fmt::format("'{}' is a DeepSpeed option that dstrain does not support: {}", key, why),
       "remove it from the config (docs/config.md lists what dstrain implements)");
}

void MapReader::refuse_unless_disabled(std::string_view key, std::string_view why) {
  const Entry* e = lookup(key);
  if (e == nullptr) return;
  if (e->value.IsMap()) {
    MapReader section(doc_, e->value, key_path(key));
    const Entry* enabled = section.find("enabled");
    if (enabled != nullptr && enabled->value.IsScalar() && !is_quoted(enabled->value) &&
        to_lower(enabled->value.Scalar()) == "false") {
      return;  // asks for nothing
    }
  }
  refuse_unsupported(key, why);
}

void MapReader::finish() const {
  for (const Entry& e : entries_) {
    if (std::find(known_.begin(), known_.end(), e.key) != known_.end()) continue;
    std::vector<std::string> sorted = known_;
    std::sort(sorted.begin(), sorted.end());
    const std::string valid = fmt::format("valid keys here: {}", join_choices(sorted, ", "));
    const auto near = closest_match(e.key, known_);
    throw ConfigError(*doc_, e.key_node.Mark(), key_path(e.key),
                      near ? fmt::format("unknown key '{}'; did you mean '{}'?", e.key, *near)
                           : fmt::format("unknown key '{}'", e.key),
                      valid);
  }
}

}  // namespace ds::config
