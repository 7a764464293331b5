#include "launcher/protocol.h"

#include <charconv>

#include "util/error.h"

namespace ds::launcher {

namespace {

constexpr size_t kMaxMessage = size_t{64} << 20;

bool to_size(std::string_view s, size_t& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

// Reads fields of a plan in order.
class FieldCursor {
 public:
  explicit FieldCursor(const Message& m) : m_(m) {}
  const std::string& str() { return m_.at(i_++); }
  int num() { return m_.int_at(i_++); }

 private:
  const Message& m_;
  size_t i_ = 0;
};

}  // namespace

const std::string& Message::at(size_t i) const {
  if (i >= fields.size()) {
    throw Error(
        fmt::format("protocol: {} message has {} fields, wanted field {}", type, fields.size(), i));
  }
  return fields[i];
}

int Message::int_at(size_t i) const {
  const std::string& s = at(i);
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    throw Error(fmt::format("protocol: {} field {} is not a number: '{}'", type, i, s));
  }
  return v;
}

std::string encode(const Message& message) {
  std::string payload;
  for (const std::string& f : message.fields) {
    payload += std::to_string(f.size());
    payload += ':';
    payload += f;
    payload += ',';
  }
  return message.type + " " + std::to_string(payload.size()) + "\n" + payload;
}

void FrameReader::feed(std::string_view bytes) { buffer_.append(bytes); }

std::string FrameReader::take_noise() { return std::exchange(noise_, {}); }

std::optional<Message> FrameReader::next() {
  if (!synced_) {
    // The agent's HELLO header is "HELLO 0\n"; skip whatever came before it.
    const std::string hello = std::string(kHello) + " 0\n";
    const size_t at = buffer_.find(hello);
    if (at == std::string::npos) {
      // Keep a tail that may be the start of HELLO; the rest is noise.
      const size_t keep = std::min(buffer_.size(), hello.size() - 1);
      noise_ += buffer_.substr(0, buffer_.size() - keep);
      buffer_.erase(0, buffer_.size() - keep);
      return std::nullopt;
    }
    noise_ += buffer_.substr(0, at);
    buffer_.erase(0, at);
    synced_ = true;
  }
  const size_t nl = buffer_.find('\n');
  if (nl == std::string::npos) {
    if (buffer_.size() > 64) throw Error("protocol: header line too long (not a dslaunch agent?)");
    return std::nullopt;
  }
  const std::string_view header(buffer_.data(), nl);
  const size_t space = header.find(' ');
  size_t len = 0;
  if (space == std::string_view::npos || !to_size(header.substr(space + 1), len) ||
      len > kMaxMessage) {
    throw Error(fmt::format("protocol: bad header '{}'", header));
  }
  if (buffer_.size() < nl + 1 + len) return std::nullopt;
  Message m;
  m.type = std::string(header.substr(0, space));
  std::string_view payload(buffer_.data() + nl + 1, len);
  while (!payload.empty()) {
    const size_t colon = payload.find(':');
    size_t n = 0;
    if (colon == std::string_view::npos || !to_size(payload.substr(0, colon), n) ||
        colon + 1 + n >= payload.size() || payload[colon + 1 + n] != ',') {
      throw Error(fmt::format("protocol: malformed fields in a {} message", m.type));
    }
    m.fields.emplace_back(payload.substr(colon + 1, n));
    payload.remove_prefix(colon + 2 + n);
  }
  buffer_.erase(0, nl + 1 + len);
  return m;
}

Message plan_message(const AgentPlan& plan) {
  Message m{"PLAN", {}};
  auto& f = m.fields;
  f = {plan.run_id,
       std::to_string(plan.node_rank),
       plan.host,
       plan.workdir,
       plan.devices,
       std::to_string(plan.grace_ms),
       std::to_string(plan.heartbeat_ms),
       std::to_string(plan.argv.size())};
  f.insert(f.end(), plan.argv.begin(), plan.argv.end());
  f.push_back(std::to_string(plan.ranks.size()));
  for (const AgentRank& r : plan.ranks) {
    f.push_back(std::to_string(r.rank));
    f.push_back(std::to_string(r.local_rank));
    f.push_back(std::to_string(r.env.items().size()));
    for (const auto& [k, v] : r.env.items()) {
      f.push_back(k);
      f.push_back(v);
    }
  }
  return m;
}

AgentPlan parse_plan(const Message& message) {
  if (message.type != "PLAN") throw Error("protocol: expected PLAN, got " + message.type);
  FieldCursor c(message);
  AgentPlan p;
  p.run_id = c.str();
  p.node_rank = c.num();
  p.host = c.str();
  p.workdir = c.str();
  p.devices = c.str();
  p.grace_ms = c.num();
  p.heartbeat_ms = c.num();
  const int argc = c.num();
  for (int i = 0; i < argc; ++i) p.argv.push_back(c.str());
  const int nranks = c.num();
  for (int i = 0; i < nranks; ++i) {
    AgentRank r;
    r.rank = c.num();
    r.local_rank = c.num();
    const int nenv = c.num();
    for (int j = 0; j < nenv; ++j) {
      const std::string& k = c.str();
      r.env.set(k, c.str());
    }
    p.ranks.push_back(std::move(r));
  }
  if (p.argv.empty()) throw Error("protocol: PLAN without a command");
  return p;
}

}  // namespace ds::launcher
