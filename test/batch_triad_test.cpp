// The batch triad on its own: DeepSpeed's inference table and checks.
#include "config/batch_triad.h"

#include <catch2/catch.hpp>

using ds::config::resolve_batch_triad;
using ds::config::TriadInput;

TEST_CASE("each pair of the triad infers the third", "[triad]") {
  auto r = resolve_batch_triad({64, 4, std::nullopt, 8});
  CHECK(r.error.empty());
  CHECK(r.gradient_accumulation_steps == 2);
  r = resolve_batch_triad({64, std::nullopt, 2, 8});
  CHECK(r.micro_batch_per_gpu == 4);
  r = resolve_batch_triad({std::nullopt, 4, 2, 8});
  CHECK(r.train_batch_size == 64);
}

TEST_CASE("a lone value takes accumulation 1", "[triad]") {
  auto r = resolve_batch_triad({32, std::nullopt, std::nullopt, 4});
  CHECK(r.micro_batch_per_gpu == 8);
  CHECK(r.gradient_accumulation_steps == 1);
  r = resolve_batch_triad({std::nullopt, 3, std::nullopt, 5});
  CHECK(r.train_batch_size == 15);
  CHECK(r.gradient_accumulation_steps == 1);
}

TEST_CASE("inconsistent or indivisible triads fail with DeepSpeed's numbers", "[triad]") {
  auto r = resolve_batch_triad({10, 3, 3, 1});
  CHECK(r.error ==
        "Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * "
        "gradient_acc_step * world_size 10 != 3 * 3 * 1");
  r = resolve_batch_triad({12, std::nullopt, 5, 1});
  CHECK(r.error.find("not divisible") != std::string::npos);
  CHECK(r.error.find("12 != 2 * 5 * 1") != std::string::npos);
  r = resolve_batch_triad({2, std::nullopt, std::nullopt, 4});
  CHECK(r.error.find("not divisible by world_size = 4") != std::string::npos);
  r = resolve_batch_triad({std::nullopt, std::nullopt, 4, 1});
  CHECK(r.offending_key == "train_batch_size");
}
