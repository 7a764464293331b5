// The launcher's pure parts: resource selection (DeepSpeed's semantics), the rank
// plan and its environment, shell quoting, .dsenv, the agent protocol, the
// preflight script, exit-status wording.
#include <catch2/catch.hpp>

#include "launcher/env.h"
#include "launcher/exit_status.h"
#include "launcher/local_runner.h"
#include "launcher/preflight.h"
#include "launcher/protocol.h"
#include "launcher/rank_plan.h"
#include "launcher/resources.h"
#include "launcher/slurm.h"
#include "process_helpers.h"
#include "util/error.h"

using Catch::Matchers::Contains;
namespace dl = ds::launcher;

namespace {

std::vector<dl::HostEntry> cluster() {
  return dl::parse_hostfile("n1 slots=4\nn2 slots=4\nn3 slots=2\n", "h");
}

// host -> slots, as a compact string: "n1:0,1 n3:0"
std::string show(const std::vector<dl::NodeSlots>& nodes) {
  std::string out;
  for (const auto& n : nodes) {
    if (!out.empty()) out += ' ';
    out += n.host.key() + ":";
    for (size_t i = 0; i < n.slots.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(n.slots[i]);
    }
  }
  return out;
}

std::string usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const ds::UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

dl::ResourceRequest request(std::string include, std::string exclude, int nodes = -1,
                            int gpus = -1) {
  return {std::move(include), std::move(exclude), nodes, gpus, true};
}

}  // namespace

TEST_CASE("resources: --include and --exclude as DeepSpeed", "[launcher]") {
  const auto hosts = cluster();
  CHECK(show(dl::select_resources(hosts, request("", ""))) == "n1:0,1,2,3 n2:0,1,2,3 n3:0,1");
  CHECK(show(dl::select_resources(hosts, request("n1:0,1@n3", ""))) == "n1:0,1 n3:0,1");
  // Order follows the hostfile, not the filter.
  CHECK(show(dl::select_resources(hosts, request("n3@n1:2", ""))) == "n1:2 n3:0,1");
  CHECK(show(dl::select_resources(hosts, request("", "n2"))) == "n1:0,1,2,3 n3:0,1");
  CHECK(show(dl::select_resources(hosts, request("", "n1:0,3@n3:1"))) == "n1:1,2 n2:0,1,2,3 n3:0");
  CHECK(show(dl::select_resources(hosts, request("", "", 2))) == "n1:0,1,2,3 n2:0,1,2,3");
  CHECK(show(dl::select_resources(hosts, request("", "", 3, 2))) == "n1:0,1 n2:0,1 n3:0,1");

  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("n9", "")); }),
             Contains("host 'n9' is not in the hostfile"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("n3:2", "")); }),
             Contains("host 'n3' has no slot 2"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("n1:a", "")); }),
             Contains("'a' is not a slot number"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("n1", "n2")); }),
             Contains("cannot be used together"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("n1", "", 1)); }),
             Contains("cannot be combined"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("", "n1@n2@n3")); }),
             Contains("leaves no slots"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("", "", 4)); }),
             Contains("--num_nodes 4 but there are only 3 nodes"));
  CHECK_THAT(usage_error([&] { dl::select_resources(hosts, request("", "", -1, 3)); }),
             Contains("--num_gpus 3 but host 'n3' has slots=2 (hostfile line 3)"));

  // Ports make hosts distinct; the slot list splits at the last ':'.
  const auto ported = dl::parse_hostfile("a:22 slots=2\na:2222 slots=2\n", "h");
  CHECK(show(dl::select_resources(ported, request("a:2222:1", ""))) == "a:2222:1");
  CHECK(show(dl::select_resources(ported, request("a:22", ""))) == "a:22:0,1");
}

TEST_CASE("resources: CUDA_VISIBLE_DEVICES as DeepSpeed treats it", "[launcher]") {
  dl::ResourceRequest r;
  CHECK(dl::apply_cuda_visible_devices("", r).empty());
  CHECK_THAT(dl::apply_cuda_visible_devices("1,3", r), Contains("--include localhost:1,3"));
  CHECK(r.include == "localhost:1,3");
  CHECK(show(dl::select_resources(dl::local_host(4), r)) == "localhost:1,3");
  dl::ResourceRequest with_gpus;
  with_gpus.num_gpus = 2;
  CHECK_THAT(dl::apply_cuda_visible_devices("1,3", with_gpus), Contains("ignored"));
  CHECK(with_gpus.include.empty());
}

TEST_CASE("rank plan: ranks sharing GPUs leave CUDA_VISIBLE_DEVICES to the worker", "[launcher]") {
  std::vector<dl::NodeSlots> nodes = dl::select_resources(dl::local_host(4), {});
  REQUIRE(nodes.size() == 1);
  CHECK(dl::make_plan(nodes).nodes[0].devices() == "0,1,2,3");
  nodes[0].share_gpus = true;
  const dl::Plan plan = dl::make_plan(nodes);
  CHECK(plan.world_size == 4);
  CHECK(plan.nodes[0].devices().empty());
}

