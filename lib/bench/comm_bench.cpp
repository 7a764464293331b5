#include "bench/comm_bench.h"

#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "bench/forked_ranks.h"
#include "bench/tcp_stream.h"
#include "comm/socket.h"
#include "tensor/tensor.h"
#include "util/log.h"
#include "worker/bootstrap.h"

namespace ds::bench {
namespace {

using comm::ProcessGroup;
using tensor::DType;
using tensor::Tensor;

struct Row {
  CommOp op;
  size_t bytes;
  size_t count;
  double time_us;
  double algbw;
  double busbw;
  int64_t wrong;
};

double bus_factor(CommOp op, int n) {
  switch (op) {
    case CommOp::kAllreduce:
      return 2.0 * (n - 1) / n;
    case CommOp::kReduceScatter:
    case CommOp::kAllgather:
      return static_cast<double>(n - 1) / n;
    case CommOp::kBroadcast:
    case CommOp::kSendRecv:
      return 1.0;
  }
  return 1.0;
}

// Small integers: sums stay exact in fp32, so the expected value is the exact sum rounded
// once to the dtype, which is what fp32 accumulation gives.
float pattern(int rank, size_t i) {
  return static_cast<float>((rank + 1) * static_cast<int>(i % 13 + 1));
}

float to_dtype(float v, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return v;
    case DType::kBF16:
      return tensor::bf16_to_f32(tensor::f32_to_bf16(v));
    case DType::kF16:
      return tensor::f16_to_f32(tensor::f32_to_f16(v));
  }
  return v;
}

void fill(Tensor& t, int rank, size_t offset = 0) {
  const size_t n = static_cast<size_t>(t.numel());
  if (t.dtype() == DType::kF32) {
    float* p = t.data<float>();
    for (size_t i = 0; i < n; ++i) p[i] = pattern(rank, offset + i);
    return;
  }
  uint16_t* p = t.data<uint16_t>();
  for (size_t i = 0; i < n; ++i) {
    const float v = pattern(rank, offset + i);
    p[i] = t.dtype() == DType::kBF16 ? tensor::f32_to_bf16(v) : tensor::f32_to_f16(v);
  }
}

float read(const Tensor& t, size_t i) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[i];
    case DType::kBF16:
      return tensor::bf16_to_f32(t.data<uint16_t>()[i]);
    case DType::kF16:
      return tensor::f16_to_f32(t.data<uint16_t>()[i]);
  }
  return 0;
}

Tensor make(size_t count, DType dtype) {
  return Tensor::zeros({static_cast<int64_t>(count)}, dtype,
                       tensor::MemoryCategory::kCommunication);
}

// The buffers of one operation at one size: what it reads, what it writes.
struct Buffers {
  Tensor in;
  Tensor out;
};

class Runner {
 public:
  Runner(ProcessGroup& pg, DType dtype) : pg_(pg), dtype_(dtype) {}

  // Elements in the operation's large buffer for `bytes`, or 0 when too small to run.
  size_t count_for(CommOp op, size_t bytes) const {
    const size_t count = bytes / tensor::dtype_size(dtype_);
    const auto n = static_cast<size_t>(pg_.size());
    if (op == CommOp::kAllgather || op == CommOp::kReduceScatter) return count / n * n;
    return count;
  }

  Buffers buffers(CommOp op, size_t count) const {
    const auto n = static_cast<size_t>(pg_.size());
    switch (op) {
      case CommOp::kReduceScatter:
        return {make(count, dtype_), make(count / n, dtype_)};
      case CommOp::kAllgather:
        return {make(count / n, dtype_), make(count, dtype_)};
      case CommOp::kSendRecv:
        return {make(count, dtype_), make(count, dtype_)};
      case CommOp::kAllreduce:
      case CommOp::kBroadcast:
        return {make(count, dtype_), Tensor()};
    }
    return {};
  }

