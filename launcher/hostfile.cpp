#include "launcher/hostfile.h"

#include <charconv>
#include <filesystem>
#include <set>

#include "util/error.h"
#include "util/files.h"
#include "util/strings.h"

namespace ds::launcher {

namespace {

bool parse_int(std::string_view s, int& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool valid_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::string HostEntry::key() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return port > 0 ? h + ":" + std::to_string(port) : h;
}

std::string HostEntry::spec() const { return (user.empty() ? "" : user + "@") + key(); }

HostEntry parse_host_spec(std::string_view spec) {
  HostEntry e;
  std::string_view rest = spec;
  if (const size_t at = rest.find('@'); at != std::string_view::npos) {
    e.user = std::string(rest.substr(0, at));
    rest = rest.substr(at + 1);
    if (e.user.empty()) throw UsageError(fmt::format("'{}': empty user before '@'", spec));
  }
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {  // [v6addr] or [v6addr]:port
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      throw UsageError(fmt::format("'{}': '[' without ']'", spec));
    }
    e.host = std::string(rest.substr(1, close - 1));
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw UsageError(fmt::format("'{}': junk after ']'", spec));
      port = after.substr(1);
      if (port.empty()) throw UsageError(fmt::format("'{}': empty port after ':'", spec));
    }
  } else {
    const size_t colon = rest.find(':');
    e.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      if (port.empty()) throw UsageError(fmt::format("'{}': empty port after ':'", spec));
    }
    for (char c : e.host) {
      if (!valid_host_char(c)) {
        throw UsageError(fmt::format("'{}': '{}' is not allowed in a host name", spec, c));
      }
    }
  }
  if (e.host.empty()) throw UsageError(fmt::format("'{}': empty host name", spec));
  if (!port.empty() && (!parse_int(port, e.port) || e.port < 1 || e.port > 65535)) {
    throw UsageError(fmt::format("'{}': port must be 1..65535, not '{}'", spec, port));
  }
  return e;
}

std::vector<HostEntry> parse_hostfile(std::string_view text, const std::string& filename) {
  std::vector<HostEntry> hosts;
  std::set<std::string> seen;
  int line_no = 0;
  size_t pos = 0;
  const std::string example = "lines look like 'worker-1 slots=8' (see docs/launcher.md)";
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    const auto tokens = split_ws(line);
    if (tokens.empty()) continue;
    const std::string where = fmt::format("{}:{}", filename, line_no);
    HostEntry e;
    try {
      e = parse_host_spec(tokens[0]);
    } catch (const UsageError& err) {
      throw UsageError(fmt::format("{}: bad host {}", where, err.what()), example);
    }
    e.line = line_no;
    bool have_slots = false;
    for (size_t i = 1; i < tokens.size(); ++i) {
      const std::string_view tok = tokens[i];
      const size_t eq = tok.find('=');
      const std::string key(tok.substr(0, eq));
      const std::string_view value = eq == std::string_view::npos ? "" : tok.substr(eq + 1);
      if (key == "slots" || key == "max_slots") {
        int n = 0;
        if (!parse_int(value, n) || n < 1) {
          throw UsageError(
              fmt::format("{}: {} must be a whole number of at least 1, not '{}'", where, key,
                          value),
              "a node with no slots has no place in a hostfile; comment the line out instead");
        }
        if (key == "slots") {
          if (have_slots) throw UsageError(fmt::format("{}: slots given twice", where), example);
          have_slots = true;
          e.slots = n;
        }  // max_slots: Open MPI's cap; we never oversubscribe, so it changes nothing
        continue;
      }
      const std::vector<std::string> known = {"slots", "max_slots"};
      const auto near = closest_match(key, known);
      throw UsageError(fmt::format("{}: unknown token '{}'{}", where, tok,
                                   near ? fmt::format(" (did you mean '{}=N'?)", *near) : ""),
                       example);
    }
    if (!have_slots) {
      throw UsageError(fmt::format("{}: host '{}' has no slots=N", where, tokens[0]), example);
    }
    if (!seen.insert(e.key()).second) {
      int first = 0;
      for (const HostEntry& h : hosts) {
        if (h.key() == e.key()) first = h.line;
      }
      throw UsageError(
          fmt::format("{}: host '{}' is listed twice (first on line {})", where, e.key(), first),
          "give each node one line with all its slots");
    }
    hosts.push_back(std::move(e));
  }
  if (hosts.empty()) {
    throw UsageError(fmt::format("{}: no hosts in the hostfile", filename), example);
  }
  return hosts;
}

std::vector<HostEntry> read_hostfile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw UsageError(fmt::format("hostfile '{}' does not exist", path),
                     "fix the path, or leave --hostfile out to run on this host only");
  }
  return parse_hostfile(read_text_file(path, "hostfile"), path);
}

}  // namespace ds::launcher
