#include <catch2/catch.hpp>
#include <vector>

#include "util/error.h"
#include "util/strings.h"

TEST_CASE("edit distance is case-insensitive Levenshtein", "[util]") {
  CHECK(ds::edit_distance("stage", "stage") == 0);
  CHECK(ds::edit_distance("stgae", "stage") == 2);
  CHECK(ds::edit_distance("Stage", "stage") == 0);
  CHECK(ds::edit_distance("", "abc") == 3);
}

TEST_CASE("closest_match suggests near keys only", "[util]") {
  const std::vector<std::string> keys = {"reduce_bucket_size", "allgather_bucket_size", "stage"};
  CHECK(ds::closest_match("reduce_bucket_sise", keys) == "reduce_bucket_size");
  CHECK(ds::closest_match("stag", keys) == "stage");
  CHECK_FALSE(ds::closest_match("completely_different", keys).has_value());
}

TEST_CASE("DS_CHECK throws ds::Error with the location", "[util]") {
  try {
    DS_CHECK(1 + 1 == 3, "arithmetic is {}", "broken");
    FAIL("no throw");
  } catch (const ds::Error& e) {
    CHECK(std::string(e.what()).find("arithmetic is broken") != std::string::npos);
    CHECK(std::string(e.what()).find("util_test.cpp") != std::string::npos);
    CHECK(e.code() == ds::ExitCode::kFailure);
  }
}

TEST_CASE("byte sizes as save_pretrained spells them", "[util]") {
  CHECK(ds::parse_byte_size("5GB") == 5'000'000'000);
  CHECK(ds::parse_byte_size("2GiB") == int64_t{2} << 30);
  CHECK(ds::parse_byte_size("200kb") == 200'000);
  CHECK(ds::parse_byte_size("4096") == 4096);
  CHECK(ds::parse_byte_size("4096B") == 4096);
  CHECK_FALSE(ds::parse_byte_size("GB").has_value());
  CHECK_FALSE(ds::parse_byte_size("5 GB").has_value());
  CHECK_FALSE(ds::parse_byte_size("5TB").has_value());
}
