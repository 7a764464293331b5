// SIGINT/SIGTERM during training: the handler only records the signal; the loop
// checks it between micro-steps and stops cleanly (exit code 128 + signal).
#pragma once

namespace ds::worker {

void install_interrupt_handlers();
// The signal that asked us to stop, or 0.
int interrupt_signal();

}  // namespace ds::worker
