#pragma once

// Progress: a bar on standard error that follows a loop, as Python's tqdm does.
//
//     for (int r : mproc::progress(pool.imap_unordered(f, xs))) use(r);
//
// prints, redrawn in place on a terminal:
//
//     42% |████░░░░░░|  420/1000  [00:03<00:04, 131.2 it/s]
//
// Where standard error is not a terminal (a log file, a pipe) nothing is written, unless a
// plain line every so often is asked for: a bar made of '\r' redraws would fill a log with noise.

#include <chrono>
#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <utility>

namespace mproc {

struct ProgressOptions {
    // Shown before the percentage, e.g. "resize".
    std::string label = {};
    // Where the bar is written. Not owned: it must stay open while the bar lives.
    int fd = 2;
    // Where fd is not a terminal: a plain line (no '\r', no bar) at most this often, and one
    // at the end. Unset: nothing at all is written there.
    std::optional<std::chrono::milliseconds> plain_every = std::nullopt;
    // Draw the bar, 80 columns wide, even where fd is not a terminal.
    bool force = false;
    // Block characters (█░) or ASCII (#-). Unset: block characters when the locale is UTF-8
    // (the first of LC_ALL, LC_CTYPE and LANG that is set names it).
    std::optional<bool> unicode = std::nullopt;
};

// A progress bar for code that is not a range loop: advance() as work completes, finish() at
// the end. On a terminal it draws at once, redraws at most ten times a second (advance only
// looks at the clock otherwise), and its width follows the terminal's, up to 100 columns.
class ProgressBar {
  public:
    // Starts the clock. total: the number of items, or nullopt when it is not known (the bar
    // then shows a count and a rate). Never throws for a bad fd: the bar is then silent.
    explicit ProgressBar(std::optional<std::size_t> total, ProgressOptions options = {});
    // finish(), if it has not been called.
    ~ProgressBar();
    // A moved-from bar draws nothing and counts nothing; it may be assigned or destroyed.
    ProgressBar(ProgressBar&&) noexcept;
    // Finishes the bar this one held before taking other's.
    ProgressBar& operator=(ProgressBar&&) noexcept;
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

    // Counts n more items done, and redraws if the last drawing is old enough. Safe to call
    // from several threads at once (completion callbacks, say); never throws, since a bar
    // must not break the work it watches. After finish() it counts but draws nothing.
    void advance(std::size_t n = 1) noexcept;
    // Draws the final state and ends the line with '\n' (a plain line, where those were asked
    // for). Later calls do nothing.
    void finish() noexcept;
    // The items counted so far.
    std::size_t count() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// A view of V whose iteration moves a ProgressBar: one item each time the iterator is
// incremented, that is once the loop's body is done with an element. The bar starts at
// begin() and finishes when the iterator reaches the end, or else when the view is destroyed:
// after a break, or when an element or the loop's body throws, the line is still ended.
template <std::ranges::input_range V>
requires std::ranges::view<V>
class ProgressRange : public std::ranges::view_interface<ProgressRange<V>> {
  public:
    class iterator {
      public:
        using value_type = std::ranges::range_value_t<V>;
        using difference_type = std::ranges::range_difference_t<V>;

        iterator() = default;
        // The element of V, as V gives it (an ImapRange element throws its task's error).
        decltype(auto) operator*() const { return *current_; }
        iterator& operator++() {
            ++current_;
            if (current_ == end_) {
                // Finishing here rather than in the view's destructor ends the line as soon
                // as the last element is read, even if the view outlives the loop.
                bar_->advance();
                bar_->finish();
            } else {
                bar_->advance();
            }
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) {
            return it.current_ == it.end_;
        }

      private:
        friend class ProgressRange;
        iterator(std::ranges::iterator_t<V> current, std::ranges::sentinel_t<V> end,
                 ProgressBar* bar)
            : current_(std::move(current)), end_(std::move(end)), bar_(bar) {}

        std::ranges::iterator_t<V> current_;
        std::ranges::sentinel_t<V> end_;
        ProgressBar* bar_ = nullptr;
    };

    // total: nullopt takes std::ranges::size(base) when V is sized, else the total is unknown.
    ProgressRange(V base, std::optional<std::size_t> total, ProgressOptions options)
        : base_(std::move(base)), total_(total), options_(std::move(options)) {
        if constexpr (std::ranges::sized_range<V>) {
            if (!total_) total_ = static_cast<std::size_t>(std::ranges::size(base_));
        }
    }

    // Starts the bar (each call starts a new one, finishing the last) and V's iteration. A
    // range that can be read only once, such as an ImapRange, can be begun only once.
    iterator begin() {
        bar_.emplace(total_, options_);
        auto first = std::ranges::begin(base_);
        auto last = std::ranges::end(base_);
        if (first == last) bar_->finish();
        return iterator(std::move(first), std::move(last), &*bar_);
    }
    std::default_sentinel_t end() const noexcept { return {}; }
    auto size() const requires std::ranges::sized_range<const V> {
        return std::ranges::size(base_);
    }
    auto size() requires std::ranges::sized_range<V> { return std::ranges::size(base_); }

  private:
    V base_;
    std::optional<std::size_t> total_;
    ProgressOptions options_;
    // Made at begin(), so that the clock starts with the loop; iterators point into it.
    std::optional<ProgressBar> bar_;
};

// range, with a progress bar that follows its iteration: for (auto r : progress(range)) ...
// The total is std::ranges::size(range) when the range is sized, else unknown. An rvalue range
// (the ImapRange that pool.imap returns) is moved into the view; an lvalue is referred to and
// must outlive it.
template <std::ranges::viewable_range R>
requires std::ranges::input_range<R>
auto progress(R&& range, ProgressOptions options = {}) {
    return ProgressRange<std::views::all_t<R>>(std::views::all(std::forward<R>(range)),
                                               std::nullopt, std::move(options));
}

// As above, with the total given: for a range that cannot tell its size, or to count only
// part of one. Iterating past the total is allowed; the bar then stays at 100%.
template <std::ranges::viewable_range R>
requires std::ranges::input_range<R>
auto progress(R&& range, std::size_t total, ProgressOptions options = {}) {
    return ProgressRange<std::views::all_t<R>>(std::views::all(std::forward<R>(range)), total,
                                               std::move(options));
}

}  // namespace mproc
