#include "launcher/ssh_session.h"

#include <libssh/libssh.h>

#include "util/error.h"

namespace ds::launcher {

SshSession::SshSession(const HostEntry& host, const SshSettings& settings) : name_(host.spec()) {
  session_ = ssh_new();
  DS_CHECK(session_ != nullptr, "ssh_new failed");
  ssh_options_set(session_, SSH_OPTIONS_HOST, host.host.c_str());
  // The config is read first so that what the user said on the command line or in
  // the hostfile overrides it, as with OpenSSH.
  const char* config = settings.config_file.empty() ? nullptr : settings.config_file.c_str();
  if (ssh_options_parse_config(session_, config) != SSH_OK) {
    fail(fmt::format("cannot read ssh config {}", config ? config : "~/.ssh/config"),
         "fix the file or point --ssh_config elsewhere");
  }
  if (!host.user.empty()) ssh_options_set(session_, SSH_OPTIONS_USER, host.user.c_str());
  const int port = host.port > 0 ? host.port : settings.port;
  if (port > 0) ssh_options_set(session_, SSH_OPTIONS_PORT, &port);
  if (!settings.known_hosts.empty()) {
    ssh_options_set(session_, SSH_OPTIONS_KNOWNHOSTS, settings.known_hosts.c_str());
  }
  if (!settings.identity.empty()) {
    ssh_options_set(session_, SSH_OPTIONS_ADD_IDENTITY, settings.identity.c_str());
  }
  const long timeout = settings.timeout_s;
  ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &timeout);
  if (ssh_connect(session_) != SSH_OK) {
    fail(fmt::format("cannot connect: {}", ssh_get_error(session_)),
         "is the host up, sshd running and the port right (--ssh_port, the hostfile's "
         "host:port, or Port in ~/.ssh/config)?");
  }
  verify_host_key(settings);
  authenticate(settings);
}

SshSession::~SshSession() {
  if (session_) {
    if (ssh_is_connected(session_)) ssh_disconnect(session_);
    ssh_free(session_);
  }
}

void SshSession::fail(const std::string& what, const std::string& hint) {
  throw Error(what, hint);  // the runner names the node
}

void SshSession::verify_host_key(const SshSettings& settings) {
  switch (ssh_session_is_known_server(session_)) {
    case SSH_KNOWN_HOSTS_OK:
      return;
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      fail("HOST KEY MISMATCH: the key differs from the one in known_hosts",
           "someone may be intercepting the connection, or the host was reinstalled; check, "
           "then remove the old key with ssh-keygen -R");
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
      if (settings.accept_new) {
        if (ssh_session_update_known_hosts(session_) != SSH_OK) {
          fail(fmt::format("cannot record the host key: {}", ssh_get_error(session_)),
               "check that known_hosts is writable");
        }
        return;
      }
      fail("host key is not in known_hosts",
           "connect once with ssh to check and record it, or pass --ssh_accept_new");
    case SSH_KNOWN_HOSTS_ERROR:
      fail(fmt::format("cannot check the host key: {}", ssh_get_error(session_)),
           "check known_hosts (--ssh_known_hosts)");
  }
}

void SshSession::authenticate(const SshSettings&) {
  // ssh_userauth_none first: some servers require it, and it learns the methods.
  if (ssh_userauth_none(session_, nullptr) == SSH_AUTH_SUCCESS) return;
  const int rc = ssh_userauth_publickey_auto(session_, nullptr, nullptr);
  if (rc == SSH_AUTH_SUCCESS) return;
  char* user = nullptr;
  ssh_options_get(session_, SSH_OPTIONS_USER, &user);
  const std::string who = user ? user : "?";
  ssh_string_free_char(user);
  fail(fmt::format("public key authentication failed for user {}{}", who,
                   rc == SSH_AUTH_ERROR ? std::string(": ") + ssh_get_error(session_) : ""),
       "dslaunch needs keys without a passphrase or an ssh-agent: check IdentityFile in "
       "~/.ssh/config, --ssh_identity, and the node's authorized_keys");
}

CommandResult SshSession::run(const std::string& command) {
  ssh_channel channel = exec(command);
  CommandResult r;
  char buf[4096];
  for (int stream : {0, 1}) {
    int n;
    while ((n = ssh_channel_read(channel, buf, sizeof buf, stream)) > 0) {
      (stream == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
    }
  }
  ssh_channel_send_eof(channel);
  r.status = ssh_channel_get_exit_status(channel);
  ssh_channel_close(channel);
  ssh_channel_free(channel);
  return r;
}

ssh_channel SshSession::exec(const std::string& command) {
  ssh_channel channel = ssh_channel_new(session_);
  if (!channel || ssh_channel_open_session(channel) != SSH_OK ||
      ssh_channel_request_exec(channel, command.c_str()) != SSH_OK) {
    const std::string err = ssh_get_error(session_);
    if (channel) ssh_channel_free(channel);
    fail("cannot run a command: " + err, "check the node's sshd (MaxSessions, ForceCommand)");
  }
  return channel;
}

}  // namespace ds::launcher
