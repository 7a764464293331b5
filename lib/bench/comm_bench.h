// dsbench comm: collective bandwidth in the manner of NVIDIA's nccl-tests. For each size of a
// sweep it reports the time per operation, the algorithm bandwidth (bytes / time) and the bus
// bandwidth (algbw times the share of the data each link must carry: 2(n-1)/n for allreduce,
// (n-1)/n for allgather and reduce_scatter, 1 for broadcast and sendrecv), comparable across
// rank counts and to the hardware's peak. With -c 1 every result is checked exactly and wrong
// elements are counted.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace ds::bench {

enum class CommOp { kAllreduce, kReduceScatter, kAllgather, kBroadcast, kSendRecv };
std::string_view comm_op_name(CommOp op);
std::vector<CommOp> parse_comm_ops(const std::string& text);  // a name, or "all"

struct CommBenchOptions {
  size_t min_bytes = 8;
  size_t max_bytes = 64u << 20;
  size_t factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  std::vector<CommOp> ops = {CommOp::kAllreduce};
  tensor::DType dtype = tensor::DType::kF32;
  std::string json_path;  // write results as JSON here (rank 0)
  int np = 0;             // >0: fork this many local ranks instead of reading the environment
  bool tcp_stream = true;
  std::string backend;  // auto, shm, gloo, nccl; empty: DS_COMM_BACKEND or auto
};

// "8", "64K", "64M", "1G" (powers of 1024); throws UsageError naming `flag`.
size_t parse_size(const std::string& text, const std::string& flag);

// Runs the benchmark: as `np` forked local ranks, or as this process's rank of a run started
// by dslaunch (or Slurm, or mpirun). Rank 0 prints the table. Returns the exit code: 0, 1 when
// any element was wrong or a rank failed, 130 on Ctrl-C.
int run_comm_bench(const CommBenchOptions& options);

}  // namespace ds::bench
