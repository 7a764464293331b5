// tensor::VariantChoice's bookkeeping, with stand-in timings: the faster variant per size, each
// size timed once, and the log's line.
#include "tensor/variant_choice.h"

#include <catch2/catch.hpp>
#include <string>

using ds::tensor::VariantChoice;

TEST_CASE("a variant choice keeps the faster variant per size and times each size once",
          "[variant_choice]") {
  VariantChoice choice("forward", {"64-row blocks", "128-row blocks"},
                       {"B=", " T<=", nullptr, nullptr, nullptr});
  CHECK(choice.report().empty());
  int timings = 0;
  const auto timed = [&](float first, float second) {
    return [&timings, first, second] {
      ++timings;
      return VariantChoice::Times{first, second};
    };
  };
  CHECK(choice.pick({16, 1024}, timed(0.19f, 0.13f)) == 1);
  CHECK(choice.pick({16, 1024}, timed(0.10f, 0.50f)) == 1);  // kept, not timed again
  CHECK(timings == 1);
  CHECK(choice.pick({64, 1024}, timed(0.50f, 0.70f)) == 0);
  CHECK(choice.pick({1, 128}, timed(0.02f, 0.02f)) == 0);  // a tie keeps variant 0
  CHECK(timings == 3);
  CHECK(choice.report() ==
        "forward at B=1 T<=128: 64-row blocks (64-row blocks 0.020 ms, 128-row blocks 0.020 ms); "
        "forward at B=16 T<=1024: 128-row blocks (64-row blocks 0.190 ms, 128-row blocks "
        "0.130 ms); forward at B=64 T<=1024: 64-row blocks (64-row blocks 0.500 ms, 128-row blocks "
        "0.700 ms)");
}
