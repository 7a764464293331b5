// --dry-run: the plan in full — every rank's host, local rank, devices, and the
// exact command and environment it would get — and nothing started.
#pragma once

#include <cstdio>

#include "launcher/rank_plan.h"

namespace ds::launcher {

void print_plan(const Plan& plan, std::FILE* out);

}  // namespace ds::launcher
