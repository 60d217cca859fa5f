#include "mproc/progress.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include "progress/format.hpp"
#include "progress/terminal.hpp"

namespace mproc {

namespace {

using Clock = std::chrono::steady_clock;

// Ten redraws a second look continuous; more would only cost the terminal and the loop.
constexpr std::chrono::milliseconds kRedrawInterval(100);
// Wider, a bar is no clearer, and the numbers drift far from the label.
constexpr std::size_t kMaxWidth = 100;
// A forced bar on something that is not a terminal has no width to ask for.
constexpr std::size_t kForcedColumns = 80;

enum class Display { nothing, bar, plain_lines };

Display choose_display(const ProgressOptions& options, bool terminal) {
    if (terminal || options.force) return Display::bar;
    if (options.plain_every) return Display::plain_lines;
    return Display::nothing;
}

}  // namespace

struct ProgressBar::Impl {
    Impl(std::optional<std::size_t> total_items, ProgressOptions options)
        : total(total_items),
          label(std::move(options.label)),
          fd(options.fd),
          terminal(detail::is_terminal(fd)),
          display(choose_display(options, terminal)),
          unicode(options.unicode ? *options.unicode : detail::environment_is_utf8()),
          interval(display == Display::plain_lines ? Clock::duration(*options.plain_every)
                                                   : Clock::duration(kRedrawInterval)) {
        if (display == Display::bar) {
            // Drawn at once, so that a slow first item shows a bar rather than nothing.
            std::lock_guard lock(drawing);
            draw(false);
        }
        // The first plain line waits a whole interval: a log wants news, not a 0% line.
        next_draw.store(interval.count(), std::memory_order_relaxed);
    }

    // Requires `drawing` held.
    void draw(bool final) {
        const detail::ProgressSnapshot snapshot{done.load(std::memory_order_relaxed), total,
                                                Clock::now() - start};
        std::string text;
        if (display == Display::plain_lines) {
            text = detail::format_plain_line(snapshot, label) + "\n";
        } else {
            // Asked on every drawing, so that the bar follows a resized window. One column
            // stays free: at the last one some terminals wrap at once, and '\r' would then
            // return to the wrong line.
            const std::size_t columns =
                terminal ? detail::terminal_columns(fd).value_or(kForcedColumns) : kForcedColumns;
            const std::size_t width = std::min(columns > 0 ? columns - 1 : 0, kMaxWidth);
            text = "\r" + detail::format_bar_line(snapshot, label, width, unicode);
            if (final) text += "\n";
        }
        detail::write_fully(fd, text);
    }

    const std::optional<std::size_t> total;
    const std::string label;
    const int fd;
    const bool terminal;
    const Display display;
    const bool unicode;
    const Clock::duration interval;
    const Clock::time_point start = Clock::now();
    std::atomic<std::size_t> done{0};
    // Time since start before which advance() does not try to draw. It is read without the
    // lock, so that an item that is not drawn costs an atomic add and a clock read.
    std::atomic<Clock::rep> next_draw{0};
    std::mutex drawing;
    bool finished = false;  // guarded by drawing
};

ProgressBar::ProgressBar(std::optional<std::size_t> total, ProgressOptions options)
    : impl_(std::make_unique<Impl>(total, std::move(options))) {}

ProgressBar::~ProgressBar() {
    finish();
}

ProgressBar::ProgressBar(ProgressBar&&) noexcept = default;

ProgressBar& ProgressBar::operator=(ProgressBar&& other) noexcept {
    if (this != &other) {
        finish();
        impl_ = std::move(other.impl_);
    }
    return *this;
}

void ProgressBar::advance(std::size_t n) noexcept {
    if (!impl_) return;
    Impl& bar = *impl_;
    bar.done.fetch_add(n, std::memory_order_relaxed);
    if (bar.display == Display::nothing) return;
    const Clock::rep now = (Clock::now() - bar.start).count();
    if (now < bar.next_draw.load(std::memory_order_relaxed)) return;
    // A thread that finds another drawing leaves it be: that drawing, or the next, shows
    // this thread's items too, and no completion callback waits on a terminal.
    std::unique_lock lock(bar.drawing, std::try_to_lock);
    if (!lock.owns_lock() || bar.finished) return;
    if (now < bar.next_draw.load(std::memory_order_relaxed)) return;
    try {
        bar.draw(false);
    } catch (...) {
        // Out of memory for a line of text: skip this drawing; the work goes on.
    }
    bar.next_draw.store(now + bar.interval.count(), std::memory_order_relaxed);
}

void ProgressBar::finish() noexcept {
    if (!impl_) return;
    Impl& bar = *impl_;
    std::lock_guard lock(bar.drawing);
    if (bar.finished) return;
    bar.finished = true;
    if (bar.display == Display::nothing) return;
    try {
        bar.draw(true);
    } catch (...) {
        // As in advance(): a line that cannot be made is not worth failing a destructor.
    }
}

std::size_t ProgressBar::count() const noexcept {
    return impl_ ? impl_->done.load(std::memory_order_relaxed) : 0;
}

}  // namespace mproc