  void run(CommOp op, Buffers& b) {
    const int n = pg_.size();
    switch (op) {
      case CommOp::kAllreduce:
        pg_.allreduce(b.in);
        return;
      case CommOp::kReduceScatter:
        pg_.reduce_scatter(b.out, b.in);
        return;
      case CommOp::kAllgather:
        pg_.allgather(b.out, b.in);
        return;
      case CommOp::kBroadcast:
        pg_.broadcast(b.in, 0);
        return;
      case CommOp::kSendRecv: {
        if (n == 1) return;
        auto sent = pg_.send(b.in, (pg_.rank() + 1) % n, 0, true);
        auto got = pg_.recv(b.out, (pg_.rank() + n - 1) % n, 0, true);
        got->wait();
        sent->wait();
        return;
      }
    }
  }

  // Runs once on fresh data and counts elements that differ from the exact answer.
  int64_t check(CommOp op, size_t count) {
    const int n = pg_.size();
    const int me = pg_.rank();
    Buffers b = buffers(op, count);
    const size_t block = count / static_cast<size_t>(n);
    fill(b.in, me, op == CommOp::kReduceScatter ? 0 : 0);
    if (op == CommOp::kBroadcast && me != 0) b.in.zero();
    run(op, b);
    int64_t wrong = 0;
    auto sum_at = [&](size_t i) {
      float s = 0;
      for (int r = 0; r < n; ++r) s += pattern(r, i);
      return to_dtype(s, dtype_);
    };
    switch (op) {
      case CommOp::kAllreduce:
        for (size_t i = 0; i < count; ++i) wrong += read(b.in, i) != sum_at(i);
        break;
      case CommOp::kReduceScatter:
        for (size_t i = 0; i < block; ++i) {
          wrong += read(b.out, i) != sum_at(static_cast<size_t>(me) * block + i);
        }
        break;
      case CommOp::kAllgather:
        for (size_t i = 0; i < count; ++i) {
          wrong +=
              read(b.out, i) != to_dtype(pattern(static_cast<int>(i / block), i % block), dtype_);
        }
        break;
      case CommOp::kBroadcast:
        for (size_t i = 0; i < count; ++i)
          wrong += read(b.in, i) != to_dtype(pattern(0, i), dtype_);
        break;
      case CommOp::kSendRecv: {
        const int prev = (me + n - 1) % n;
        if (n == 1) break;
        for (size_t i = 0; i < count; ++i) {
          wrong += read(b.out, i) != to_dtype(pattern(prev, i), dtype_);
        }
        break;
      }
    }
    return wrong;
  }

  // Combines one number over the ranks (max of times, sum of wrong counts), in f32 exactly
  // enough for both.
  double combine(double v, comm::ReduceOp op) {
    Tensor t = make(1, DType::kF32);
    t.data<float>()[0] = static_cast<float>(v);
    pg_.allreduce(t, op);
    return t.data<float>()[0];
  }

 private:
  ProcessGroup& pg_;
  DType dtype_;
};

std::string rank_env_error(int code) {
  return code == 130 ? "interrupted" : fmt::format("exit code {}", code);
}

