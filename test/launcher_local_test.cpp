// dslaunch on this host, as a user runs it: the rank environment, failures and
// their exit codes, teardown, signals, broken hostfiles, --dry-run, quoting.
// Processes are checked by the pids the ranks write, never by name.
#include <catch2/catch.hpp>
#include <csignal>
#include <regex>

#include "launcher_test_helpers.h"
#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::alive;
using ds::testing::Background;
using ds::testing::kBin;
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

const std::string kLaunch = kBin + "dslaunch --kill_grace 1 ";

}  // namespace

TEST_CASE("local: every rank gets the process contract", "[launcher]") {
  const TempDir dir("dstrain_launch_env");
  const Run r = run("cd " + dir.path().string() + " && env -u OMP_NUM_THREADS " + kLaunch +
                    "--num_gpus 3 -- sh -c 'env > " + dir.file("env.") + "$RANK'");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("3 ranks on 1 node, master 127.0.0.1:"));
  std::string token, port;
  for (int rank = 0; rank < 3; ++rank) {
    auto env = parse_env(read_file(dir.file("env." + std::to_string(rank))));
    INFO("rank " << rank);
    CHECK(env["RANK"] == std::to_string(rank));
    CHECK(env["LOCAL_RANK"] == std::to_string(rank));
    CHECK(env["WORLD_SIZE"] == "3");
    CHECK(env["LOCAL_WORLD_SIZE"] == "3");
    CHECK(env["LOCAL_SIZE"] == "3");
    CHECK(env["NODE_RANK"] == "0");
    CHECK(env["CROSS_RANK"] == "0");
    CHECK(env["GROUP_RANK"] == "0");
    CHECK(env["NNODES"] == "1");
    CHECK(env["CROSS_SIZE"] == "1");
    CHECK(env["MASTER_ADDR"] == "127.0.0.1");
    CHECK(std::regex_match(env["DS_RUN_TOKEN"], std::regex("[0-9a-f]{32}")));
    CHECK(!env["DS_RUN_ID"].empty());
    CHECK(std::stoi(env["OMP_NUM_THREADS"]) >= 1);
    if (rank == 0) {
      token = env["DS_RUN_TOKEN"];
      port = env["MASTER_PORT"];
    }
    CHECK(env["DS_RUN_TOKEN"] == token);  // one secret per run
    CHECK(env["MASTER_PORT"] == port);
  }
  // A set OMP_NUM_THREADS is left alone.
  REQUIRE(run("OMP_NUM_THREADS=7 " + kLaunch + "-- sh -c 'echo omp=$OMP_NUM_THREADS'")
              .out.find("omp=7") != std::string::npos);
}

TEST_CASE("local: --env values arrive byte for byte, .dsenv is read", "[launcher]") {
  const TempDir dir("dstrain_launch_quote");
  const std::string nasty = "it's \"q\" $HOME `id` $(id) a\\b\nline2 ;|&*";
  dir.write(".dsenv", "# forwarded\nFROM_DSENV=yes it is\n");
  // The value goes through our shell -> dslaunch's argv: quote it for that shell.
  std::string quoted = "'";
  for (char c : nasty) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  const Run r = run("cd " + dir.path().string() + " && HOME=" + dir.path().string() + " " +
                    kLaunch + "--env NASTY=" + quoted +
                    " -- sh -c 'printf %s \"$NASTY\" > nasty.out; printf %s \"$FROM_DSENV\" > "
                    "dsenv.out'");
  REQUIRE(r.code == 0);
  CHECK(read_file(dir.file("nasty.out")) == nasty);
  CHECK(read_file(dir.file("dsenv.out")) == "yes it is");
}

TEST_CASE("local: a rank exiting 3 -> dslaunch exits 3 with a summary, others stopped",
          "[launcher]") {
  const TempDir dir("dstrain_launch_exit3");
  const Run r = run(kLaunch + "--num_gpus 3 -- sh -c 'echo $$ > " + dir.file("pid.") +
                    "$RANK; if [ $RANK = 1 ]; then echo about to fail; sleep 0.5; echo failing >&2;"
                    " exit 3; fi; exec sleep 60'");
  CHECK(r.code == 3);
  CHECK_THAT(r.out, Contains("rank 1 on localhost (node 0, local rank 1) exited with code 3"));
  CHECK_THAT(r.out, Contains("| about to fail"));
  CHECK_THAT(r.out, Contains("| failing"));
  CHECK(read_pids(dir.path()).size() == 3);
  CHECK(wait_until([&] { return none_alive(read_pids(dir.path())); }, 5));
}