TEST_CASE("rank plan: ranks in hostfile order with the process contract", "[launcher]") {
  dl::Plan plan = dl::make_plan(dl::select_resources(cluster(), request("n1:1,3@n3", "")));
  plan.master_addr = "10.0.0.1";
  plan.master_port = 1234;
  plan.run_id = "run";
  plan.run_token = dl::new_run_token();
  plan.forwarded.set("NCCL_DEBUG", "INFO");
  plan.argv = {"dsworker", "train.cfg"};
  REQUIRE(plan.world_size == 4);
  REQUIRE(plan.nodes.size() == 2);
  CHECK(plan.nodes[1].first_rank == 2);
  CHECK(plan.nodes[0].devices() == "1,3");
  const dl::EnvList env = dl::rank_env(plan, plan.nodes[1], 1);
  const auto get = [&](const char* k) { return env.find(k) ? *env.find(k) : "(unset)"; };
  CHECK(get("RANK") == "3");
  CHECK(get("WORLD_SIZE") == "4");
  CHECK(get("LOCAL_RANK") == "1");
  CHECK(get("LOCAL_WORLD_SIZE") == "2");
  CHECK(get("LOCAL_SIZE") == "2");
  CHECK(get("NODE_RANK") == "1");
  CHECK(get("CROSS_RANK") == "1");
  CHECK(get("GROUP_RANK") == "1");
  CHECK(get("NNODES") == "2");
  CHECK(get("CROSS_SIZE") == "2");
  CHECK(get("MASTER_ADDR") == "10.0.0.1");
  CHECK(get("MASTER_PORT") == "1234");
  CHECK(get("DS_RUN_ID") == "run");
  CHECK(get("DS_RUN_TOKEN").size() == 32);
  CHECK(get("NCCL_DEBUG") == "INFO");
  CHECK(dl::new_run_token() != dl::new_run_token());

  const dl::AgentPlan a = dl::agent_plan(plan, plan.nodes[0], 1500, 9000);
  CHECK(a.devices == "1,3");
  CHECK(a.ranks.size() == 2);
  CHECK(a.ranks[1].rank == 1);
  CHECK(a.grace_ms == 1500);
}

TEST_CASE("shell quoting survives every nasty byte", "[launcher]") {
  const std::vector<std::string> values = {"plain", "",          "two words", "it's", "\"double\"",
                                           "$HOME", "`id`",      "$(id)",     "a\nb", "back\\slash",
                                           "'''",   "tab\there", "*",         "~",    "semi;colon",
                                           "!bang"};
  for (const std::string& v : values) {
    INFO(v);
    // printf '%s' <quoted> through a real shell must give back the exact bytes.
    const std::string script = "printf '%s' " + dl::shell_quote(v);
    CHECK(dl::run_shell(script) == v);
  }
  CHECK(dl::shell_join({"/bin/echo", "a b", "ok=1"}) == "/bin/echo 'a b' ok=1");
}

TEST_CASE(".dsenv files and forwarded variables", "[launcher]") {
  const dl::EnvList env = dl::parse_dsenv(
      "# comment\n\nNCCL_IB_DISABLE=1\nexport PYTHONPATH=/x:/y\nQUOTED='kept as is'\r\n"
      "EMPTY=\n",
      ".dsenv");
  CHECK(*env.find("NCCL_IB_DISABLE") == "1");
  CHECK(*env.find("PYTHONPATH") == "/x:/y");
  CHECK(*env.find("QUOTED") == "'kept as is'");
  CHECK(env.find("EMPTY")->empty());
  CHECK_THAT(usage_error([] { dl::parse_dsenv("OK=1\nnot a variable\n", "f"); }),
             Contains("f:2: expected KEY=VALUE"));
  CHECK_THAT(usage_error([] { dl::parse_dsenv("1X=2\n", "f"); }), Contains("f:1:"));

  const ds::testing::TempDir home("dstrain_dsenv_home");
  const ds::testing::TempDir cwd("dstrain_dsenv_cwd");
  home.write(".dsenv", "A=home\nB=home\n");
  cwd.write(".dsenv", "B=cwd\nC=cwd\n");
  std::vector<std::string> files;
  const dl::EnvList fwd =
      dl::forwarded_env({{"C=flag", "D=x=y"},
                         {"MY_"},
                         {home.path(), cwd.path()},
                         {"MY_VAR=1", "NCCL_SOCKET_IFNAME=eth0", "OTHER=no", "C=environ"}},
                        &files);
  CHECK(files.size() == 2);
  CHECK(*fwd.find("A") == "home");
  CHECK(*fwd.find("B") == "cwd");   // the current directory's file wins over $HOME's
  CHECK(*fwd.find("C") == "flag");  // --env wins over everything
  CHECK(*fwd.find("D") == "x=y");
  CHECK(*fwd.find("MY_VAR") == "1");
  CHECK(*fwd.find("NCCL_SOCKET_IFNAME") == "eth0");  // default prefix
  CHECK(fwd.find("OTHER") == nullptr);
  CHECK_THAT(usage_error([] {
               dl::forwarded_env({{"=x"}, {}, {}, {}});
             }),
             Contains("--env expects KEY=VALUE"));
}

