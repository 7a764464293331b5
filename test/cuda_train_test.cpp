// dsworker and dslaunch training on a GPU (train.device: cuda): one rank follows the same run
// on the CPU (fp32 within 1e-4 relative over 20 steps: cuBLAS and OpenBLAS sum in other
// orders; bf16 within 3e-2: the GPU's matmuls round their inputs to bf16, as autocast does,
// the CPU's compute in fp32, and 20 steps of Adam carry the difference along), and 2 ranks sharing
// the one GPU (the Gloo fallback) reproduce one GPU rank at ZeRO stages 1-3 within 1e-5, as do 2
// ranks over NCCL, which reduce over it or run two pipeline stages that send activations over it:
// on two GPUs, or on one as two NCCL hosts (NCCL_HOSTID: NCCL refuses two ranks on one GPU of one
// host, and joins hosts over its network transport). Ranks started as Slurm tasks that each see
// one GPU tell by the GPUs' PCI addresses whether they share it (then they stage, and refuse
// DS_COMM_BACKEND=nccl) or each have their own (then NCCL, with two GPUs). Skipped without a GPU.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/socket.h"
#include "cuda_test_helpers.h"
#include "process_helpers.h"

using Catch::Matchers::Contains;
using ds::testing::kBin;
using ds::testing::TempDir;
using ds::testing::training_text;

namespace {

std::string config(const std::string& device, int stage, int micro, const std::string& extra) {
  return fmt::format(
      "model: {{n_layer: 2, n_head: 2, n_embd: 64, vocab_size: 256, block_size: 64}}\n"
      "data: {{train: train.txt, seq_len: 64, shuffle: true, val_fraction: 0}}\n"
      "deepspeed: {{train_batch_size: 16, train_micro_batch_size_per_gpu: {}, "
      "steps_per_print: 1, gradient_clipping: 1.0, {}\n"
      "  zero_optimization: {{stage: {}}},\n"
      "  optimizer: {{type: AdamW, params: {{lr: 0.003, weight_decay: 0.1}}}}}}\n"
      "train: {{steps: 20, seed: 9, device: {}}}\n",
      micro, extra, stage, device);
}

// The losses of `command` (a program and its options) on `cfg`; its output must hold
// `expect_in_output` when given.
std::vector<double> losses(TempDir& dir, const std::string& command, const std::string& cfg,
                           const std::string& expect_in_output = "") {
  const ds::testing::TrainingRun r = ds::testing::run_training(dir, command, cfg);
  if (!expect_in_output.empty()) CHECK_THAT(r.out, Contains(expect_in_output));
  return r.losses;
}

// The first `n` GPUs this process sees, named as its own CUDA_VISIBLE_DEVICES names them
// (indices or UUIDs), or 0..n-1 when it is unset.
std::vector<std::string> gpu_names(int n) {
  std::vector<std::string> names;
  if (const char* inherited = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::string list = inherited;
    for (size_t start = 0; start <= list.size() && static_cast<int>(names.size()) < n;) {
      const size_t comma = std::min(list.find(',', start), list.size());
      names.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
  }
  for (int i = static_cast<int>(names.size()); i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

// "env CUDA_VISIBLE_DEVICES=... ": the first `n` GPUs.
std::string first_gpus(int n) {
  return fmt::format("env CUDA_VISIBLE_DEVICES={} ", fmt::join(gpu_names(n), ","));
}

// Two dsworker ranks started the way Slurm's srun starts two tasks on one node, rank r seeing
// only GPU `visible[r]` (as --gpus-per-task=1 does) and given `env` and `rank_env[r]`: both run in
// the background, their logs follow, and the exit code is the larger of theirs. The timeouts bound
// a rank left alone.
ds::testing::Run slurm_tasks(TempDir& dir, const std::array<std::string, 2>& visible,
                             const std::string& cfg, const std::string& env = "",
                             const std::array<std::string, 2>& rank_env = {}) {
  const std::string path = dir.write("run.yaml", cfg);
  std::filesystem::remove(dir.file("run.jsonl"));
  const int port = ds::comm::pick_free_port();
  std::string script;
  for (int r : {0, 1}) {
    script += fmt::format(
        "env SLURM_PROCID={0} SLURM_LOCALID={0} SLURM_NODEID=0 SLURM_NTASKS=2 "
        "SLURM_NTASKS_PER_NODE=2 SLURM_NNODES=1 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} "
        "CUDA_VISIBLE_DEVICES={2} DS_RENDEZVOUS_TIMEOUT=60 DS_COLLECTIVE_TIMEOUT=60 {3} {4} "
        "{5}dsworker {6} --metrics {7} > {8} 2>&1 & p{0}=$!; ",
        r, port, visible[static_cast<size_t>(r)], env, rank_env[static_cast<size_t>(r)], kBin, path,
        dir.file("run.jsonl"), dir.file(fmt::format("rank{}.log", r)));
  }
  script += fmt::format("wait $p0; a=$?; wait $p1; b=$?; cat {} {}; exit $((a > b ? a : b))",
                        dir.file("rank0.log"), dir.file("rank1.log"));
  return ds::testing::run("bash -c '" + script + "'");
}

// The losses of two ranks over NCCL on `cfg`: on the first two GPUs under dslaunch, or, with one
// GPU, as two Slurm tasks on it that NCCL takes for two hosts.
std::vector<double> nccl_losses(TempDir& dir, const std::string& cfg) {
  const std::string expected = "collectives on GPU buffers: NCCL";
  if (ds::tensor::cuda::query_devices().device_count >= 2) {
    return losses(dir, first_gpus(2) + kBin + "dslaunch --num_gpus 2", cfg, expected);
  }
  const std::string gpu = gpu_names(1)[0];
  const ds::testing::Run r =
      slurm_tasks(dir, {gpu, gpu}, cfg, "NCCL_SOCKET_IFNAME=lo",
                  {"NCCL_HOSTID=dstrain-test-host-0", "NCCL_HOSTID=dstrain-test-host-1"});
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains(expected));
  return ds::testing::metric_values(dir.file("run.jsonl"), "loss");
}

void check_close(const std::vector<double>& got, const std::vector<double>& want,
                 double tolerance) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(got[i] == Approx(want[i]).epsilon(tolerance));
  }
}

}  // namespace

