// The process contract from the environment: dslaunch/torchrun, Slurm, Open MPI, nothing;
// every malformed or inconsistent variable is a UsageError naming it.
#include <catch2/catch.hpp>

#include "worker/env_contract.h"

using namespace ds::worker;
using Catch::Matchers::Contains;

namespace {

RankInfo parse(const EnvMap& env) { return parse_env_contract(env); }

void require_usage_error(const EnvMap& env, const std::string& text) {
  try {
    parse(env);
    FAIL("accepted");
  } catch (const ds::UsageError& e) {
    CHECK_THAT(e.what(), Contains(text));
    CHECK(e.code() == ds::ExitCode::kUsage);
  }
}

const EnvMap kLauncher = {{"RANK", "5"},
                          {"WORLD_SIZE", "8"},
                          {"LOCAL_RANK", "1"},
                          {"LOCAL_WORLD_SIZE", "4"},
                          {"NODE_RANK", "1"},
                          {"NNODES", "2"},
                          {"MASTER_ADDR", "10.0.0.1"},
                          {"MASTER_PORT", "29600"},
                          {"DS_RUN_ID", "r1"},
                          {"DS_RUN_TOKEN", "tok"}};

EnvMap with(EnvMap env, const std::string& key, const std::string& value) {
  env.insert_or_assign(key, value);
  return env;
}

EnvMap without(EnvMap env, const std::string& key) {
  env.erase(key);
  return env;
}

}  // namespace

TEST_CASE("env contract: nothing set is a single rank", "[bootstrap]") {
  const RankInfo info = parse({});
  CHECK(info.source == ContractSource::kSingle);
  CHECK(info.rank == 0);
  CHECK(info.world_size == 1);
  CHECK(info.rendezvous_timeout == std::chrono::seconds(300));
}

TEST_CASE("env contract: launcher variables (dslaunch, torchrun, DeepSpeed)", "[bootstrap]") {
  const RankInfo info = parse(kLauncher);
  CHECK(info.source == ContractSource::kLauncher);
  CHECK(info.rank == 5);
  CHECK(info.world_size == 8);
  CHECK(info.local_rank == 1);
  CHECK(info.local_world_size == 4);
  CHECK(info.node_rank == 1);
  CHECK(info.nnodes == 2);
  CHECK(info.master_addr == "10.0.0.1");
  CHECK(info.master_port == 29600);
  CHECK(info.run_id == "r1");
  CHECK(info.run_token == "tok");
  // Aliases: LOCAL_SIZE, GROUP_RANK, CROSS_SIZE.
  EnvMap aliases = without(without(without(kLauncher, "LOCAL_WORLD_SIZE"), "NODE_RANK"), "NNODES");
  aliases.insert_or_assign("LOCAL_SIZE", std::string("4"));
  aliases.insert_or_assign("GROUP_RANK", std::string("1"));
  aliases.insert_or_assign("CROSS_SIZE", std::string("2"));
  const RankInfo a = parse(aliases);
  CHECK(a.local_world_size == 4);
  CHECK(a.node_rank == 1);
  CHECK(a.nnodes == 2);
  // Timeouts and backend from DS_* variables.
  EnvMap tuned =
      with(with(with(kLauncher, "DS_RENDEZVOUS_TIMEOUT", "12.5"), "DS_COLLECTIVE_TIMEOUT", "60"),
           "DS_COMM_BACKEND", "gloo");
  tuned.insert_or_assign("DS_SOCKET_IFNAME", std::string("eth0"));
  const RankInfo t = parse(tuned);
  CHECK(t.rendezvous_timeout == std::chrono::milliseconds(12500));
  CHECK(t.collective_timeout == std::chrono::seconds(60));
  CHECK(t.backend == ds::comm::Backend::kGloo);
  CHECK(t.socket_ifname == "eth0");
}

