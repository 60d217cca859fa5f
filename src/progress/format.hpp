#pragma once

// What a progress bar says: pure functions of the count, the total and the time, so that the
// tests can pin every character and the drawing code holds no formatting.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mproc::detail {

// What a bar shows at one moment.
struct ProgressSnapshot {
    std::size_t done = 0;
    // nullopt: the total is not known.
    std::optional<std::size_t> total = std::nullopt;
    std::chrono::nanoseconds elapsed{0};
};

// "00:07", "59:59", "1:00:00": minutes and seconds, with hours only once there are some.
std::string format_duration(std::chrono::seconds duration);

// The average rate since the start: "131.2 it/s", "2.5 s/it" below one item a second, and
// "? it/s" before there is anything to average.
std::string format_rate(std::size_t done, std::chrono::nanoseconds elapsed);

// The line a terminal shows, exactly width columns (padded with spaces, so that a redraw
// covers a longer line before it, or cut):
//     label  42% |████░░░░░░|  420/1000  [00:03<00:04, 131.2 it/s]
//     label 420 it  [00:03, 131.2 it/s]                 (total unknown)
// The bar takes the columns the rest leaves; when fewer than 4 are left it is dropped.
std::string format_bar_line(const ProgressSnapshot& snapshot, std::string_view label,
                            std::size_t width, bool unicode);

// The line a log gets: what the bar line says, without the bar or padding.
//     label  42%  420/1000  [00:03<00:04, 131.2 it/s]
std::string format_plain_line(const ProgressSnapshot& snapshot, std::string_view label);

// Whether the locale the environment names uses UTF-8, by POSIX precedence: the first of
// LC_ALL, LC_CTYPE and LANG that is set and not empty (nullptr: unset). None set is the C
// locale: not UTF-8.
bool locale_is_utf8(const char* lc_all, const char* lc_ctype, const char* lang);

// The columns UTF-8 text takes, counted as one per code point (no wide characters).
std::size_t display_width(std::string_view utf8);

}  // namespace mproc::detail
