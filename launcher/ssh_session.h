// One SSH connection to one node, over libssh: connect, check the host key,
// authenticate with keys, run commands. Honours ~/.ssh/config (or --ssh_config):
// Host blocks, HostName, User, Port, IdentityFile, UserKnownHostsFile; explicit
// settings (the hostfile's user@host:port, --ssh_port, --ssh_identity) win.
#pragma once

#include <memory>
#include <string>

#include "launcher/hostfile.h"

struct ssh_session_struct;
struct ssh_channel_struct;

namespace ds::launcher {

struct SshSettings {
  std::string config_file;  // empty: ~/.ssh/config
  std::string known_hosts;  // empty: from the config, else ~/.ssh/known_hosts
  std::string identity;     // extra private key to try first
  int port = -1;            // for hosts without a port in the hostfile
  bool accept_new = false;  // trust and record host keys seen for the first time
  int timeout_s = 10;
};

struct CommandResult {
  int status = -1;
  std::string out;
  std::string err;
};

class SshSession {
 public:
  // Connects, verifies the host key, authenticates. Throws ds::Error whose hint
  // says what to do (the caller names the node).
  SshSession(const HostEntry& host, const SshSettings& settings);
  ~SshSession();
  SshSession(const SshSession&) = delete;
  SshSession& operator=(const SshSession&) = delete;

  // Runs `command` through the remote user's shell and collects its output.
  CommandResult run(const std::string& command);
  // Starts `command` on a new exec channel and returns it open; the session must
  // then be driven by one thread only (ssh_runner's pump).
  ssh_channel_struct* exec(const std::string& command);

  ssh_session_struct* raw() const { return session_; }
  const std::string& name() const { return name_; }

 private:
  [[noreturn]] void fail(const std::string& what, const std::string& hint);
  void verify_host_key(const SshSettings& settings);
  void authenticate(const SshSettings& settings);

  ssh_session_struct* session_ = nullptr;
  std::string name_;
};

}  // namespace ds::launcher
