// --launcher slurm: inside a Slurm allocation, srun starts the ranks and dsworker
// reads its rank from SLURM_* (DESIGN.md). We build the srun line from the same
// resource selection, put the run's variables (MASTER_*, DS_RUN_*, the forwarded
// set) in srun's environment — srun propagates it, so no value is ever quoted
// into --export — and wait for srun, passing it our signals.
#pragma once

#include <string>
#include <vector>

#include "launcher/env.h"
#include "launcher/rank_plan.h"

namespace ds::launcher {

class SignalPipe;

struct SrunCommand {
  std::vector<std::string> argv;
  EnvList env;
};

// Throws UsageError for what srun can't express (uneven slots per node, slot subsets).
SrunCommand srun_command(const Plan& plan, bool from_hostfile);
// `env K=V ... srun ...` as a shell line, for --dry-run and the log.
std::string srun_line(const SrunCommand& command);
// Runs srun and returns its exit code (128+N when it died of signal N).
int run_srun(const SrunCommand& command, SignalPipe& signals);

}  // namespace ds::launcher
