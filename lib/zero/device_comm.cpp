#include "zero/device_comm.h"

namespace ds::zero {

using tensor::Buffer;
using tensor::MemoryCategory;

char* DeviceStagedComm::staging(Buffer& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer = Buffer(bytes, MemoryCategory::kCommunication);
  return buffer.as<char>();
}

void DeviceStagedComm::allreduce(void* data, tensor::DType dtype, int64_t n, Reduction op) {
  if (size() == 1) return;
  const size_t bytes = tensor::dtype_size(dtype) * static_cast<size_t>(n);
  char* host = staging(in_, bytes);
  ops_.download(host, data, bytes);
  inner_.allreduce(host, dtype, n, op);
  ops_.upload(data, host, bytes);
}

std::unique_ptr<PendingOp> DeviceStagedComm::reduce_scatter(const void* full, void* out,
                                                            tensor::DType dtype, int64_t piece,
                                                            Reduction op, Mode) {
  const size_t piece_bytes = tensor::dtype_size(dtype) * static_cast<size_t>(piece);
  if (size() == 1) {
    ops_.copy(out, full, piece_bytes);
    return finished_op();
  }
  char* host_full = staging(in_, piece_bytes * static_cast<size_t>(size()));
  char* host_out = staging(out_, piece_bytes);
  ops_.download(host_full, full, piece_bytes * static_cast<size_t>(size()));
  inner_.reduce_scatter(host_full, host_out, dtype, piece, op, Mode::kBlocking);
  ops_.upload(out, host_out, piece_bytes);
  return finished_op();
}

std::unique_ptr<PendingOp> DeviceStagedComm::allgather(const void* piece, void* out,
                                                       tensor::DType dtype, int64_t n, Mode) {
  const size_t piece_bytes = tensor::dtype_size(dtype) * static_cast<size_t>(n);
  if (size() == 1) {
    ops_.copy(out, piece, piece_bytes);
    return finished_op();
  }
  char* host_piece = staging(in_, piece_bytes);
  char* host_out = staging(out_, piece_bytes * static_cast<size_t>(size()));
  ops_.download(host_piece, piece, piece_bytes);
  inner_.allgather(host_piece, host_out, dtype, n, Mode::kBlocking);
  ops_.upload(out, host_out, piece_bytes * static_cast<size_t>(size()));
  return finished_op();
}

}  // namespace ds::zero
