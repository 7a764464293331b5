#!/usr/bin/env bash
# A throwaway SSH "cluster" for the launcher's ssh tests: one sshd per loopback
# alias 127.0.0.2-127.0.0.5 on port 2222, with host keys, a user key, known_hosts
# and an ssh_config made fresh under DIR. Nothing in /etc/ssh or ~/.ssh is read or
# changed: point dslaunch at it with `--ssh_config DIR/ssh_config`.
#
#   scripts/testcluster.sh start [DIR]           start the four hosts (stops leftovers first)
#   scripts/testcluster.sh stop [DIR]            stop them and remove DIR
#   scripts/testcluster.sh kill-host ADDR [DIR]  SIGKILL one host's sshd and its open
#                                                connections, as if the node's sshd died
#
# Processes are only ever found through the pid files written here and their
# children (by parent pid) — never by name.
set -euo pipefail

readonly kHosts=(127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5)
readonly kPort=2222
readonly kSshd=/usr/sbin/sshd

usage() {
  echo "usage: $0 start|stop [DIR] | kill-host ADDR [DIR]" >&2
  exit 2
}

# The sshd processes under `pid` (its connection handlers), found by parent pid.
# We stop descending at the first non-sshd process: those are the sessions'
# commands, which must notice the dropped connection on their own.
sshd_tree() {
  local pid=$1 child
  echo "$pid"
  # shellcheck disable=SC2013  # the file holds pids separated by spaces
  for child in $(cat "/proc/$pid/task/"*/children 2>/dev/null); do
    if [ "$(readlink "/proc/$child/exe" 2>/dev/null)" = "$kSshd" ]; then
      sshd_tree "$child"
    fi
  done
}

kill_host() {  # addr dir signal
  local pidfile="$2/sshd_$1.pid" pid pids state
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  # Only a pid whose executable is still sshd: the file may be stale.
  if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$kSshd" ]; then
    pids=$(sshd_tree "$pid")
    # shellcheck disable=SC2086
    kill "-$3" $pids 2>/dev/null || true
    # Gone, or a zombie nobody reaps (a container's init may not).
    for _ in $(seq 50); do
      state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
      [ -z "$state" ] || [ "$state" = Z ] && break
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
}

stop() {
  local dir=$1 addr
  [ -d "$dir" ] || return 0
  for addr in "${kHosts[@]}"; do kill_host "$addr" "$dir" TERM; done
  rm -rf "$dir"
}

start() {
  local dir=$1 addr
  stop "$dir"
  mkdir -p "$dir" /run/sshd
  chmod 700 "$dir"
  ssh-keygen -q -t ed25519 -N '' -C dstrain-testcluster -f "$dir/id_ed25519"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  : >"$dir/known_hosts"
  for addr in "${kHosts[@]}"; do
    ssh-keygen -q -t ed25519 -N '' -C "host-$addr" -f "$dir/host_$addr"
    echo "[$addr]:$kPort $(cut -d' ' -f1,2 "$dir/host_$addr.pub")" >>"$dir/known_hosts"
    cat >"$dir/sshd_$addr.conf" <<EOF
ListenAddress $addr:$kPort
HostKey $dir/host_$addr
PidFile $dir/sshd_$addr.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
X11Forwarding no
MaxStartups 100
LogLevel ERROR
EOF
    "$kSshd" -f "$dir/sshd_$addr.conf" -E "$dir/sshd_$addr.log"
  done
  cat >"$dir/ssh_config" <<EOF
Host 127.0.0.*
  Port $kPort
  User $(id -un)
  IdentityFile $dir/id_ed25519
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
EOF
  # Ready when every sshd accepts connections.
  for addr in "${kHosts[@]}"; do
    for i in $(seq 50); do
      if (exec 3<>"/dev/tcp/$addr/$kPort") 2>/dev/null; then break; fi
      if [ "$i" = 50 ]; then
        echo "testcluster: sshd on $addr:$kPort did not start; see $dir/sshd_$addr.log" >&2
        exit 1
      fi
      sleep 0.1
    done
  done
  echo "testcluster: ${kHosts[*]} port $kPort; use --ssh_config $dir/ssh_config"
}

[ $# -ge 1 ] || usage
case "$1" in
  start) start "${2:-/tmp/dstrain-testcluster}" ;;
  stop) stop "${2:-/tmp/dstrain-testcluster}" ;;
  kill-host)
    [ $# -ge 2 ] || usage
    kill_host "$2" "${3:-/tmp/dstrain-testcluster}" KILL
    ;;
  *) usage ;;
esac
