// Hostfiles in DeepSpeed's grammar: one `host slots=N` per line, `#` comments and
// blank lines. The host may be `user@host`, `host:port` or both (`[v6addr]:port`
// for IPv6). Open MPI's `max_slots=N` is accepted and ignored. Everything else is
// an error naming file and line: a typo here otherwise launches the wrong job.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ds::launcher {

struct HostEntry {
  std::string user;  // empty: from the ssh config, else the current user
  std::string host;  // name or address, as written (without brackets)
  int port = -1;     // -1: from --ssh_port, else the ssh config, else 22
  int slots = 1;     // GPUs (or processes on a CPU node)
  int line = 0;      // where it came from, for messages

  // The name --include/--exclude use: `host`, or `host:port` when a port is given
  // (so two sshds on one address stay distinct). Never the user: '@' separates nodes.
  std::string key() const;
  // As it was written: [user@]host[:port].
  std::string spec() const;
};

// Parses `[user@]host[:port]`; throws UsageError (without file context) when bad.
HostEntry parse_host_spec(std::string_view spec);

// Parses hostfile text; `filename` only names the file in errors.
std::vector<HostEntry> parse_hostfile(std::string_view text, const std::string& filename);

// Reads and parses a hostfile. A missing file is an error (exit 2), never a
// fallback to this host: the user asked for those nodes.
std::vector<HostEntry> read_hostfile(const std::string& path);

}  // namespace ds::launcher
