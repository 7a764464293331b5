// dsbench: benchmarks. `dsbench comm` measures collective bandwidth like nccl-tests; `dsbench
// gemm` times a GPT-2 step's matrix products on one GPU in each storage form.
#include <CLI/CLI.hpp>

#include "bench/comm_bench.h"
#include "bench/gemm_bench.h"
#include "util/error.h"
#include "util/log.h"
#include "util/version.h"

int main(int argc, char** argv) {
  CLI::App app{"dsbench: dstrain benchmarks", "dsbench"};
  app.set_version_flag("--version", std::string("dsbench ") + ds::kVersion);
  app.require_subcommand(1, 1);

  ds::bench::CommBenchOptions comm;
  std::string min_bytes = "8", max_bytes = "64M", op = "allreduce", dtype = "f32";
  int check = 1;
  CLI::App* cmd = app.add_subcommand(
      "comm",
      "Collective bandwidth (nccl-tests style) beside a plain TCP stream; run under "
      "dslaunch, or with --np N local ranks");
  cmd->add_option("-b,--minbytes", min_bytes, "Smallest size (e.g. 8, 64K)")->capture_default_str();
  cmd->add_option("-e,--maxbytes", max_bytes, "Largest size (e.g. 64M, 1G)")->capture_default_str();
  cmd->add_option("-f,--stepfactor", comm.factor, "Size multiplier")->capture_default_str();
  cmd->add_option("-n,--iters", comm.iters, "Timed iterations per size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("-w,--warmup_iters", comm.warmup, "Untimed iterations first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("-c,--check", check, "Check every result exactly (0 or 1)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  cmd->add_option("--op", op, "allreduce, reduce_scatter, allgather, broadcast, sendrecv or all")
      ->capture_default_str();
  cmd->add_option("--dtype", dtype, "f32, bf16 or f16")->capture_default_str();
  cmd->add_option("--json", comm.json_path, "Also write the results as JSON to this file");
  cmd->add_option("--np", comm.np,
                  "Fork this many local ranks (instead of running under "
                  "dslaunch)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--backend", comm.backend,
                  "auto, shm or gloo (default: DS_COMM_BACKEND or "
                  "auto)");
  cmd->add_flag("!--no-tcp", comm.tcp_stream, "Skip the plain TCP stream measurement");

  ds::bench::GemmBenchOptions gemm;
  CLI::App* gemm_cmd = app.add_subcommand(
      "gemm",
      "A GPT-2 step's matrix products on one GPU, timed with fp32 operands rounded to bf16 (a "
      "bf16 run's today), bf16 operands, and TF32");
  gemm_cmd->add_option("--tokens", gemm.tokens, "Tokens per micro-batch (B x T)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  gemm_cmd->add_option("--embd", gemm.embd, "Model width C")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  gemm_cmd->add_option("--vocab", gemm.vocab, "Vocabulary size V")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  gemm_cmd->add_option("-n,--iters", gemm.iters, "Timed calls per product")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  ds::log::set_prefix("dsbench");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (app.got_subcommand(gemm_cmd)) return ds::bench::run_gemm_bench(gemm);
    comm.min_bytes = ds::bench::parse_size(min_bytes, "-b");
    comm.max_bytes = ds::bench::parse_size(max_bytes, "-e");
    comm.check = check != 0;
    comm.ops = ds::bench::parse_comm_ops(op);
    if (dtype == "f32")
      comm.dtype = ds::tensor::DType::kF32;
    else if (dtype == "bf16")
      comm.dtype = ds::tensor::DType::kBF16;
    else if (dtype == "f16")
      comm.dtype = ds::tensor::DType::kF16;
    else
      throw ds::UsageError("--dtype '" + dtype + "' is not f32, bf16 or f16");
    return ds::bench::run_comm_bench(comm);
  } catch (const ds::Error& e) {
    return ds::report_error("dsbench", e);
  }
}
