#include "launcher/resources.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "util/error.h"

namespace ds::launcher {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

const HostEntry* find_host(const std::vector<HostEntry>& hosts, const std::string& key) {
  for (const HostEntry& h : hosts) {
    if (h.key() == key) return &h;
  }
  return nullptr;
}

std::string known_hosts(const std::vector<HostEntry>& hosts) {
  std::string out;
  for (const HostEntry& h : hosts) out += (out.empty() ? "" : ", ") + h.key();
  return out;
}

}  // namespace

std::vector<NodeSlots> filter_resources(const std::vector<HostEntry>& hosts,
                                        const std::string& include, const std::string& exclude) {
  if (!include.empty() && !exclude.empty()) {
    throw UsageError("--include and --exclude cannot be used together", "give one of them");
  }
  std::map<std::string, std::set<int>> chosen;
  if (include.empty()) {
    for (const HostEntry& h : hosts) {
      for (int s = 0; s < h.slots; ++s) chosen[h.key()].insert(s);
    }
  }
  const bool including = !include.empty();
  const std::string& filter = including ? include : exclude;
  const char* flag = including ? "--include" : "--exclude";
  if (!filter.empty()) {
    for (const std::string& part : split(filter, '@')) {
      // `host` or `host:slots`; a key may itself hold a port (`host:2222`), so the
      // whole part is tried as a host before splitting off a slot list.
      std::string key = part;
      std::string slot_list;
      if (!find_host(hosts, key)) {
        const size_t colon = part.rfind(':');
        if (colon != std::string::npos) {
          key = part.substr(0, colon);
          slot_list = part.substr(colon + 1);
        }
      }
      const HostEntry* host = find_host(hosts, key);
      if (!host) {
        throw UsageError(
            fmt::format("{} '{}': host '{}' is not in the hostfile", flag, filter, key),
            fmt::format("hosts in the hostfile: {}", known_hosts(hosts)));
      }
      std::set<int>& slots = chosen[key];
      if (slot_list.empty()) {
        if (part.back() == ':') {
          throw UsageError(fmt::format("{} '{}': no slots after '{}:'", flag, filter, key));
        }
        for (int s = 0; s < host->slots; ++s) {
          if (including) {
            slots.insert(s);
          } else {
            slots.erase(s);
          }
        }
        continue;
      }
      for (const std::string& item : split(slot_list, ',')) {
        int slot = -1;
        const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), slot);
        if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
          throw UsageError(fmt::format("{} '{}': '{}' is not a slot number", flag, filter, item),
                           "the grammar is host[:slot,slot][@host...], e.g. 'n1:0,1@n2'");
        }
        if (slot < 0 || slot >= host->slots) {
          throw UsageError(fmt::format("{} '{}': host '{}' has no slot {} (it has slots=0..{})",
                                       flag, filter, key, slot, host->slots - 1));
        }
        if (including) {
          slots.insert(slot);
        } else {
          slots.erase(slot);
        }
      }
    }
  }
  std::vector<NodeSlots> out;
  for (const HostEntry& h : hosts) {
    const auto it = chosen.find(h.key());
    if (it == chosen.end() || it->second.empty()) continue;
    out.push_back({h, std::vector<int>(it->second.begin(), it->second.end())});
  }
  if (out.empty()) {
    throw UsageError(fmt::format("{} '{}' leaves no slots to run on", flag, filter));
  }
  return out;
}

std::vector<NodeSlots> select_resources(const std::vector<HostEntry>& hosts,
                                        const ResourceRequest& request) {
  if ((request.num_nodes > 0 || request.num_gpus > 0) &&
      (!request.include.empty() || !request.exclude.empty())) {
    // As DeepSpeed: the two ways of choosing resources do not combine.
    throw UsageError("--num_nodes/--num_gpus cannot be combined with --include/--exclude",
                     "name the slots with --include, or count them with --num_nodes/--num_gpus");
  }
  std::vector<NodeSlots> nodes = filter_resources(hosts, request.include, request.exclude);
  if (request.num_nodes > 0) {
    if (request.num_nodes > static_cast<int>(nodes.size())) {
      throw UsageError(
          fmt::format("--num_nodes {} but there {} only {}", request.num_nodes,
                      nodes.size() == 1 ? "is" : "are",
                      nodes.size() == 1 ? "1 node" : fmt::format("{} nodes", nodes.size())),
          request.from_hostfile ? "add nodes to the hostfile or ask for fewer"
                                : "give a --hostfile to run on several nodes");
    }
    nodes.resize(request.num_nodes);
  }
  if (request.num_gpus > 0) {
    for (NodeSlots& n : nodes) {
      if (request.from_hostfile && request.num_gpus > n.host.slots) {
        throw UsageError(fmt::format("--num_gpus {} but host '{}' has slots={} (hostfile line {})",
                                     request.num_gpus, n.host.key(), n.host.slots, n.host.line),
                         "ask for fewer ranks per node, or raise slots in the hostfile");
      }
      n.slots.clear();
      for (int s = 0; s < request.num_gpus; ++s) n.slots.push_back(s);
    }
  }
  return nodes;
}

std::vector<HostEntry> local_host(int slots) {
  HostEntry h;
  h.host = "localhost";
  h.slots = std::max(slots, 1);
  return {h};
}

std::string apply_cuda_visible_devices(const std::string& cuda_visible_devices,
                                       ResourceRequest& request) {
  if (cuda_visible_devices.empty()) return "";
  const std::string detected = "CUDA_VISIBLE_DEVICES=" + cuda_visible_devices;
  if (!request.include.empty() || !request.exclude.empty() || request.num_nodes > 1 ||
      request.num_gpus > 0) {
    return detected +
           " is ignored because --include/--exclude/--num_gpus/--num_nodes choose the devices";
  }
  request.include = "localhost:" + cuda_visible_devices;
  return detected + ": using --include " + request.include;
}

}  // namespace ds::launcher