TEST_CASE("local: a SIGKILLed rank -> 137, the others gone within 5 s", "[launcher]") {
  const TempDir dir("dstrain_launch_kill");
  Background launch(kLaunch + "--num_gpus 3 " + sleeper(dir, true), dir.file("out"));
  REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 3; }, 10));
  const auto pids = read_pids(dir.path());
  // Rank 2's pid: the file pid.2.
  pid_t victim = std::stoi(read_file(dir.file("pid.2")));
  ::kill(victim, SIGKILL);
  CHECK(launch.wait(10) == 137);
  CHECK(wait_until([&] { return none_alive(pids); }, 5));
  const std::string out = launch.output();
  CHECK_THAT(out, Contains("rank 2 on localhost"));
  CHECK_THAT(out, Contains("killed by SIGKILL (exit code 137)"));
  CHECK_THAT(out, Contains("out of memory"));
}

TEST_CASE("local: SIGINT, SIGTERM, SIGHUP to dslaunch leave no process of the run", "[launcher]") {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    INFO("signal " << sig);
    const TempDir dir("dstrain_launch_sig" + std::to_string(sig));
    Background launch(kLaunch + "--num_gpus 2 " + sleeper(dir, sig == SIGINT), dir.file("out"));
    REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 2; }, 10));
    const auto pids = read_pids(dir.path());
    launch.signal(sig);
    CHECK(launch.wait(10) == 128 + sig);
    CHECK(wait_until([&] { return none_alive(pids); }, 5));
    CHECK_THAT(launch.output(), Contains("interrupted by"));
  }
}

TEST_CASE("local: nothing survives the launcher or the agent being SIGKILLed", "[launcher]") {
  {
    const TempDir dir("dstrain_launch_kill_launcher");
    Background launch(kLaunch + "--num_gpus 2 " + sleeper(dir, true), dir.file("out"));
    REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 2; }, 10));
    const auto pids = read_pids(dir.path());
    launch.signal(SIGKILL);  // no chance to clean up: the agent sees its input end
    CHECK(launch.wait(5) == 137);
    CHECK(wait_until([&] { return none_alive(pids); }, 5));
  }
  {
    const TempDir dir("dstrain_launch_kill_agent");
    Background launch(kLaunch + "--num_gpus 2 " + sleeper(dir, true), dir.file("out"));
    REQUIRE(wait_until([&] { return read_pids(dir.path()).size() == 2; }, 10));
    const auto pids = read_pids(dir.path());
    // The ranks' parent is the node agent; killing it outright leaves the keeper
    // and PR_SET_PDEATHSIG to clean up.
    std::ifstream stat("/proc/" + std::to_string(pids[0]) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), {});
    std::istringstream rest(text.substr(text.rfind(')') + 2));
    std::string state;
    pid_t agent = 0;
    rest >> state >> agent;
    REQUIRE(agent > 1);
    ::kill(agent, SIGKILL);
    CHECK(wait_until([&] { return none_alive(pids); }, 5));
    CHECK(launch.wait(10) == 1);
    CHECK_THAT(launch.output(), Contains("lost the connection to its agent"));
  }
}

