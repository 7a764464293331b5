// The NCCL variables dsworker sets or drops before NCCL reads them (worker/nccl_environment.h).
#include "worker/nccl_environment.h"

#include <catch2/catch.hpp>
#include <cstdlib>

using Catch::Matchers::Contains;
namespace worker = ds::worker;

TEST_CASE("nccl environment: DS_SOCKET_IFNAME becomes NCCL's exact interface name", "[device]") {
  const worker::EnvChange change = worker::nccl_environment_change({{"DS_SOCKET_IFNAME", "eth1"}});
  REQUIRE(change.set.size() == 1);
  CHECK(change.set[0].first == "NCCL_SOCKET_IFNAME");
  CHECK(change.set[0].second == "=eth1");  // not every interface whose name starts with eth1
  CHECK(change.unset.empty());
  CHECK(change.warnings.empty());
  // The user's own NCCL_SOCKET_IFNAME wins; nothing is set without DS_SOCKET_IFNAME.
  CHECK(
      worker::nccl_environment_change({{"DS_SOCKET_IFNAME", "eth1"}, {"NCCL_SOCKET_IFNAME", "ib0"}})
          .set.empty());
  CHECK(worker::nccl_environment_change({{"DS_SOCKET_IFNAME", ""}}).set.empty());
  CHECK(worker::nccl_environment_change({}).set.empty());
}

TEST_CASE("nccl environment: NCCL_COMM_ID is dropped with a warning that says why", "[device]") {
  const worker::EnvChange change =
      worker::nccl_environment_change({{"NCCL_COMM_ID", "10.0.0.1:5555"}});
  CHECK(change.set.empty());
  REQUIRE(change.unset == std::vector<std::string>{"NCCL_COMM_ID"});
  REQUIRE(change.warnings.size() == 1);
  CHECK_THAT(change.warnings[0], Contains("NCCL_COMM_ID=10.0.0.1:5555 is ignored"));
  CHECK_THAT(change.warnings[0], Contains("several NCCL communicators"));
}

TEST_CASE("nccl environment: a change reaches the process environment", "[device]") {
  ::setenv("DS_TEST_NCCL_DROPPED", "x", 1);
  ::unsetenv("DS_TEST_NCCL_SET");
  worker::EnvChange change;
  change.set.emplace_back("DS_TEST_NCCL_SET", "=eth9");
  change.unset.push_back("DS_TEST_NCCL_DROPPED");
  worker::apply_environment_change(change);
  const char* set = std::getenv("DS_TEST_NCCL_SET");
  REQUIRE(set != nullptr);
  CHECK(std::string(set) == "=eth9");
  CHECK(std::getenv("DS_TEST_NCCL_DROPPED") == nullptr);
  ::unsetenv("DS_TEST_NCCL_SET");
}
