#include "progress/terminal.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "progress/format.hpp"

namespace mproc::detail {

bool is_terminal(int fd) noexcept {
    return fd >= 0 && ::isatty(fd) == 1;
}

std::optional<std::size_t> terminal_columns(int fd) noexcept {
    winsize size{};
    if (::ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) return std::nullopt;
    return static_cast<std::size_t>(size.ws_col);
}

bool environment_is_utf8() noexcept {
    return locale_is_utf8(std::getenv("LC_ALL"), std::getenv("LC_CTYPE"), std::getenv("LANG"));
}

void write_fully(int fd, std::string_view text) noexcept {
    while (!text.empty()) {
        const ssize_t written = ::write(fd, text.data(), text.size());
        if (written < 0) {
            if (errno == EINTR) continue;
            return;
        }
        text.remove_prefix(static_cast<std::size_t>(written));
    }
}

}  // namespace mproc::detail
