// HashStore and PrefixStore semantics (the c10d Store shape), and the TcpStore wire format.
#include <catch2/catch.hpp>
#include <thread>

#include "comm/hash_store.h"
#include "comm/prefix_store.h"
#include "comm/rendezvous.h"
#include "comm/store_wire.h"

using namespace ds::comm;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

TEST_CASE("HashStore: set, get, add, check, remove", "[store]") {
  HashStore store(1s);
  store.set("a", "1");
  CHECK(store.get("a") == "1");
  CHECK(store.check({"a"}));
  CHECK_FALSE(store.check({"a", "b"}));
  CHECK(store.add("n", 5) == 5);
  CHECK(store.add("n", -2) == 3);
  CHECK(store.get("n") == "3");
  CHECK(store.remove("a"));
  CHECK_FALSE(store.remove("a"));
  store.set("bytes", std::string("\0\xff\n", 3));
  CHECK(store.get("bytes") == std::string("\0\xff\n", 3));
  CHECK_THROWS_WITH(store.add("bytes", 1), Contains("not a counter"));
}

TEST_CASE("HashStore: get waits for the key; wait times out naming what is missing", "[store]") {
  HashStore store(5s);
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    store.set("late", "here");
  });
  CHECK(store.get("late") == "here");
  writer.join();
  try {
    store.wait({"late", "never", "nope"}, 50ms);
    FAIL("wait returned");
  } catch (const StoreTimeout& e) {
    CHECK(e.missing_keys() == std::vector<std::string>{"never", "nope"});
    CHECK_THAT(e.what(), Contains("never"));
  }
  CHECK_THROWS_AS(store.get("never", 10ms), StoreTimeout);
}

TEST_CASE("PrefixStore: separate key spaces over one store", "[store]") {
  auto base = std::make_shared<HashStore>(1s);
  PrefixStore a("run/a", base), b("run/b", base);
  a.set("k", "from a");
  b.set("k", "from b");
  CHECK(a.get("k") == "from a");
  CHECK(b.get("k") == "from b");
  CHECK(base->get("run/a/k") == "from a");
  CHECK(a.add("c", 1) == 1);
  CHECK(b.add("c", 1) == 1);
  try {
    a.wait({"k", "missing"}, 20ms);
    FAIL("wait returned");
  } catch (const StoreTimeout& e) {
    CHECK(e.missing_keys() == std::vector<std::string>{"missing"});  // the caller's names
  }
}

TEST_CASE("wire: frames round-trip and bad frames are rejected", "[store]") {
  using namespace wire;
  std::string frame = FrameWriter().u8(7).str("key").i64(-5).strings({"x", "yz"}).finish();
  REQUIRE(frame.size() >= 4);
  CHECK(read_u32_le(frame.data()) == frame.size() - 4);
  FrameReader r(std::string_view(frame).substr(4));
  CHECK(r.u8() == 7);
  CHECK(r.str() == "key");
  CHECK(r.i64() == -5);
  CHECK(r.strings() == std::vector<std::string>{"x", "yz"});
  CHECK_NOTHROW(r.expect_end());

  // Truncated: a string length running past the end.
  FrameReader truncated(std::string_view(frame).substr(4, 6));
  truncated.u8();
  CHECK_THROWS_AS(truncated.str(), WireError);
  // An absurd string count is rejected before allocating.
  std::string bogus("\xff\xff\xff\x7f", 4);
  CHECK_THROWS_AS(FrameReader(bogus).strings(), WireError);
  // Trailing bytes.
  FrameReader trailing(std::string_view(frame).substr(4));
  trailing.u8();
  CHECK_THROWS_AS(trailing.expect_end(), WireError);
}

TEST_CASE("rendezvous: missing ranks, a rank claimed twice, another WORLD_SIZE", "[store]") {
  using ds::comm::rendezvous;
  // Catch2 assertions are not thread-safe: helper threads only record whether they threw.
  auto throws = [](auto&& f) {
    try {
      f();
      return false;
    } catch (const ds::Error&) {
      return true;
    }
  };
  {
    HashStore store(1s);
    bool other_threw = false;
    std::thread other([&] { other_threw = throws([&] { rendezvous(store, 1, 4, 200ms); }); });
    CHECK_THROWS_WITH(rendezvous(store, 0, 4, 200ms),
                      Contains("ranks 2, 3 of 4 did not arrive within 200 ms"));
    other.join();
    CHECK(other_threw);
  }
  {
    HashStore store(1s);
    bool first_threw = false;
    std::thread first([&] { first_threw = throws([&] { rendezvous(store, 1, 3, 300ms); }); });
    std::this_thread::sleep_for(50ms);
    CHECK_THROWS_WITH(rendezvous(store, 1, 3, 300ms),
                      Contains("two processes of this run claim rank 1"));
    first.join();
    CHECK(first_threw);
  }
  {
    HashStore store(1s);
    bool zero_threw = false;
    std::thread zero([&] { zero_threw = throws([&] { rendezvous(store, 0, 3, 300ms); }); });
    CHECK_THROWS_WITH(rendezvous(store, 1, 2, 1s),
                      Contains("this rank has WORLD_SIZE=2 but rank 0 has WORLD_SIZE=3"));
    zero.join();
    CHECK(zero_threw);  // rank 0 waits for a rank 2 that never comes
  }
}