TEST_CASE("env contract: bad launcher variables name themselves", "[bootstrap]") {
  require_usage_error(without(kLauncher, "WORLD_SIZE"), "RANK is set but WORLD_SIZE is not");
  require_usage_error(with(kLauncher, "RANK", "x5"), "RANK='x5' is not a whole number");
  require_usage_error(with(kLauncher, "RANK", "8"), "RANK=8 is outside 0..7");
  require_usage_error(with(kLauncher, "RANK", "-1"), "RANK=-1 is outside");
  require_usage_error(with(kLauncher, "LOCAL_RANK", "4"), "LOCAL_RANK=4 is outside 0..3");
  require_usage_error(with(kLauncher, "LOCAL_SIZE", "3"),
                      "LOCAL_WORLD_SIZE=4 and LOCAL_SIZE=3 disagree");
  require_usage_error(with(kLauncher, "NODE_RANK", "2"), "NODE_RANK=2 is outside 0..1");
  require_usage_error(without(kLauncher, "MASTER_ADDR"), "MASTER_ADDR is not set");
  require_usage_error(with(kLauncher, "MASTER_PORT", "70000"),
                      "MASTER_PORT=70000 is not a TCP port");
  require_usage_error(with(kLauncher, "MASTER_PORT", "http"), "MASTER_PORT='http'");
  require_usage_error(with(kLauncher, "WORLD_SIZE", "0"), "world size 0");
  require_usage_error(with(kLauncher, "DS_RENDEZVOUS_TIMEOUT", "soon"),
                      "DS_RENDEZVOUS_TIMEOUT='soon'");
  require_usage_error(with(kLauncher, "DS_RENDEZVOUS_TIMEOUT", "-3"), "positive number of seconds");
  require_usage_error(with(kLauncher, "DS_COMM_BACKEND", "mpi"), "DS_COMM_BACKEND='mpi'");
}

TEST_CASE("env contract: Slurm", "[bootstrap]") {
  const EnvMap slurm = {{"SLURM_PROCID", "5"},
                        {"SLURM_NTASKS", "6"},
                        {"SLURM_LOCALID", "1"},
                        {"SLURM_NODEID", "2"},
                        {"SLURM_NNODES", "3"},
                        {"SLURM_TASKS_PER_NODE", "2(x3)"},
                        {"SLURM_JOB_NODELIST", "gpu[07-09],cpu1"},
                        {"SLURM_JOB_ID", "4242"},
                        {"SLURM_LAUNCH_NODE_IPADDR", "10.9.9.9"}};
  const RankInfo info = parse(slurm);
  CHECK(info.source == ContractSource::kSlurm);
  CHECK(info.rank == 5);
  CHECK(info.world_size == 6);
  CHECK(info.local_rank == 1);
  CHECK(info.local_world_size == 2);
  CHECK(info.node_rank == 2);
  CHECK(info.nnodes == 3);
  CHECK(info.master_addr == "gpu07");  // the first node hosts rank 0
  CHECK(info.master_port == 20000 + 4242);
  CHECK(info.run_id == "slurm-4242.0");
  CHECK(parse(with(slurm, "MASTER_ADDR", "head")).master_addr == "head");
  CHECK(parse(without(slurm, "SLURM_JOB_NODELIST")).master_addr == "10.9.9.9");
  // RANK and friends win over Slurm's (dslaunch inside an allocation).
  CHECK(parse(with(with(with(slurm, "RANK", "0"), "WORLD_SIZE", "1"), "MASTER_ADDR", "a")).source ==
        ContractSource::kLauncher);
  CHECK(first_slurm_host("node5") == "node5");
  CHECK(first_slurm_host("n[001,004-006]") == "n001");
  CHECK(first_slurm_host("a1,b[2-3]") == "a1");
  CHECK(slurm_tasks_on_node("4(x2),3", 0) == 4);
  CHECK(slurm_tasks_on_node("4(x2),3", 1) == 4);
  CHECK(slurm_tasks_on_node("4(x2),3", 2) == 3);
  CHECK_THROWS_AS(slurm_tasks_on_node("4(x2),3", 3), ds::UsageError);
  require_usage_error(without(slurm, "SLURM_NTASKS"), "SLURM_NTASKS is not");
  require_usage_error(with(slurm, "SLURM_LOCALID", "2"), "LOCAL_RANK=2 is outside 0..1");
}

TEST_CASE("env contract: Open MPI", "[bootstrap]") {
  const EnvMap ompi = {{"OMPI_COMM_WORLD_RANK", "3"},
                       {"OMPI_COMM_WORLD_SIZE", "4"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                       {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                       {"MASTER_ADDR", "n0"}};
  const RankInfo info = parse(ompi);
  CHECK(info.source == ContractSource::kOpenMpi);
  CHECK(info.rank == 3);
  CHECK(info.world_size == 4);
  CHECK(info.local_rank == 1);
  CHECK(info.local_world_size == 2);
  CHECK(info.nnodes == 2);
  CHECK(info.node_rank == 1);
  CHECK(info.master_port == 29500);
  require_usage_error(without(ompi, "MASTER_ADDR"), "Open MPI does not provide one");
}
