#pragma once

// Turns the exception a worker just caught into the ErrorInfo it sends to the parent, which
// rethrows it as mproc::RemoteError.

#include <string>
#include <string_view>

#include "mproc/detail/error_info.hpp"

namespace mproc::detail {

// The message reported for an exception whose type does not derive from std::exception, such
// as `throw 42`, which has no what() to ask.
inline constexpr std::string_view kNonStdExceptionMessage =
    "(an exception of a type not derived from std::exception)";

// The demangled form of a mangled name ("app::ParseError" for a type_info's name()), or the
// name itself when it does not demangle (a C function, a symbol name that is not mangled).
std::string demangle(const char* mangled);

// Makes every later throw in this process, on any thread, record its backtrace, so that
// capture_current_exception() can report where the exception was thrown rather than where it
// was caught. Called once by each worker process at start-up; later calls do nothing more.
// Throws that happened before the call have no recorded backtrace. Recording does not
// allocate and costs one backtrace() per throw, which is why the parent never turns it on.
void enable_throw_backtraces() noexcept;

// Describes the exception currently being handled. Call it inside a catch block (usually
// `catch (...)`). Outside one, or for an exception that is not a C++ one (the forced unwinding
// of a cancelled thread, which the caller must rethrow), type_name is "(unknown)".
//  - type_name: the demangled type, such as "std::runtime_error", "app::ParseError" or "int";
//  - message: what() for a std::exception, otherwise a fixed text that says there is none;
//  - traceback: one frame per line, innermost first, beginning at the function that threw, as
//    recorded at the throw. When no backtrace was recorded for this exception (recording off,
//    thrown through std::rethrow_exception, too many newer throws) it is the stack of the
//    caller instead, under a first line that says so.
// Never throws: when something fails (memory, demangling) it returns what it has so far.
ErrorInfo capture_current_exception() noexcept;

}  // namespace mproc::detail
