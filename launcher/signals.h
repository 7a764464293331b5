// Signals as readable events: a handler writes the signal number into a pipe that
// the caller's poll() loop watches (the self-pipe trick), so all real work happens
// in ordinary code, never inside a handler. One per process.
#pragma once

#include <initializer_list>
#include <vector>

namespace ds::launcher {

class SignalPipe {
 public:
  // Installs handlers for `signals` (replacing any earlier SignalPipe's).
  explicit SignalPipe(std::initializer_list<int> signals);
  ~SignalPipe();  // restores the default dispositions
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  int fd() const;            // readable when a signal arrived
  std::vector<int> drain();  // the signals that arrived, in order

 private:
  std::vector<int> signals_;
};

// Resets every signal to its default disposition and unblocks all: what a fresh
// program expects after exec (SIG_IGN would otherwise be inherited).
void reset_signals_for_exec();

}  // namespace ds::launcher
