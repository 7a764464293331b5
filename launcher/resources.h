// Which nodes and slots the run uses: DeepSpeed's resource selection
// (deepspeed/launcher/runner.py) over the hostfile — --include/--exclude with
// `host[:slot,slot][@host...]`, then --num_nodes and --num_gpus — except that
// asking for more than the hostfile has is an error instead of silently less.
#pragma once

#include <string>
#include <vector>

#include "launcher/hostfile.h"

namespace ds::launcher {

// A node of the run and the slots (GPU indices) its ranks get, in hostfile order.
struct NodeSlots {
  HostEntry host;
  std::vector<int> slots;  // ascending
  // More ranks than the node has GPUs: every rank sees all of them and the worker deals them
  // out round-robin (worker/device_choice.h), so ZeRO and pipelines run on a one-GPU machine.
  bool share_gpus = false;
};

struct ResourceRequest {
  std::string include;
  std::string exclude;
  int num_nodes = -1;          // -1: all
  int num_gpus = -1;           // -1: each node's slots
  bool from_hostfile = false;  // --num_gpus is then checked against the slots
};

// DeepSpeed's parse_resource_filter: --include keeps only what it names,
// --exclude removes what it names (a whole host, or some of its slots); nodes left
// without slots drop out; order follows the hostfile. Throws UsageError.
std::vector<NodeSlots> filter_resources(const std::vector<HostEntry>& hosts,
                                        const std::string& include, const std::string& exclude);

// filter_resources, then the first --num_nodes nodes, then slots 0..num_gpus-1 on each.
std::vector<NodeSlots> select_resources(const std::vector<HostEntry>& hosts,
                                        const ResourceRequest& request);

// The single node used without a hostfile: `localhost` with `slots` slots.
std::vector<HostEntry> local_host(int slots);

// DeepSpeed's treatment of CUDA_VISIBLE_DEVICES on a run without a hostfile: when
// no resource flag is given it becomes `--include localhost:<list>`, otherwise it
// is ignored. Returns the note to print (empty if the variable is unset); may set
// request.include.
std::string apply_cuda_visible_devices(const std::string& cuda_visible_devices,
                                       ResourceRequest& request);

}  // namespace ds::launcher
