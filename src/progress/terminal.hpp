#pragma once

// The little a progress bar asks of the terminal it draws on.

#include <cstddef>
#include <optional>
#include <string_view>

namespace mproc::detail {

bool is_terminal(int fd) noexcept;

// The terminal's width in columns (TIOCGWINSZ), or nullopt when fd is not a terminal or the
// terminal does not know its size (a pseudo-terminal nobody sized says 0).
std::optional<std::size_t> terminal_columns(int fd) noexcept;

// Whether the environment's locale uses UTF-8 (LC_ALL, LC_CTYPE, LANG).
bool environment_is_utf8() noexcept;

// Writes all of text, through EINTR and short writes. A failure is ignored: a progress bar
// that cannot be shown must not stop the work it follows.
void write_fully(int fd, std::string_view text) noexcept;

}  // namespace mproc::detail
