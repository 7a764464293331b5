// The node agent: owns one node's ranks for the launcher (DESIGN.md, "Process
// contract"). Remote nodes run it as `dslaunch --node-agent` over an SSH exec
// channel; this host runs the same code as a child of the launcher. It talks the
// protocol of protocol.h on `in_fd`/`out_fd`:
//
// - receives the PLAN, starts every rank in one process group (rank_group.h),
//   adding CUDA_VISIBLE_DEVICES when the node has GPUs and OMP_NUM_THREADS
//   (cores / local ranks) when unset;
// - relays each rank's stdout/stderr line by line, and each exit status;
// - stops the group — SIGTERM, the grace period, SIGKILL — on STOP, on SIGTERM,
//   SIGINT or SIGHUP, when its input ends (a dropped SSH connection looks like
//   that from this side) and when the launcher's heartbeat goes silent;
// - when every rank has ended, removes anything left in the group and says DONE.
#pragma once

namespace ds::launcher {

// Returns the agent's exit code: 0 once it has cleaned up, 1 when it never got a plan.
int run_node_agent(int in_fd, int out_fd);

}  // namespace ds::launcher
