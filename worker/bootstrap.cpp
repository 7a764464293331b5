#include "worker/bootstrap.h"

#include "comm/hash_store.h"
#include "comm/prefix_store.h"
#include "comm/rendezvous.h"
#include "comm/tcp_store.h"
#include "util/log.h"

namespace ds::worker {

Bootstrap bootstrap(const BootstrapOptions& options, const EnvMap& env) {
  Bootstrap boot;
  RankInfo& info = boot.info;
  info = parse_env_contract(env);
  if (options.rendezvous_timeout) info.rendezvous_timeout = *options.rendezvous_timeout;
  if (options.collective_timeout) info.collective_timeout = *options.collective_timeout;
  if (options.backend) info.backend = *options.backend;
  boot.topology = comm::Topology::make(info.world_size, options.pipe_stages);

  std::shared_ptr<comm::Store> root;
  if (info.world_size == 1) {
    root = std::make_shared<comm::HashStore>(info.rendezvous_timeout);
  } else {
    if (info.run_token.empty() && info.rank == 0) {
      log::warn(
          "DS_RUN_TOKEN is not set: the store at port {} accepts any client that speaks "
          "its protocol (dslaunch sets a random token)",
          info.master_port);
    }
    comm::TcpStoreOptions store;
    store.host = info.master_addr;
    store.port = info.master_port;
    store.token = info.run_token;
    store.is_server = info.rank == 0;
    store.rank = info.rank;
    store.timeout = info.rendezvous_timeout;
    root = std::make_shared<comm::TcpStore>(store);
  }
  boot.store = std::make_shared<comm::PrefixStore>("run/" + info.run_id, root);
  comm::rendezvous(*boot.store, info.rank, info.world_size, info.rendezvous_timeout);

  comm::GroupContext context;
  context.name = "world";
  context.rank = info.rank;
  context.size = info.world_size;
  context.store = std::make_shared<comm::PrefixStore>("pg/world", boot.store);
  context.root_store = root;
  context.timeout = info.collective_timeout;
  context.backend = info.backend;
  context.master_addr = info.master_addr;
  context.socket_ifname = info.socket_ifname;
  // The host groups: GPU buffers go over NCCL twins made once the devices are known
  // (train_command.cpp), on the device each rank chose rather than GPU LOCAL_RANK.
  context.shm_chunk_bytes = info.shm_chunk_bytes;
  boot.world = comm::create_process_group(std::move(context));
  boot.groups = comm::make_topology_groups(*boot.world, boot.topology);
  return boot;
}

}  // namespace ds::worker