TEST_CASE("dsworker on the GPU follows the CPU's losses", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  TempDir dir("dstrain_cuda_train");
  dir.write("train.txt", training_text(60000));
  for (const auto& [precision, tolerance] :
       {std::pair<std::string, double>{"", 1e-4}, {"bf16: {enabled: true},", 3e-2}}) {
    INFO((precision.empty() ? "fp32" : precision));
    const auto cpu = losses(dir, kBin + "dsworker", config("cpu", 0, 16, precision));
    const auto gpu =
        losses(dir, kBin + "dsworker", config("cuda", 0, 16, precision), "device: cuda:0");
    REQUIRE(cpu.size() == 20);
    check_close(gpu, cpu, tolerance);
    CHECK(gpu.back() < gpu.front());
  }
}

TEST_CASE("two ranks sharing one GPU reproduce one rank at every ZeRO stage", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  TempDir dir("dstrain_cuda_shared");
  dir.write("train.txt", training_text(60000));
  const auto one = losses(dir, kBin + "dsworker", config("cuda", 0, 16, ""));
  REQUIRE(one.size() == 20);
  for (int stage : {1, 2, 3}) {
    INFO("stage " << stage);
    // Two local ranks, CUDA_VISIBLE_DEVICES left to the one GPU: they share it.
    const auto two = losses(dir, first_gpus(1) + kBin + "dslaunch --num_gpus 2",
                            config("cuda", stage, 8, ""), "share");
    check_close(two, one, 1e-5);
  }
}

TEST_CASE("two ranks bound to the same GPU find it shared", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  TempDir dir("dstrain_cuda_uuid_shared");
  dir.write("train.txt", training_text(60000));
  const std::string gpu = gpu_names(1)[0];
  // Each rank sees one GPU as cuda:0, so device numbers cannot tell: the UUIDs do.
  const ds::testing::Run shared = slurm_tasks(dir, {gpu, gpu}, config("cuda", 2, 8, ""));
  INFO(shared.out);
  CHECK(shared.code == 0);
  CHECK_THAT(shared.out,
             Contains("collectives on GPU buffers: staged through host memory (ranks 0 and 1 "
                      "share GPU-"));
  // NCCL asked for is refused by name on both ranks, before any training.
  const ds::testing::Run refused =
      slurm_tasks(dir, {gpu, gpu}, config("cuda", 2, 8, ""), "DS_COMM_BACKEND=nccl");
  INFO(refused.out);
  CHECK(refused.code == 2);
  CHECK_THAT(refused.out, Contains("DS_COMM_BACKEND=nccl, but ranks 0 and 1 share GPU-"));
}

TEST_CASE("two ranks each bound to a GPU of its own use NCCL and reproduce one rank", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  if (ds::tensor::cuda::query_devices().device_count < 2) {
    WARN("one GPU: ranks bound to a GPU each need two, skipped");
    return;
  }
  TempDir dir("dstrain_cuda_uuid_own");
  dir.write("train.txt", training_text(60000));
  const auto one = losses(dir, kBin + "dsworker", config("cuda", 0, 16, ""));
  const std::vector<std::string> gpus = gpu_names(2);
  // Slurm's --gpus-per-task=1: LOCAL_WORLD_SIZE 2, one visible GPU each.
  const ds::testing::Run bound = slurm_tasks(dir, {gpus[0], gpus[1]}, config("cuda", 2, 8, ""));
  INFO(bound.out);
  REQUIRE(bound.code == 0);
  CHECK_THAT(bound.out, Contains("1 GPU visible: dealt round-robin"));
  CHECK_THAT(bound.out, Contains("collectives on GPU buffers: NCCL"));
  check_close(ds::testing::metric_values(dir.file("run.jsonl"), "loss"), one, 1e-5);
}

TEST_CASE("two ranks over NCCL reproduce one rank at every ZeRO stage and piped", "[cuda]") {
  if (!ds_cuda_test::gpu_available()) return;
  TempDir dir("dstrain_cuda_nccl");
  dir.write("train.txt", training_text(60000));
  const auto one = losses(dir, kBin + "dsworker", config("cuda", 0, 16, ""));
  REQUIRE(one.size() == 20);
  for (int stage : {0, 1, 2, 3}) {
    INFO("stage " << stage);
    const auto two = nccl_losses(dir, config("cuda", stage, 8, ""));
    // NCCL's ring sums in another order than one rank's backward: fp32 rounding only.
    check_close(two, one, 1e-5);
  }
  INFO("two pipeline stages");
  const auto piped = nccl_losses(dir, config("cuda", 0, 8, "pipeline: {stages: 2},"));
  check_close(piped, one, 1e-5);

  // bf16: the gradients cross NCCL in bf16 (reduced in bf16, where one rank adds nothing), so
  // the runs agree within bf16's tolerance against the CPU rather than fp32 rounding.
  const std::string bf16 = "bf16: {enabled: true},";
  const auto one_bf16 = losses(dir, kBin + "dsworker", config("cuda", 0, 16, bf16));
  for (int stage : {1, 3}) {
    INFO("bf16, stage " << stage);
    const auto two = nccl_losses(dir, config("cuda", stage, 8, bf16));
    check_close(two, one_bf16, 3e-2);
  }
}
