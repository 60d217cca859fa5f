#pragma once

namespace mproc {

// The first statement of main: the C++ form of Python's `if __name__ == '__main__':` and
// freeze_support(). In the program the user started it returns at
// once. In a process that mproc started to serve tasks (the spawn and forkserver start
// methods, when they come), it serves them and ends that process, so the rest of main never
// runs twice. Calling it more than once is harmless.
void init(int argc, char** argv);

// True once init() has run in this process.
bool initialized() noexcept;

}  // namespace mproc
