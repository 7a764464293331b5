// Facts about the machine the code runs on: GPUs, cores, names, ports, paths.
// Used by the launcher for this host and by the node agent for its node.
#pragma once

#include <string>

#include "launcher/hostfile.h"

namespace ds::launcher {

// NVIDIA GPUs present (/dev/nvidia<N>); 0 on a CPU machine. Needs no CUDA.
int gpu_count();
// Cores this process may run on (its affinity mask, so containers count right).
int cpu_count();
// True when `host` names this machine and needs no SSH: localhost, a loopback
// address of 127.0.0.1/::1, or this host's name — and no user or port was given.
bool is_local_host(const HostEntry& host);
// A TCP port free right now on this machine (bound to 0, then released).
int free_port();
// The address of this machine on the route to `host` ("as `host` would see us").
// Empty when `host` does not resolve.
std::string route_address(const std::string& host);
// The absolute path of the running executable.
std::string self_exe();

}  // namespace ds::launcher
