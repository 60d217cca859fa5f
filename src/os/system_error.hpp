#pragma once

#include <string>

namespace mproc::detail {

// Throws mproc::Error naming the failed call and errno's text.
[[noreturn]] void throw_system_error(const std::string& what);
// The same with an explicit error number, for calls that return it rather than set errno.
[[noreturn]] void throw_system_error(const std::string& what, int error_number);

}  // namespace mproc::detail
