// dslaunch across four real sshd "hosts" (scripts/testcluster.sh: 127.0.0.2-5,
// port 2222, throwaway keys). Every test starts the cluster and always stops it,
// pass or fail; a file lock keeps parallel test processes from sharing it.
#include <sys/file.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <regex>

#include "launcher_test_helpers.h"
#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::Background;
using ds::testing::kBin;
using ds::testing::kSource;
using ds::testing::none_alive;
using ds::testing::parse_env;
using ds::testing::read_file;
using ds::testing::read_pids;
using ds::testing::run;
using ds::testing::Run;
using ds::testing::sleeper;
using ds::testing::TempDir;
using ds::testing::wait_until;

namespace {

const std::string kScript = kSource + "/scripts/testcluster.sh";

class TestCluster {
 public:
  TestCluster() : dir_("/tmp/dstrain-testcluster." + std::to_string(::getpid())) {
    lock_ = ::open("/tmp/dstrain-testcluster.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    REQUIRE(lock_ >= 0);
    REQUIRE(::flock(lock_, LOCK_EX) == 0);
    const Run r = run(kScript + " start " + dir_);
    if (r.code != 0) stop();
    INFO(r.out);
    REQUIRE(r.code == 0);
  }
  ~TestCluster() {
    stop();
    ::close(lock_);  // releases the lock
  }
  std::string launch(const std::string& hostfile) const {
    return kBin + "dslaunch --kill_grace 1 --ssh_config " + dir_ + "/ssh_config --hostfile " +
           hostfile + " ";
  }
  const std::string& dir() const { return dir_; }
  void kill_host(const std::string& addr) const {
    REQUIRE(run(kScript + " kill-host " + addr + " " + dir_).code == 0);
  }

 private:
  void stop() { run(kScript + " stop " + dir_); }
  std::string dir_;
  int lock_ = -1;
};

// 2 + 2 + 1 + 1 ranks on the four hosts.
std::string four_hosts(const TempDir& dir) {
  return dir.write("hosts",
                   "# test cluster\n127.0.0.2 slots=2\n127.0.0.3 slots=2\n"
                   "127.0.0.4 slots=1\n127.0.0.5 slots=1\n");
}

}  // namespace

TEST_CASE("ssh: every rank on every host gets its environment", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_env");
  dir.write(".dsenv", "FROM_DSENV=from the file\n");
  const std::string nasty = "it's $HOME `id` \"q\"";
  const Run r = run("cd " + dir.path().string() + " && NCCL_TEST_KNOB=7 MYAPP_X=y " +
                    cluster.launch(four_hosts(dir)) + "--env 'NASTY=it'\\''s $HOME `id` \"q\"' " +
                    "--env-prefix MYAPP_ -- sh -c 'env > env.$RANK; printf %s \"$NASTY\" > "
                    "nasty.$RANK'");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("6 ranks on 4 nodes, master 127.0.0.2:"));
  const std::vector<std::string> host_of = {"127.0.0.2", "127.0.0.2", "127.0.0.3",
                                            "127.0.0.3", "127.0.0.4", "127.0.0.5"};
  const std::vector<int> node_of = {0, 0, 1, 1, 2, 3};
  const std::vector<int> local_of = {0, 1, 0, 1, 0, 0};
  std::string port, token;
  for (int rank = 0; rank < 6; ++rank) {
    INFO("rank " << rank);
    auto env = parse_env(read_file(dir.file("env." + std::to_string(rank))));
    // Which sshd started it: the server address of its SSH connection.
    CHECK_THAT(env["SSH_CONNECTION"], Contains(" " + host_of[rank] + " 2222"));
    CHECK(env["RANK"] == std::to_string(rank));
    CHECK(env["WORLD_SIZE"] == "6");
    CHECK(env["NODE_RANK"] == std::to_string(node_of[rank]));
    CHECK(env["CROSS_RANK"] == std::to_string(node_of[rank]));
    CHECK(env["GROUP_RANK"] == std::to_string(node_of[rank]));
    CHECK(env["NNODES"] == "4");
    CHECK(env["CROSS_SIZE"] == "4");
    CHECK(env["LOCAL_RANK"] == std::to_string(local_of[rank]));
    CHECK(env["LOCAL_WORLD_SIZE"] == (node_of[rank] < 2 ? "2" : "1"));
    CHECK(env["LOCAL_SIZE"] == env["LOCAL_WORLD_SIZE"]);
    CHECK(env["MASTER_ADDR"] == "127.0.0.2");
    CHECK(std::regex_match(env["DS_RUN_TOKEN"], std::regex("[0-9a-f]{32}")));
    CHECK(std::stoi(env["OMP_NUM_THREADS"]) >= 1);
    CHECK(env["FROM_DSENV"] == "from the file");
    CHECK(env["NCCL_TEST_KNOB"] == "7");
    CHECK(env["MYAPP_X"] == "y");
    CHECK(read_file(dir.file("nasty." + std::to_string(rank))) == nasty);
    if (rank == 0) {
      port = env["MASTER_PORT"];
      token = env["DS_RUN_TOKEN"];
    }
    CHECK(env["MASTER_PORT"] == port);
    CHECK(env["DS_RUN_TOKEN"] == token);
  }
}

TEST_CASE("ssh: dsworker validate runs on all four hosts", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_validate");
  const Run r = run(cluster.launch(four_hosts(dir)) + "-- " + kBin + "dsworker validate " +
                    kSource + "/configs/tiny.yaml -n 6");
  INFO(r.out);
  CHECK(r.code == 0);
  for (int rank = 0; rank < 6; ++rank) {
    CHECK_THAT(r.out, Contains("[rank " + std::to_string(rank) + "] {"));
  }
}