int run_rank(const CommBenchOptions& options) {
  worker::BootstrapOptions boot_options;
  if (!options.backend.empty()) {
    boot_options.backend = comm::parse_backend(options.backend, "--backend");
  }
  worker::Bootstrap boot = worker::bootstrap(boot_options);
  ProcessGroup& pg = *boot.world;
  const int n = pg.size();
  const bool lead = pg.rank() == 0;
  if (boot.info.rank != 0) log::set_level(log::Level::kWarn);

  if (lead) {
    fmt::print("# dsbench comm: {} ranks, backend {}, dtype {}, iters {}, warmup {}, check {}\n", n,
               pg.backend(), tensor::dtype_name(options.dtype), options.iters, options.warmup,
               options.check ? "on" : "off");
  }
  double tcp_gbps = 0;
  if (options.tcp_stream && n >= 2) {
    std::string address;
    if (pg.rank() == 0) {
      address = boot.info.socket_ifname.empty() ? comm::local_address_toward(boot.info.master_addr)
                                                : comm::interface_address(boot.info.socket_ifname);
      boot.store->set("bench/tcp_address", address);
    } else if (pg.rank() == 1) {
      address = boot.store->get("bench/tcp_address");
    }
    const size_t stream_bytes = std::max<size_t>(options.max_bytes, 16u << 20);
    const TcpStreamResult stream =
        measure_tcp_stream(*boot.store, pg.rank(), address, stream_bytes, 8);
    tcp_gbps = stream.gbps;
    if (lead) {
      fmt::print(
          "# plain TCP stream, rank 1 -> rank 0 over {}: {:.2f} GB/s ({} MiB x 8, 1 MiB "
          "writes)\n",
          stream.address, tcp_gbps, stream_bytes >> 20);
    }
    pg.barrier();
  }

  Runner runner(pg, options.dtype);
  std::vector<Row> rows;
  int64_t total_wrong = 0;
  for (CommOp op : options.ops) {
    if (lead) {
      fmt::print(
          "#\n# {}\n#{:>12} {:>12} {:>6} {:>6} {:>10} {:>8} {:>8} {:>7}\n"
          "#{:>12} {:>12} {:>6} {:>6} {:>10} {:>8} {:>8} {:>7}\n",
          comm_op_name(op), "size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong",
          "(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "");
    }
    for (size_t bytes = options.min_bytes; bytes <= options.max_bytes;
         bytes = std::max(bytes + 1, bytes * options.factor)) {
      const size_t count = runner.count_for(op, bytes);
      if (count == 0) continue;
      int64_t wrong = 0;
      if (options.check)
        wrong = static_cast<int64_t>(
            runner.combine(static_cast<double>(runner.check(op, count)), comm::ReduceOp::kSum));
      Buffers b = runner.buffers(op, count);
      fill(b.in, pg.rank());
      for (int i = 0; i < options.warmup; ++i) runner.run(op, b);
      pg.barrier();
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < options.iters; ++i) runner.run(op, b);
      const double local =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
          options.iters;
      // The slowest rank's time: a collective is done when everyone is.
      const double seconds = runner.combine(local, comm::ReduceOp::kMax);
      const size_t size = count * tensor::dtype_size(options.dtype);
      Row row{op, size, count, seconds * 1e6, static_cast<double>(size) / seconds / 1e9, 0, wrong};
      row.busbw = row.algbw * bus_factor(op, n);
      total_wrong += wrong;
      rows.push_back(row);
      if (lead) {
        fmt::print(" {:>12} {:>12} {:>6} {:>6} {:>10.2f} {:>8.2f} {:>8.2f} {:>7}\n", size, count,
                   tensor::dtype_name(options.dtype),
                   op == CommOp::kAllreduce || op == CommOp::kReduceScatter ? "sum" : "none",
                   row.time_us, row.algbw, row.busbw, wrong);
        std::fflush(stdout);
      }
    }
  }

  if (lead) {
    fmt::print("#\n# wrong elements: {}{}\n", total_wrong, total_wrong == 0 ? " (all exact)" : "");
    const Row* biggest = nullptr;
    for (const Row& r : rows) {
      if (r.op == CommOp::kAllreduce && (!biggest || r.bytes > biggest->bytes)) biggest = &r;
    }
    if (biggest && tcp_gbps > 0) {
      fmt::print(
          "# allreduce busbw at {} MiB: {:.2f} GB/s = {:.0f}% of the plain TCP stream "
          "({:.2f} GB/s)\n",
          static_cast<double>(biggest->bytes) / (1 << 20), biggest->busbw,
          100.0 * biggest->busbw / tcp_gbps, tcp_gbps);
    }
    if (!options.json_path.empty()) {
      nlohmann::json doc;
      doc["ranks"] = n;
      doc["backend"] = std::string(pg.backend());
      doc["dtype"] = std::string(tensor::dtype_name(options.dtype));
      doc["iters"] = options.iters;
      doc["warmup"] = options.warmup;
      doc["tcp_stream_gbps"] = tcp_gbps;
      doc["wrong"] = total_wrong;
      for (const Row& r : rows) {
        doc["results"].push_back({{"op", std::string(comm_op_name(r.op))},
                                  {"size", r.bytes},
                                  {"count", r.count},
                                  {"time_us", r.time_us},
                                  {"algbw_gbps", r.algbw},
                                  {"busbw_gbps", r.busbw},
                                  {"wrong", r.wrong}});
      }
      std::ofstream out(options.json_path);
      if (!out) throw UsageError(fmt::format("cannot write --json file {}", options.json_path));
      out << doc.dump(2) << "\n";
    }
  }
  pg.barrier();
  return total_wrong == 0 ? 0 : 1;
}

