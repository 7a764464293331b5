// create_process_group: the one place that knows every backend (like ggml's backend
// registry), picking one for kAuto.
#include <fmt/format.h>

#include "comm/gloo/gloo_process_group.h"
#include "comm/host_identity.h"
#include "comm/process_group.h"
#include "comm/self_process_group.h"
#include "comm/shm/shm_process_group.h"
#include "util/log.h"

#if defined(DS_WITH_NCCL)
#include "comm/nccl/nccl_process_group.h"
#endif

namespace ds::comm {
namespace {

// Every rank compares its host with rank 0's and counts mismatches in the store; all agree
// because all read the same final count. O(1) requests per rank, whatever the group size.
bool all_on_one_host(const GroupContext& context) {
  if (context.size == 1) return true;
  Store& store = *context.store;
  const std::string mine = host_identity();
  if (context.rank == 0) store.set("host/0", mine);
  const bool same = context.rank == 0 || store.get("host/0") == mine;
  store.add("host/elsewhere", same ? 0 : 1);
  store.set(fmt::format("host/checked/{}", context.rank), "");
  std::vector<std::string> checked;
  for (int r = 0; r < context.size; ++r) checked.push_back(fmt::format("host/checked/{}", r));
  store.wait(checked);
  return store.get("host/elsewhere") == "0";
}

std::shared_ptr<ProcessGroup> make_nccl(GroupContext context) {
#if defined(DS_WITH_NCCL)
  return std::make_shared<NcclProcessGroup>(std::move(context));
#else
  (void)context;
  throw UsageError("this build of dstrain has no NCCL backend",
                   "rebuild with -DDS_CUDA=ON on a machine with the CUDA toolkit and NCCL, or "
                   "use DS_COMM_BACKEND=gloo for CPU tensors");
#endif
}

}  // namespace

std::shared_ptr<ProcessGroup> create_process_group(GroupContext context) {
  DS_CHECK(context.store != nullptr, "group {} has no store", context.name);
  // One CPU rank needs no transport; GPU tensors still go through NCCL.
  if (context.size == 1 && context.cuda_device < 0 && context.backend != Backend::kNccl) {
    return std::make_shared<SelfProcessGroup>(std::move(context));
  }
  switch (context.backend) {
    case Backend::kNccl:
      return make_nccl(std::move(context));
    case Backend::kGloo:
      return std::make_shared<GlooProcessGroup>(std::move(context));
    case Backend::kShm: {
      if (!all_on_one_host(context)) {
        throw UsageError(fmt::format("DS_COMM_BACKEND=shm, but the ranks of group '{}' run on "
                                     "more than one host",
                                     context.name),
                         "use auto or gloo for groups that span hosts");
      }
      std::string why;
      if (auto group = ShmProcessGroup::create(context, &why)) return group;
      throw Error(
          fmt::format("shared memory for group '{}' could not be set up: {}", context.name, why),
          "use DS_COMM_BACKEND=gloo, or give /dev/shm more room");
    }
    case Backend::kAuto:
      break;
  }
  if (context.cuda_device >= 0) return make_nccl(std::move(context));
  if (all_on_one_host(context)) {
    std::string why;
    if (auto group = ShmProcessGroup::create(context, &why)) return group;
    if (context.rank == 0) {
      log::warn("group '{}': shared memory unavailable ({}); using Gloo over TCP", context.name,
                why);
    }
  }
  return std::make_shared<GlooProcessGroup>(std::move(context));
}

}  // namespace ds::comm
