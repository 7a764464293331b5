// The preflight check as one POSIX sh script, run by `sh -c` on this host and over
// SSH on the others — the same logic everywhere. It enters the workdir, finds the
// launcher and the program among their candidates, checks the train.cfg, and
// prints one fact per line, which parse_preflight turns into NodeFacts.
#pragma once

#include <string>

#include "launcher/runner.h"

namespace ds::launcher {

std::string preflight_script(const PreflightRequest& request);
NodeFacts parse_preflight(const std::string& output, const PreflightRequest& request,
                          const std::string& node_name);

}  // namespace ds::launcher
