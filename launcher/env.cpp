#include "launcher/env.h"

#include <filesystem>

#include "util/error.h"
#include "util/files.h"

extern char** environ;

namespace ds::launcher {

void EnvList::set(const std::string& key, const std::string& value) {
  for (auto& [k, v] : items_) {
    if (k == key) {
      v = value;
      return;
    }
  }
  items_.emplace_back(key, value);
}

const std::string* EnvList::find(const std::string& key) const {
  for (const auto& [k, v] : items_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void EnvList::merge(const EnvList& other) {
  for (const auto& [k, v] : other.items_) set(k, v);
}

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string shell_join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    bool plain = !w.empty();
    for (char c : w) {
      if (!std::isalnum(static_cast<unsigned char>(c)) &&
          std::string_view("/._-+=:,@%").find(c) == std::string_view::npos) {
        plain = false;
      }
    }
    if (!out.empty()) out += ' ';
    out += plain ? w : shell_quote(w);
  }
  return out;
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

EnvList parse_dsenv(std::string_view text, const std::string& filename) {
  EnvList out;
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    line = line.substr(first);
    if (line.starts_with("export ")) line = line.substr(7);
    const size_t eq = line.find('=');
    const std::string_view key = line.substr(0, eq);
    if (eq == std::string_view::npos || !valid_env_name(key)) {
      throw UsageError(fmt::format("{}:{}: expected KEY=VALUE, not '{}'", filename, line_no, line),
                       "each line of a .dsenv file sets one variable, e.g. NCCL_DEBUG=INFO");
    }
    out.set(std::string(key), std::string(line.substr(eq + 1)));
  }
  return out;
}

EnvList forwarded_env(const EnvSources& sources, std::vector<std::string>* files) {
  EnvList out;
  for (const std::string& dir : sources.dsenv_dirs) {
    const std::filesystem::path path = std::filesystem::path(dir) / ".dsenv";
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) continue;
    out.merge(parse_dsenv(read_text_file(path, ".dsenv file"), path.string()));
    if (files) files->push_back(path.string());
  }
  std::vector<std::string> prefixes = kDefaultEnvPrefixes;
  prefixes.insert(prefixes.end(), sources.env_prefix.begin(), sources.env_prefix.end());
  for (const std::string& kv : sources.environ) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = kv.substr(0, eq);
    for (const std::string& p : prefixes) {
      if (!p.empty() && key.starts_with(p)) {
        out.set(key, kv.substr(eq + 1));
        break;
      }
    }
  }
  for (const std::string& kv : sources.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || !valid_env_name(kv.substr(0, eq))) {
      throw UsageError(fmt::format("--env expects KEY=VALUE, not '{}'", kv));
    }
    out.set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return out;
}

std::vector<std::string> current_environ() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

}  // namespace ds::launcher
