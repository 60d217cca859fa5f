#pragma once

// How mproc's own child processes end. A forked child holds a copy of its parent's stack, the
// caller's frames among them (and a spawned one has the user's main below mproc::init): an
// exception that left the child's entry would unwind into them, and run the user's catch blocks
// and the rest of main in the child. So every child entry runs under run_child_entry, and
// every child ends with _exit.

namespace mproc::detail {

// Exit codes of mproc's children besides 0, 1 (a worker whose initializer threw, a Process whose
// target threw) and those of spawn.hpp (86, 87), which make a pool give up on spawning. These
// are sysexits.h codes, apart from all of those: a pool treats them as any other worker's
// death.
// A worker whose connection to its pool failed (a send or receive threw; its task may have
// closed the socket): the pool fails the task it held with WorkerLost and starts another.
inline constexpr int exit_link_broken = 74;  // EX_IOERR
// An exception reached the entry of one of mproc's children.
inline constexpr int exit_internal_error = 70;  // EX_SOFTWARE

// Flushes stdio and ends the process with code, running no destructor and no atexit handler.
[[noreturn]] void end_child(int code) noexcept;
// Writes "mproc <role> <pid>: <type>: <message>" of the exception being handled to stderr, on
// one line, and ends the process with code. Call it in a catch block.
[[noreturn]] void end_child_on_exception(const char* role, int code) noexcept;

// Runs a child's entry, body, which ends the process itself; should it throw instead, the child
// ends with end_child_on_exception(role, exit_internal_error), and if it returns, with code 0.
template <class Body>
[[noreturn]] void run_child_entry(const char* role, Body&& body) noexcept {
    try {
        body();
    } catch (...) {
        end_child_on_exception(role, exit_internal_error);
    }
    end_child(0);
}

}  // namespace mproc::detail
