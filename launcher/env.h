// The environment ranks get beyond the process contract, and quoting for the
// remote shell.
//
// Local ranks inherit the launcher's whole environment. Remote ranks start from
// what sshd gives a fresh session, so the launcher forwards an explicit set, in
// increasing precedence: a `.dsenv` file (in $HOME, then the current directory —
// DeepSpeed's `.deepspeed_env`), every variable whose name starts with an
// `--env-prefix` (NCCL_, UCX_ and GLOO_ by default, like DeepSpeed's exports), and
// `--env KEY=VAL`. The set travels to the node agent inside the plan, never
// through a shell, so no value can be mangled; the few strings that do go through
// the remote shell (paths, the agent's command) are quoted with shell_quote.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds::launcher {

// Ordered KEY=VALUE pairs; set() replaces an existing key in place.
class EnvList {
 public:
  void set(const std::string& key, const std::string& value);
  const std::string* find(const std::string& key) const;
  void merge(const EnvList& other);
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }
  bool empty() const { return items_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// Prefixes forwarded even without --env-prefix: the communication libraries' knobs.
inline const std::vector<std::string> kDefaultEnvPrefixes = {"NCCL_", "UCX_", "GLOO_"};

// `s` as one word for a POSIX shell: single quotes, with ' written as '\''. Safe
// for every byte: spaces, $, backticks, newlines, quotes.
std::string shell_quote(std::string_view s);
// Each word quoted (bare when it has only safe characters), joined by spaces.
std::string shell_join(const std::vector<std::string>& words);

// True for names a shell would accept: [A-Za-z_][A-Za-z0-9_]*.
bool valid_env_name(std::string_view name);

// A .dsenv file: KEY=VALUE lines (the value verbatim to the end of the line, no
// unquoting), `#` comment lines, blank lines. Throws UsageError with file:line.
EnvList parse_dsenv(std::string_view text, const std::string& filename);

struct EnvSources {
  std::vector<std::string> env;         // --env KEY=VAL
  std::vector<std::string> env_prefix;  // --env-prefix
  std::vector<std::string> dsenv_dirs;  // where to look for .dsenv, lowest precedence first
  std::vector<std::string> environ;     // the launcher's environment, KEY=VAL
};

// The forwarded set. Also returns, in `files`, the .dsenv files it read.
EnvList forwarded_env(const EnvSources& sources, std::vector<std::string>* files = nullptr);

// The launcher's own environment as KEY=VAL strings.
std::vector<std::string> current_environ();

}  // namespace ds::launcher
