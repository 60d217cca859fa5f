#include "worker/child_exit.hpp"

#include <unistd.h>

#include <cstdio>

#include "worker/exception_capture.hpp"

namespace mproc::detail {

void end_child(int code) noexcept {
    std::fflush(nullptr);
    ::_exit(code);
}

void end_child_on_exception(const char* role, int code) noexcept {
    const ErrorInfo error = capture_current_exception();
    std::fprintf(stderr, "mproc %s %d: %s: %s\n", role, static_cast<int>(::getpid()),
                 error.type_name.c_str(), error.message.c_str());
    end_child(code);
}

}  // namespace mproc::detail
