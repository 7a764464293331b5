#include "config/document.h"

#include <nlohmann/json.hpp>

#include "util/files.h"
#include "util/strings.h"

namespace ds::config {
namespace {

std::string format_position(const Document& doc, const YAML::Mark& mark) {
  if (mark.is_null()) return doc.name;
  return fmt::format("{}:{}:{}", doc.name, mark.line + 1, mark.column + 1);
}

// nlohmann/json reports a byte offset; messages want line and column.
YAML::Mark mark_of_offset(const std::string& text, size_t offset) {
  YAML::Mark mark;
  mark.pos = 0;
  mark.line = 0;
  mark.column = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++mark.line;
      mark.column = 0;
    } else {
      ++mark.column;
    }
  }
  mark.pos = static_cast<int>(offset);
  return mark;
}

void check_strict_json(const Document& doc, const std::string& text) {
  try {
    const nlohmann::json parsed = nlohmann::json::parse(text);
    (void)parsed;
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    const size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    std::string what = e.what();
    const auto pos = what.find("syntax error");
    if (pos != std::string::npos) what = what.substr(pos);
    throw ConfigError(doc, mark_of_offset(text, offset), "(json)",
                      fmt::format("not valid JSON: {}", what),
                      "a ds_config must be strict JSON: no trailing commas, no comments");
  }
}

}  // namespace

ConfigError::ConfigError(const Document& doc, const YAML::Mark& mark, const std::string& key_path,
                         const std::string& what, std::string hint)
    : UsageError(key_path.empty()
                     ? fmt::format("{}: {}", format_position(doc, mark), what)
                     : fmt::format("{}: {}: {}", format_position(doc, mark), key_path, what),
                 std::move(hint)) {}

DocumentPtr parse_document(const std::string& text, std::string name, std::filesystem::path dir,
                           bool json) {
  auto doc = std::make_shared<Document>();
  doc->name = std::move(name);
  doc->dir = std::move(dir);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw ConfigError(*doc, YAML::Mark::null_mark(), "", "the file is empty");
  }
  if (json) check_strict_json(*doc, text);
  try {
    doc->root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(*doc, e.mark, "", fmt::format("cannot parse: {}", e.msg));
  }
  if (!doc->root.IsMap()) {
    throw ConfigError(*doc, doc->root.Mark(), "",
                      "expected a map of keys at the top of the file, found something else");
  }
  return doc;
}

DocumentPtr load_document(const std::filesystem::path& path, const char* what) {
  const std::string ext = to_lower(path.extension().string());
  if (ext != ".yaml" && ext != ".yml" && ext != ".cfg" && ext != ".json") {
    throw UsageError(fmt::format("{} {} has extension '{}'", what, path.string(), ext),
                     "use .yaml, .yml, .cfg or .json");
  }
  const std::string text = read_text_file(path, what);
  return parse_document(text, path.string(), path.parent_path(), ext == ".json");
}

}  // namespace ds::config
