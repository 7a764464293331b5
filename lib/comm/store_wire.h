// The TcpStore wire format. Every message is a frame: a little-endian u32 payload length, then
// the payload, at most kMaxFrameBytes. A payload starts with an opcode byte; strings are a u32
// length and bytes; integers are little-endian i64. The first frame a client sends must be
// kHello with the magic and the run token; the server drops any connection that sends
// anything else, a frame that does not parse, or one that is too large.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/error.h"

namespace ds::comm::wire {

inline constexpr uint32_t kMaxFrameBytes = 16u << 20;
inline constexpr std::string_view kMagic = "dstrain-store/1";

enum class Op : uint8_t {
  kHello = 1,   // magic, token, rank (-1: not a rank) -> kOk | kReject(reason)
  kSet = 2,     // key, value -> kOk
  kGet = 3,     // key, timeout_ms -> kValue(value) | kTimeout
  kAdd = 4,     // key, delta -> kInt(new value) | kError(message)
  kCheck = 5,   // keys -> kBool
  kWait = 6,    // keys, timeout_ms -> kOk | kTimeout(missing keys)
  kRemove = 7,  // key -> kBool
};

enum class Reply : uint8_t {
  kOk = 0x81,
  kValue = 0x82,
  kInt = 0x83,
  kBool = 0x84,
  kTimeout = 0x85,
  kReject = 0x86,
  kError = 0x87,
};

// A frame that does not parse.
class WireError : public Error {
 public:
  using Error::Error;
};

class FrameWriter {
 public:
  FrameWriter() : buffer_(4, '\0') {}
  FrameWriter& u8(uint8_t v);
  FrameWriter& i64(int64_t v);
  FrameWriter& str(std::string_view s);
  FrameWriter& strings(const std::vector<std::string>& list);
  // The frame with its length prefix filled in.
  std::string finish();

 private:
  std::string buffer_;
};

class FrameReader {
 public:
  explicit FrameReader(std::string_view payload) : data_(payload) {}
  uint8_t u8();
  int64_t i64();
  std::string str();
  std::vector<std::string> strings();
  // Throws unless the payload was consumed exactly: trailing bytes mean a confused peer.
  void expect_end() const;

 private:
  std::string_view take(size_t n);
  std::string_view data_;
  size_t pos_ = 0;
};

uint32_t read_u32_le(const char* p);

}  // namespace ds::comm::wire
