#pragma once

namespace mproc {

// How a new process begins.
enum class StartMethod {
    fork,        // a copy of the parent; fastest; the default
    spawn,       // a fresh run of the program, entered through mproc::init
    forkserver,  // a copy of a clean server process started by spawn
};

// The start method that pools and processes use when they name none. Not thread-safe: call it
// at the start of main, before any pool or process exists.
void set_start_method(StartMethod method) noexcept;
StartMethod get_start_method() noexcept;

}  // namespace mproc
