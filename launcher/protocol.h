// The launcher <-> node agent protocol over one byte stream (a socket for this
// host, an SSH exec channel for the others).
//
// A message is a header line `<TYPE> <LEN>\n` and LEN bytes of fields, each a
// netstring `<n>:<bytes>,` — any byte can travel, nothing is ever parsed by a shell.
//
//   launcher -> agent   PLAN <AgentPlan>    start these ranks
//                       STOP                stop every rank (SIGTERM, then SIGKILL)
//                       PING                heartbeat
//   agent -> launcher   HELLO               first message; anything before it is noise
//                                           (a chatty .bashrc) and is reported, not parsed
//                       STARTED rank pid
//                       OUT rank fd line    one line of a rank's stdout (1) or stderr (2)
//                       EXIT rank code sig  how the rank ended (sig 0: it exited)
//                       ERROR text          the agent could not do what it was asked
//                       DONE                every rank has ended and been reaped
//                       PING                heartbeat
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "launcher/env.h"

namespace ds::launcher {

inline constexpr std::string_view kHello = "HELLO";

struct Message {
  std::string type;
  std::vector<std::string> fields;

  const std::string& at(size_t i) const;  // throws ds::Error when missing
  int int_at(size_t i) const;
};

std::string encode(const Message& message);

// Splits a byte stream into messages.
class FrameReader {
 public:
  // Bytes before HELLO are not protocol (shell startup noise) and are kept apart.
  explicit FrameReader(bool expect_hello) : synced_(!expect_hello) {}
  void feed(std::string_view bytes);
  // The next complete message; throws ds::Error on a malformed stream.
  std::optional<Message> next();
  // Noise seen before HELLO (taken: later calls return only newer noise).
  std::string take_noise();

 private:
  std::string buffer_;
  std::string noise_;
  bool synced_;
};

// What one node agent runs.
struct AgentRank {
  int rank = 0;
  int local_rank = 0;
  EnvList env;  // the contract and forwarded variables, set over the agent's own
};

struct AgentPlan {
  std::string run_id;
  int node_rank = 0;
  std::string host;     // as the launcher names it, for messages
  std::string workdir;  // ranks start here
  std::vector<std::string> argv;
  std::string devices;  // CUDA_VISIBLE_DEVICES, set when the node has GPUs
  std::vector<AgentRank> ranks;
  int grace_ms = 3000;       // SIGTERM -> SIGKILL
  int heartbeat_ms = 30000;  // silence from the launcher this long = it is gone
};

Message plan_message(const AgentPlan& plan);
AgentPlan parse_plan(const Message& message);

}  // namespace ds::launcher