TEST_CASE("protocol: messages and plans round-trip, noise before HELLO is set aside",
          "[launcher]") {
  dl::AgentPlan plan;
  plan.run_id = "r";
  plan.node_rank = 2;
  plan.host = "n3";
  plan.workdir = "/w d";
  plan.devices = "0,1";
  plan.argv = {"prog", "a b", std::string("nul\0byte", 8), "x\ny"};
  dl::AgentRank r;
  r.rank = 5;
  r.local_rank = 1;
  r.env.set("V", "it's $x `y`\n:,");
  plan.ranks.push_back(r);

  dl::FrameReader reader(true);
  const std::string stream = "Welcome to node3!\n" + dl::encode({"HELLO", {}}) +
                             dl::encode(dl::plan_message(plan)) +
                             dl::encode({"OUT", {"5", "1", "line"}});
  // Byte by byte: framing must not depend on how reads split the stream.
  std::vector<dl::Message> got;
  for (char c : stream) {
    reader.feed(std::string_view(&c, 1));
    while (auto m = reader.next()) got.push_back(*m);
  }
  REQUIRE(got.size() == 3);
  CHECK(reader.take_noise() == "Welcome to node3!\n");
  CHECK(got[0].type == "HELLO");
  const dl::AgentPlan back = dl::parse_plan(got[1]);
  CHECK(back.argv == plan.argv);
  CHECK(back.workdir == "/w d");
  CHECK(back.node_rank == 2);
  CHECK(*back.ranks.at(0).env.find("V") == "it's $x `y`\n:,");
  CHECK(got[2].int_at(0) == 5);

  dl::FrameReader bad(false);
  bad.feed("OUT nonsense\n");
  CHECK_THROWS_AS(bad.next(), ds::Error);
}

TEST_CASE("preflight script finds programs and reports what is missing", "[launcher]") {
  const ds::testing::TempDir dir("dstrain_preflight_test");
  dir.write("train.yaml", "x");
  dl::PreflightRequest r;
  r.workdir = dir.path();
  r.launcher_candidates = {"/nonexistent/dslaunch", "sh"};
  r.program_candidates = {"/nonexistent/dsworker", "/bin/true"};
  r.required_file = "train.yaml";
  dl::NodeFacts f = dl::parse_preflight(dl::run_shell(dl::preflight_script(r)), r, "n");
  CHECK(f.problems.empty());
  CHECK(f.launcher == "sh");
  CHECK(f.program == "/bin/true");

  r.program_candidates = {"no-such-program-anywhere"};
  r.required_file = "missing.yaml";
  f = dl::parse_preflight(dl::run_shell(dl::preflight_script(r)), r, "n");
  REQUIRE(f.problems.size() == 2);
  CHECK_THAT(f.problems[0], Contains("program not found (tried no-such-program-anywhere)"));
  CHECK_THAT(f.problems[1], Contains("missing.yaml does not exist"));

  r.workdir = "/nonexistent/dir with 'quotes'";
  f = dl::parse_preflight(dl::run_shell(dl::preflight_script(r)), r, "n");
  REQUIRE(f.problems.size() == 1);
  CHECK_THAT(f.problems[0], Contains("workdir /nonexistent/dir with 'quotes' does not exist"));
}

TEST_CASE("exit statuses in words, with hints", "[launcher]") {
  CHECK(dl::describe_exit(3, 0) == "exited with code 3");
  CHECK(dl::describe_exit(137, 9) == "was killed by SIGKILL (exit code 137)");
  CHECK_THAT(dl::exit_hint(137, 9), Contains("out of memory"));
  CHECK_THAT(dl::exit_hint(127, 0), Contains("not found"));
  CHECK(dl::exit_hint(1, 0).empty());
}

TEST_CASE("slurm: the srun line", "[launcher]") {
  dl::Plan plan = dl::make_plan(dl::select_resources(cluster(), request("", "", 2, 2)));
  plan.argv = {"dsworker", "train.cfg"};
  plan.workdir = "/w";
  plan.master_addr = "n1";
  plan.master_port = 29500;
  plan.run_id = "r";
  plan.run_token = "secret";
  const dl::SrunCommand c = dl::srun_command(plan, true);
  const std::string line = dl::srun_line(c);
  CHECK_THAT(line, Contains("srun --nodes=2 --ntasks=4 --ntasks-per-node=2 --kill-on-bad-exit=1 "
                            "--chdir=/w --nodelist=n1,n2 dsworker train.cfg"));
  CHECK_THAT(line, Contains("MASTER_ADDR=n1"));
  CHECK_THAT(line, Contains("DS_RUN_TOKEN=<secret>"));
  CHECK(*c.env.find("DS_RUN_TOKEN") == "secret");
  const dl::Plan uneven = dl::make_plan(dl::select_resources(cluster(), request("", "")));
  CHECK_THAT(usage_error([&] { dl::srun_command(uneven, true); }),
             Contains("same number of ranks on every node"));
}
