#include "launcher/preflight.h"

#include <sstream>

#include "launcher/env.h"
#include "util/error.h"

namespace ds::launcher {

namespace {

// Appends: `if have c0; then echo <tag> 0; VAR=c0; elif ...; fi`
void find_first(std::string& s, const std::vector<std::string>& candidates, const char* tag,
                const char* var) {
  if (candidates.empty()) return;
  for (size_t i = 0; i < candidates.size(); ++i) {
    s += fmt::format("{} have {}; then echo {} {}; {}={}; ", i == 0 ? "if" : "elif",
                     shell_quote(candidates[i]), tag, i, var, shell_quote(candidates[i]));
  }
  s += "fi\n";
}

std::string tried(const std::vector<std::string>& candidates) {
  std::string out;
  for (const std::string& c : candidates) out += (out.empty() ? "" : ", ") + c;
  return out;
}

}  // namespace

std::string preflight_script(const PreflightRequest& r) {
  std::string s;
  s += "cd " + shell_quote(r.workdir) + " 2>/dev/null || { echo nodir; exit 0; }\n";
  // A candidate with a '/' must be an executable file; a bare name is looked up in PATH.
  s += "have() { case \"$1\" in */*) [ -f \"$1\" ] && [ -x \"$1\" ] ;; "
       "*) command -v -- \"$1\" >/dev/null 2>&1 ;; esac; }\n";
  s += "L=\n";
  find_first(s, r.launcher_candidates, "launcher", "L");
  find_first(s, r.program_candidates, "program", "P");
  if (!r.required_file.empty()) s += "[ -f " + shell_quote(r.required_file) + " ] || echo nofile\n";
  if (r.want_address) {
    // SSH_CONNECTION is "client port server port": the server address is this
    // node as the launcher reached it.
    s += "echo address ${SSH_CONNECTION:-}\n";
    s += "[ -n \"$L\" ] && echo port $(\"$L\" --free-port 2>/dev/null)\n";
  }
  s += "echo end\n";
  return s;
}

NodeFacts parse_preflight(const std::string& output, const PreflightRequest& r,
                          const std::string& node) {
  NodeFacts f;
  bool nodir = false, nofile = false, end = false;
  int launcher = -1, program = -1;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string tag;
    words >> tag;
    if (tag == "nodir") nodir = true;
    if (tag == "nofile") nofile = true;
    if (tag == "end") end = true;
    if (tag == "launcher") words >> launcher;
    if (tag == "program") words >> program;
    if (tag == "port") words >> f.free_port;
    if (tag == "address") {
      std::string client, client_port, server;
      if (words >> client >> client_port >> server) f.address = server;
    }
  }
  if (nodir) {
    f.problems.push_back(fmt::format("{}: workdir {} does not exist", node, r.workdir));
    return f;
  }
  if (!end) {
    f.problems.push_back(fmt::format("{}: the preflight check did not finish", node));
    return f;
  }
  if (!r.launcher_candidates.empty()) {
    if (launcher < 0) {
      f.problems.push_back(
          fmt::format("{}: dslaunch not found (tried {})", node, tried(r.launcher_candidates)));
    } else {
      f.launcher = r.launcher_candidates.at(launcher);
    }
  }
  if (!r.program_candidates.empty()) {
    if (program < 0) {
      f.problems.push_back(
          fmt::format("{}: program not found (tried {})", node, tried(r.program_candidates)));
    } else {
      f.program = r.program_candidates.at(program);
    }
  }
  if (nofile) {
    f.problems.push_back(
        fmt::format("{}: {} does not exist (in {})", node, r.required_file, r.workdir));
  }
  return f;
}

}  // namespace ds::launcher
