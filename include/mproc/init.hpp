#pragma once

namespace mproc {

// The first statement of main: the C++ form of Python's `if __name__ == '__main__':` and
// freeze_support(). In the program the user started it records argc and argv (a process
// started by spawn is a new run of the program with the same arguments) and returns at once.
// In a process that mproc started to serve (a worker or a Process under the spawn and
// forkserver start methods), it serves and ends that process, so the rest of main never runs
// there. A spawned process whose main uses mproc without calling init first ends with a
// message saying to add it. Calling it more than once is harmless.
void init(int argc, char** argv);

// True once init() has run in this process.
bool initialized() noexcept;

}  // namespace mproc
