// Whether two ranks can share memory: same kernel boot, same host name, same PID and mount
// namespaces (so /dev/shm and process ids mean the same thing to both).
#pragma once

#include <string>

namespace ds::comm {

// "<hostname>|<boot id>|pid:<ns inode>|mnt:<ns inode>"; equal strings mean one shared host.
std::string host_identity();

// This machine's host name (gethostname).
std::string host_name();

// The running kernel's boot id (/proc/sys/kernel/random/boot_id): random per boot, so equal ids
// mean one machine, even from two containers that give it different host names.
std::string kernel_boot_id();

// Whether process `pid`, started at `start_time` (clock ticks after boot, /proc/<pid>/stat
// field 22), is still running. Zombies count as dead; so does a recycled pid.
bool process_alive(int pid, unsigned long long start_time);
unsigned long long process_start_time(int pid);

}  // namespace ds::comm
