// Hostfile grammar (DeepSpeed's, plus user@host:port) and its error messages.
#include "launcher/hostfile.h"

#include <catch2/catch.hpp>

#include "process_helpers.h"
#include "util/error.h"

using Catch::Matchers::Contains;
using ds::launcher::HostEntry;
using ds::launcher::parse_hostfile;

namespace {

std::string error_of(const std::string& text) {
  try {
    parse_hostfile(text, "hosts.txt");
  } catch (const ds::UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("hostfile: DeepSpeed's grammar with comments and blank lines", "[hostfile]") {
  const auto hosts = parse_hostfile(
      "# the cluster\n"
      "\n"
      "worker-1 slots=4\n"
      "  worker-2   slots=8   # big one\n"
      "alice@worker-3:2222 slots=2 max_slots=16\n"
      "[fe80::1]:22 slots=1\n"
      "bob@[::2] slots=1\n",
      "hosts.txt");
  REQUIRE(hosts.size() == 5);
  CHECK(hosts[0].host == "worker-1");
  CHECK(hosts[0].slots == 4);
  CHECK(hosts[0].line == 3);
  CHECK(hosts[0].port == -1);
  CHECK(hosts[1].slots == 8);
  CHECK(hosts[2].user == "alice");
  CHECK(hosts[2].host == "worker-3");
  CHECK(hosts[2].port == 2222);
  CHECK(hosts[2].slots == 2);  // max_slots is accepted and ignored
  CHECK(hosts[2].key() == "worker-3:2222");
  CHECK(hosts[2].spec() == "alice@worker-3:2222");
  CHECK(hosts[3].host == "fe80::1");
  CHECK(hosts[3].key() == "[fe80::1]:22");
  CHECK(hosts[4].user == "bob");
  CHECK(hosts[4].key() == "[::2]");
}

TEST_CASE("hostfile: every mistake names file and line", "[hostfile]") {
  CHECK_THAT(error_of("a slots=1\nb slots=2\na slots=3\n"),
             Contains("hosts.txt:3: host 'a' is listed twice (first on line 1)"));
  CHECK_THAT(error_of("a slots=1\nb\n"), Contains("hosts.txt:2: host 'b' has no slots=N"));
  CHECK_THAT(error_of("a slots=0\n"), Contains("hosts.txt:1: slots must be a whole number"));
  CHECK_THAT(error_of("a slots=-2\n"), Contains("hosts.txt:1: slots"));
  CHECK_THAT(error_of("a slots=four\n"), Contains("not 'four'"));
  CHECK_THAT(error_of("a slots=\n"), Contains("hosts.txt:1: slots"));
  CHECK_THAT(error_of("a slots=1 slots=2\n"), Contains("slots given twice"));
  CHECK_THAT(error_of("\n\na slot=4\n"),
             Contains("hosts.txt:3: unknown token 'slot=4' (did you mean 'slots=N'?)"));
  CHECK_THAT(error_of("a slots=1 gpus\n"), Contains("unknown token 'gpus'"));
  CHECK_THAT(error_of("a:99999 slots=1\n"), Contains("hosts.txt:1: bad host"));
  CHECK_THAT(error_of("a:x slots=1\n"), Contains("port must be 1..65535"));
  CHECK_THAT(error_of("@a slots=1\n"), Contains("empty user"));
  CHECK_THAT(error_of("a!b slots=1\n"), Contains("not allowed in a host name"));
  CHECK_THAT(error_of("# nothing\n\n"), Contains("hosts.txt: no hosts"));
  // Same address, different ports: two nodes (two sshds on one machine).
  CHECK(parse_hostfile("a:22 slots=1\na:2222 slots=1\n", "h").size() == 2);
}

TEST_CASE("hostfile: a missing --hostfile is an error, not a fallback", "[hostfile]") {
  try {
    ds::launcher::read_hostfile("/nonexistent/hostfile");
    FAIL("no error");
  } catch (const ds::UsageError& e) {
    CHECK_THAT(e.what(), Contains("/nonexistent/hostfile"));
    CHECK(e.code() == ds::ExitCode::kUsage);
  }
  const ds::testing::TempDir dir("dstrain_hostfile_test");
  const auto hosts = ds::launcher::read_hostfile(dir.write("h", "n1 slots=2\n"));
  CHECK(hosts.size() == 1);
}
