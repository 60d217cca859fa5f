#include "os/system_error.hpp"

#include <cerrno>
#include <cstring>

#include "mproc/errors.hpp"

namespace mproc::detail {

void throw_system_error(const std::string& what) {
    throw_system_error(what, errno);
}

void throw_system_error(const std::string& what, int error_number) {
    throw Error("mproc: " + what + " failed: " + std::strerror(error_number));
}

}  // namespace mproc::detail