std::string random_token() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

}  // namespace

std::string_view comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::kAllreduce:
      return "allreduce";
    case CommOp::kReduceScatter:
      return "reduce_scatter";
    case CommOp::kAllgather:
      return "allgather";
    case CommOp::kBroadcast:
      return "broadcast";
    case CommOp::kSendRecv:
      return "sendrecv";
  }
  return "?";
}

std::vector<CommOp> parse_comm_ops(const std::string& text) {
  const std::vector<CommOp> all = {CommOp::kAllreduce, CommOp::kReduceScatter, CommOp::kAllgather,
                                   CommOp::kBroadcast, CommOp::kSendRecv};
  if (text == "all") return all;
  for (CommOp op : all) {
    if (text == comm_op_name(op)) return {op};
  }
  throw UsageError(fmt::format("--op '{}' is not an operation", text),
                   "use allreduce, reduce_scatter, allgather, broadcast, sendrecv or all");
}

size_t parse_size(const std::string& text, const std::string& flag) {
  size_t pos = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  const std::string suffix = text.substr(pos);
  size_t scale = 1;
  if (suffix == "K" || suffix == "k")
    scale = 1u << 10;
  else if (suffix == "M" || suffix == "m")
    scale = 1u << 20;
  else if (suffix == "G" || suffix == "g")
    scale = 1u << 30;
  else if (!suffix.empty() || pos == 0) {
    throw UsageError(fmt::format("{} '{}' is not a size", flag, text), "e.g. 8, 64K, 64M or 1G");
  }
  return static_cast<size_t>(value) * scale;
}

int run_comm_bench(const CommBenchOptions& options) {
  if (options.min_bytes == 0 || options.min_bytes > options.max_bytes) {
    throw UsageError("-b must be at least 1 and at most -e");
  }
  if (options.factor < 2) throw UsageError("-f must be at least 2");
  if (options.np <= 0) return run_rank(options);

  // --np: this process forks the ranks and gives each the contract dslaunch would.
  const int port = comm::pick_free_port();
  const std::string token = random_token();
  ForkedRanks ranks(
      options.np,
      [&](int rank) {
        ::setenv("RANK", std::to_string(rank).c_str(), 1);
        ::setenv("WORLD_SIZE", std::to_string(options.np).c_str(), 1);
        ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
        ::setenv("LOCAL_WORLD_SIZE", std::to_string(options.np).c_str(), 1);
        ::setenv("NODE_RANK", "0", 1);
        ::setenv("NNODES", "1", 1);
        ::setenv("MASTER_ADDR", "127.0.0.1", 1);
        ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        ::setenv("DS_RUN_ID", fmt::format("dsbench-{}", port).c_str(), 1);
        ::setenv("DS_RUN_TOKEN", token.c_str(), 1);
        log::set_prefix(fmt::format("dsbench [rank {}]", rank));
        return run_rank(options);
      },
      /*capture_output=*/false);
  const std::vector<RankExit> exits = ranks.wait(std::chrono::hours(24 * 365), true);
  if (ranks.interrupted() != 0) return 130;
  // The first rank that failed by itself, not one killed because of it.
  for (size_t r = 0; r < exits.size(); ++r) {
    if (exits[r].code != 0 && exits[r].code != 128 + 9) {
      if (exits[r].code != 1) {
        log::warn("rank {} failed ({})", r, rank_env_error(exits[r].code));
      }
      return exits[r].code;
    }
  }
  for (const RankExit& e : exits) {
    if (e.code != 0) return 1;
  }
  return 0;
}

}  // namespace ds::bench
