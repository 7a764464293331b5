// Turning a rank's end into words for the failure summary, with a hint for the
// usual suspects (SIGKILL is most often the out-of-memory killer).
#pragma once

#include <string>

namespace ds::launcher {

// "SIGKILL" for 9; "signal N" when unnamed.
std::string signal_name(int sig);
// "exited with code 3" / "was killed by SIGKILL (exit code 137)".
std::string describe_exit(int code, int sig);
// What to look at next; empty when there is nothing useful to say.
std::string exit_hint(int code, int sig);

}  // namespace ds::launcher