TEST_CASE("local: broken hostfiles and bad flags exit 2 before anything starts", "[launcher]") {
  const TempDir dir("dstrain_launch_hostfile");
  const std::string probe = " -- sh -c 'touch " + dir.file("started") + "'";
  Run r = run(kLaunch + "--hostfile " + dir.file("nope") + probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("hostfile '" + dir.file("nope") + "' does not exist"));
  r = run(kLaunch + "--hostfile " + dir.write("dup", "localhost slots=1\nlocalhost slots=2\n") +
          probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains(dir.file("dup") + ":2: host 'localhost' is listed twice"));
  r = run(kLaunch + "--hostfile " + dir.write("bad", "localhost slots=x\n") + probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains(dir.file("bad") + ":1: slots must be"));
  r = run(kLaunch + "--hostfile " + dir.write("tok", "# c\nlocalhost slots=1 gpus=2\n") + probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains(dir.file("tok") + ":2: unknown token 'gpus=2'"));
  r = run(kLaunch + "--hostfile " + dir.write("ok", "localhost slots=2\n") +
          " --include localhost:5" + probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("has no slot 5"));
  r = run(kLaunch + "--num_nodes 2" + probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("needs a --hostfile"));
  r = run(kLaunch + "-- /nonexistent/program");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("program not found (tried /nonexistent/program)"));
  r = run(kLaunch + "--workdir /nonexistent/dir" + probe);
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Contains("workdir /nonexistent/dir does not exist"));
  CHECK(!std::filesystem::exists(dir.file("started")));
}

TEST_CASE("local: --dry-run prints every rank's host, devices, command and env", "[launcher]") {
  const TempDir dir("dstrain_launch_dry");
  const std::string hosts = dir.write("hosts", "localhost slots=4\nalice@n2:2222 slots=2\n");
  Run r = run(kLaunch + "--dry-run --hostfile " + hosts +
              " --include 'localhost:1,3@n2:2222:0' --master_port 4000 --env 'X=a b'"
              " -- ./train --flag 'two words'");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("3 ranks on 2 nodes"));
  CHECK_THAT(r.out, Contains("node 0: localhost (this host, no ssh), slots 1,3"));
  CHECK_THAT(r.out, Contains("node 1: alice@n2:2222 (ssh), slots 0"));
  CHECK_THAT(r.out, Contains("rank 1: host localhost local rank 1 devices 3"));
  CHECK_THAT(r.out, Contains("rank 2: host n2:2222 local rank 0 devices 0"));
  CHECK_THAT(r.out, Contains("RANK=2 WORLD_SIZE=3 LOCAL_RANK=0"));
  CHECK_THAT(r.out, Contains("MASTER_PORT=4000"));
  CHECK_THAT(r.out, Contains("'X=a b'"));
  CHECK_THAT(r.out, Contains("DS_RUN_TOKEN=<secret>"));
  CHECK_THAT(r.out, Contains("./train --flag 'two words'"));
  CHECK_THAT(r.out, Contains("CUDA_VISIBLE_DEVICES=0 if it has GPUs"));

  // The default target: dsworker beside dslaunch, with the train.cfg.
  r = run(kLaunch + "--dry-run --num_gpus 2 train.yaml --steps 3");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains(kBin + "dsworker train.yaml --steps 3"));
  CHECK_THAT(r.out, Contains("rank 1: host localhost local rank 1"));

  // Slurm: the srun line, printed, not run.
  r = run(kLaunch + "--launcher slurm --dry-run --hostfile " +
          dir.write("even", "n1 slots=2\nn2 slots=2\n") + " train.yaml");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("srun --nodes=2 --ntasks=4 --ntasks-per-node=2"));
  CHECK_THAT(r.out, Contains("--nodelist=n1,n2 " + kBin + "dsworker train.yaml"));
  r = run(kLaunch + "--launcher slurm -- true");
  if (run("command -v srun").code != 0) {
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("cannot run srun"));
  }
}

TEST_CASE("local: output prefixes, per-rank log files, dsworker validate under the launcher",
          "[launcher]") {
  const TempDir dir("dstrain_launch_logs");
  Run r = run(kLaunch + "--num_gpus 2 --log_dir " + dir.file("logs") +
              " --prefix host -- sh -c 'echo out $RANK; echo err $RANK >&2'");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("[localhost rank 1] out 1"));
  CHECK(read_file(dir.file("logs/rank0.log")).find("out 0\n") != std::string::npos);
  CHECK(read_file(dir.file("logs/rank1.log")).find("err 1\n") != std::string::npos);
  r = run(kLaunch + "--prefix none -- echo plain");
  CHECK_THAT(r.out, Contains("\nplain\n"));

  r = run(kLaunch + "--num_gpus 2 -- " + kBin + "dsworker validate " + ds::testing::kSource +
          "/configs/tiny.yaml -n 2");
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("[rank 1] {"));
  CHECK_THAT(r.out, Contains("train_batch_size"));
}