TEST_CASE("ssh: a remote rank SIGKILLed -> 137, summary, nothing left anywhere", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_kill");
  Background launch(cluster.launch(four_hosts(dir)) + sleeper(dir, true), dir.file("out"));
  REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 6; }, 20));
  const auto pids = read_pids(dir.path());
  ::kill(std::stoi(read_file(dir.file("pid.3"))), SIGKILL);  // rank 3 runs on 127.0.0.3
  CHECK(launch.wait(10) == 137);
  CHECK(wait_until([&] { return none_alive(pids); }, 5));
  const std::string out = launch.output();
  INFO(out);
  CHECK_THAT(out, Contains("rank 3 on 127.0.0.3 (node 1, local rank 1) was killed by SIGKILL"));
  CHECK_THAT(out, Contains("out of memory"));
}

TEST_CASE("ssh: SIGINT to dslaunch -> 130 and no process of the run on any host", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_sigint");
  Background launch(cluster.launch(four_hosts(dir)) + sleeper(dir, true), dir.file("out"));
  REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 6; }, 20));
  const auto pids = read_pids(dir.path());
  launch.signal(SIGINT);
  CHECK(launch.wait(10) == 130);
  CHECK(wait_until([&] { return none_alive(pids); }, 5));
}

TEST_CASE("ssh: a node's sshd dies mid-run -> its ranks die, the launcher fails clearly", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_dropped");
  Background launch(cluster.launch(four_hosts(dir)) + sleeper(dir, false), dir.file("out"));
  REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 6; }, 20));
  const auto pids = read_pids(dir.path());
  cluster.kill_host("127.0.0.4");  // sshd and its connections; not the agent, not the ranks
  CHECK(launch.wait(15) == 1);
  CHECK(wait_until([&] { return none_alive(pids); }, 5));
  const std::string out = launch.output();
  INFO(out);
  CHECK_THAT(out, Contains("node 2 (127.0.0.4)"));
  CHECK_THAT(out, Contains("lost the connection"));
}

TEST_CASE("ssh: the preflight reports every unreachable host and missing path at once", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_preflight");
  const std::string started = dir.file("pid.");
  const std::string hosts = dir.write(
      "hosts", "127.0.0.2 slots=1\n127.0.0.6 slots=1\n127.0.0.3 slots=1\n127.0.0.7 slots=1\n");
  Run r = run(cluster.launch(hosts) + sleeper(dir, false));
  INFO(r.out);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("2 problems; nothing was started"));
  CHECK_THAT(r.out, Contains("node 1 (127.0.0.6): cannot connect"));
  CHECK_THAT(r.out, Contains("node 3 (127.0.0.7): cannot connect"));
  CHECK(read_pids(dir.path()).empty());

  r = run(cluster.launch(four_hosts(dir)) + "--workdir /nonexistent/wd -- true");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("4 problems"));
  CHECK_THAT(r.out, Contains("node 3 (127.0.0.5): workdir /nonexistent/wd does not exist"));
  r = run(cluster.launch(four_hosts(dir)) + "--worker_path /nonexistent/dsworker train.yaml");
  CHECK(r.code == 2);
  CHECK_THAT(r.out,
             Contains("node 0 (127.0.0.2): program not found (tried /nonexistent/dsworker)"));
  CHECK_THAT(r.out, Contains("train.yaml does not exist"));
}

TEST_CASE("ssh: host keys are checked strictly unless --ssh_accept_new", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_hostkeys");
  const std::string hosts = dir.write("hosts", "127.0.0.2 slots=1\n127.0.0.3 slots=1\n");
  const std::string empty_known = dir.write("known_hosts", "");
  Run r = run(cluster.launch(hosts) + "--ssh_known_hosts " + empty_known + " -- true");
  INFO(r.out);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("host key is not in known_hosts"));
  CHECK_THAT(r.out, Contains("--ssh_accept_new"));
  r = run(cluster.launch(hosts) + "--ssh_known_hosts " + empty_known + " --ssh_accept_new -- true");
  CHECK(r.code == 0);
  CHECK_THAT(read_file(empty_known), Contains("127.0.0.3"));
  r = run(cluster.launch(hosts) + "--ssh_known_hosts " + empty_known + " -- true");
  CHECK(r.code == 0);  // recorded: now known
}

TEST_CASE("ssh: --ssh_port, --ssh_identity and user@host work without an ssh config", "[ssh]") {
  const TestCluster cluster;
  const TempDir dir("dstrain_ssh_flags");
  const std::string empty_config = dir.write("ssh_config", "");
  const std::string user = run("id -un").out.substr(0, run("id -un").out.find('\n'));
  const std::string hosts =
      dir.write("hosts", user + "@127.0.0.2 slots=1\n127.0.0.3:2222 slots=1\n");
  const Run r = run(kBin + "dslaunch --ssh_config " + empty_config + " --ssh_port 2222" +
                    " --ssh_identity " + cluster.dir() + "/id_ed25519 --ssh_known_hosts " +
                    cluster.dir() + "/known_hosts --hostfile " + hosts +
                    " -- sh -c 'echo on $(echo $SSH_CONNECTION | cut -d\" \" -f3)'");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("[rank 0] on 127.0.0.2"));
  CHECK_THAT(r.out, Contains("[rank 1] on 127.0.0.3"));
}
