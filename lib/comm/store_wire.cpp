#include "comm/store_wire.h"

#include <cstring>

namespace ds::comm::wire {
namespace {

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(std::string_view s, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  return v;
}

}  // namespace

uint32_t read_u32_le(const char* p) {
  return static_cast<uint32_t>(get_le(std::string_view(p, 4), 4));
}

FrameWriter& FrameWriter::u8(uint8_t v) {
  buffer_.push_back(static_cast<char>(v));
  return *this;
}

FrameWriter& FrameWriter::i64(int64_t v) {
  put_le(buffer_, static_cast<uint64_t>(v), 8);
  return *this;
}

FrameWriter& FrameWriter::str(std::string_view s) {
  DS_CHECK(s.size() < kMaxFrameBytes, "store value of {} bytes is too large", s.size());
  put_le(buffer_, s.size(), 4);
  buffer_.append(s);
  return *this;
}

FrameWriter& FrameWriter::strings(const std::vector<std::string>& list) {
  put_le(buffer_, list.size(), 4);
  for (const auto& s : list) str(s);
  return *this;
}

std::string FrameWriter::finish() {
  const size_t payload = buffer_.size() - 4;
  if (payload > kMaxFrameBytes) {
    throw Error(fmt::format("a store request of {} bytes exceeds the {} byte frame limit", payload,
                            kMaxFrameBytes),
                "keep store values small (addresses, ids); move bulk data with collectives");
  }
  std::string len;
  put_le(len, payload, 4);
  std::memcpy(buffer_.data(), len.data(), 4);
  return std::move(buffer_);
}

std::string_view FrameReader::take(size_t n) {
  if (n > data_.size() - pos_) throw WireError("truncated frame");
  std::string_view out = data_.substr(pos_, n);
  pos_ += n;
  return out;
}

uint8_t FrameReader::u8() { return static_cast<uint8_t>(take(1)[0]); }

int64_t FrameReader::i64() { return static_cast<int64_t>(get_le(take(8), 8)); }

std::string FrameReader::str() {
  const auto n = static_cast<size_t>(get_le(take(4), 4));
  return std::string(take(n));
}

std::vector<std::string> FrameReader::strings() {
  const auto n = static_cast<size_t>(get_le(take(4), 4));
  // Each string needs at least its 4-byte length: reject absurd counts before allocating.
  if (n > (data_.size() - pos_) / 4) throw WireError("string count larger than the frame");
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(str());
  return out;
}

void FrameReader::expect_end() const {
  if (pos_ != data_.size()) throw WireError("trailing bytes in frame");
}

}  // namespace ds::comm::wire
