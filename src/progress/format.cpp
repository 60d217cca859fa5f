#include "progress/format.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>

namespace mproc::detail {

namespace {

// Narrower than this, a bar tells nothing that the percentage beside it does not.
constexpr std::size_t kMinBarCells = 4;

constexpr std::string_view kUnicodeFilled = "\u2588";  // █
constexpr std::string_view kUnicodeEmpty = "\u2591";   // ░
constexpr std::string_view kAsciiFilled = "#";
constexpr std::string_view kAsciiEmpty = "-";

bool is_continuation_byte(char c) {
    return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

std::string pad_left(const std::string& text, std::size_t width) {
    return text.size() >= width ? text : std::string(width - text.size(), ' ') + text;
}

// Cuts text to its first `columns` code points, never inside one.
std::string cut_to_columns(const std::string& text, std::size_t columns) {
    std::size_t seen = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (is_continuation_byte(text[i])) continue;
        if (seen == columns) return text.substr(0, i);
        ++seen;
    }
    return text;
}

// Whole percent, rounded down, so that 100% means every item is done. Nothing to do is done.
std::size_t percent(std::size_t done, std::size_t total) {
    if (total == 0) return 100;
    return std::min(done, total) * 100 / total;
}

std::string remaining_text(const ProgressSnapshot& s) {
    if (*s.total <= s.done) return format_duration(std::chrono::seconds(0));
    if (s.done == 0 || s.elapsed <= std::chrono::nanoseconds(0)) return "?";
    const double elapsed = std::chrono::duration<double>(s.elapsed).count();
    const double remaining = static_cast<double>(*s.total - s.done) * elapsed / s.done;
    return format_duration(std::chrono::seconds(static_cast<long long>(remaining)));
}

// "[00:03<00:04, 131.2 it/s]", or without the remaining time when the total is unknown.
std::string times_text(const ProgressSnapshot& s) {
    std::string text = "[" + format_duration(std::chrono::floor<std::chrono::seconds>(s.elapsed));
    if (s.total) text += "<" + remaining_text(s);
    return text + ", " + format_rate(s.done, s.elapsed) + "]";
}

std::string with_label(std::string_view label, const std::string& rest) {
    return label.empty() ? rest : std::string(label) + " " + rest;
}

// What stands left of the bar ("label  42%") and right of it ("  420/1000  [...]"); the
// counts are padded to the total's digits so that the line does not shift as they grow.
struct BarSides {
    std::string left;
    std::string right;
};

BarSides bar_sides(const ProgressSnapshot& s, std::string_view label) {
    const std::string total = std::to_string(*s.total);
    std::string counts = pad_left(std::to_string(s.done), total.size()) + "/" + total;
    return {with_label(label, pad_left(std::to_string(percent(s.done, *s.total)), 3) + "%"),
            " " + counts + "  " + times_text(s)};
}

std::string unknown_total_line(const ProgressSnapshot& s, std::string_view label) {
    return with_label(label, std::to_string(s.done) + " it  " + times_text(s));
}

std::string bar_cells(const ProgressSnapshot& s, std::size_t cells, bool unicode) {
    const std::size_t filled =
        *s.total == 0 ? cells : std::min(s.done, *s.total) * cells / *s.total;
    const std::string_view full = unicode ? kUnicodeFilled : kAsciiFilled;
    const std::string_view empty = unicode ? kUnicodeEmpty : kAsciiEmpty;
    std::string text;
    text.reserve(cells * full.size());
    for (std::size_t i = 0; i < cells; ++i) text += i < filled ? full : empty;
    return text;
}

// Without allocating: the environment is read where nothing may throw.
bool contains_ignoring_case(std::string_view text, std::string_view lower_needle) {
    const auto it = std::search(
        text.begin(), text.end(), lower_needle.begin(), lower_needle.end(),
        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
    return it != text.end();
}

}  // namespace

std::string format_duration(std::chrono::seconds duration) {
    const long long total = std::max<long long>(duration.count(), 0);
    const long long hours = total / 3600;
    const long long minutes = total / 60 % 60;
    const long long seconds = total % 60;
    char text[48];
    if (hours > 0) {
        std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", hours, minutes, seconds);
    } else {
        std::snprintf(text, sizeof text, "%02lld:%02lld", minutes, seconds);
    }
    return text;
}

std::string format_rate(std::size_t done, std::chrono::nanoseconds elapsed) {
    if (done == 0 || elapsed <= std::chrono::nanoseconds(0)) return "? it/s";
    const double rate = done / std::chrono::duration<double>(elapsed).count();
    char text[64];
    // Below one item a second, "0.0 it/s" would say nothing; the time per item does.
    if (rate >= 1.0) {
        std::snprintf(text, sizeof text, "%.1f it/s", rate);
    } else {
        std::snprintf(text, sizeof text, "%.1f s/it", 1.0 / rate);
    }
    return text;
}

std::string format_bar_line(const ProgressSnapshot& snapshot, std::string_view label,
                            std::size_t width, bool unicode) {
    std::string line;
    if (!snapshot.total) {
        line = unknown_total_line(snapshot, label);
    } else {
        const BarSides sides = bar_sides(snapshot, label);
        // " |" and "|" frame the bar.
        const std::size_t fixed = display_width(sides.left) + 3 + display_width(sides.right);
        if (width >= fixed + kMinBarCells) {
            line =
                sides.left + " |" + bar_cells(snapshot, width - fixed, unicode) + "|" + sides.right;
        } else {
            line = sides.left + sides.right;
        }
    }
    const std::size_t columns = display_width(line);
    if (columns > width) return cut_to_columns(line, width);
    return line + std::string(width - columns, ' ');
}

std::string format_plain_line(const ProgressSnapshot& snapshot, std::string_view label) {
    if (!snapshot.total) return unknown_total_line(snapshot, label);
    const BarSides sides = bar_sides(snapshot, label);
    return sides.left + sides.right;
}

bool locale_is_utf8(const char* lc_all, const char* lc_ctype, const char* lang) {
    for (const char* value : {lc_all, lc_ctype, lang}) {
        if (value == nullptr || *value == '\0') continue;
        return contains_ignoring_case(value, "utf-8") || contains_ignoring_case(value, "utf8");
    }
    return false;
}

std::size_t display_width(std::string_view utf8) {
    return static_cast<std::size_t>(
        std::count_if(utf8.begin(), utf8.end(), [](char c) { return !is_continuation_byte(c); }));
}

}  // namespace mproc::detail
