#include "zero/device_comm.h"

namespace ds::zero {

using tensor::Buffer;
using tensor::MemoryCategory;

namespace {

// `buffer`, made at least `bytes` long (page-locked where `ops` says so).
char* grown(Buffer& buffer, size_t bytes, const tensor::Ops& ops) {
  ops.grow_staging(buffer, bytes, MemoryCategory::kCommunication);
  return buffer.as<char>();
}

}  // namespace

// A host collective in flight: when waited for, its result (`host`, in the staging) goes back to
// the device and its staging back to the pool.
class DeviceStagedComm::StagedOp final : public PendingOp {
 public:
  StagedOp(std::unique_ptr<PendingOp> host_op, tensor::Ops& ops, Staging& staging, const char* host,
           void* device, size_t bytes)
      : host_op_(std::move(host_op)),
        ops_(ops),
        staging_(staging),
        host_(host),
        device_(device),
        bytes_(bytes) {}
  ~StagedOp() override {
    // An op dropped unwaited (an error unwinding) must not leave its staging in use by the
    // host collective: wait for that, but copy nothing.
    if (host_op_) {
      try {
        host_op_->wait();
      } catch (...) {
      }
      staging_.busy = false;
    }
  }
  void wait() override {
    if (!host_op_) return;
    host_op_->wait();
    host_op_.reset();
    ops_.upload(device_, host_, bytes_);
    staging_.busy = false;
  }

 private:
  std::unique_ptr<PendingOp> host_op_;
  tensor::Ops& ops_;
  Staging& staging_;
  const char* host_;
  void* device_;
  size_t bytes_;
};

DeviceStagedComm::Staging& DeviceStagedComm::acquire() {
  for (const auto& s : pool_) {
    if (!s->busy) {
      s->busy = true;
      return *s;
    }
  }
  pool_.push_back(std::make_unique<Staging>());
  pool_.back()->busy = true;
  return *pool_.back();
}

template <typename Start>
std::unique_ptr<PendingOp> DeviceStagedComm::staged(const void* device_in, size_t in_bytes,
                                                    void* device_out, size_t out_bytes,
                                                    bool in_place, Mode mode, Start&& start) {
  Staging& staging = acquire();
  char* host_out = nullptr;
  std::unique_ptr<PendingOp> host_op;
  try {
    char* host_in = grown(staging.in, in_bytes, ops_);
    host_out = in_place ? host_in : grown(staging.out, out_bytes, ops_);
    ops_.download(host_in, device_in, in_bytes);
    host_op = start(host_in, host_out);
  } catch (...) {
    staging.busy = false;
    throw;
  }
  auto op = std::make_unique<StagedOp>(std::move(host_op), ops_, staging, host_out, device_out,
                                       out_bytes);
  if (mode == Mode::kBlocking) op->wait();
  return op;
}

void DeviceStagedComm::allreduce(void* data, tensor::DType dtype, int64_t n, Reduction op) {
  if (size() == 1) return;
  const size_t bytes = tensor::dtype_size(dtype) * static_cast<size_t>(n);
  staged(data, bytes, data, bytes, /*in_place=*/true, Mode::kBlocking, [&](char* host, char*) {
    inner_.allreduce(host, dtype, n, op);
    return finished_op();
  });
}

std::unique_ptr<PendingOp> DeviceStagedComm::reduce_scatter(const void* full, void* out,
                                                            tensor::DType dtype, int64_t piece,
                                                            Reduction op, Mode mode) {
  const size_t piece_bytes = tensor::dtype_size(dtype) * static_cast<size_t>(piece);
  if (size() == 1) {
    ops_.copy(out, full, piece_bytes);
    return finished_op();
  }
  const size_t full_bytes = piece_bytes * static_cast<size_t>(size());
  return staged(full, full_bytes, out, piece_bytes, /*in_place=*/false, mode,
                [&](char* host_full, char* host_out) {
                  return inner_.reduce_scatter(host_full, host_out, dtype, piece, op, mode);
                });
}

std::unique_ptr<PendingOp> DeviceStagedComm::allgather(const void* piece, void* out,
                                                       tensor::DType dtype, int64_t n, Mode mode) {
  const size_t piece_bytes = tensor::dtype_size(dtype) * static_cast<size_t>(n);
  if (size() == 1) {
    ops_.copy(out, piece, piece_bytes);
    return finished_op();
  }
  const size_t full_bytes = piece_bytes * static_cast<size_t>(size());
  return staged(piece, piece_bytes, out, full_bytes, /*in_place=*/false, mode,
                [&](char* host_piece, char* host_out) {
                  return inner_.allgather(host_piece, host_out, dtype, n, mode);
                });
}

}  // namespace ds::zero
