#pragma once

#include <chrono>
#include <optional>

namespace mproc::detail {

// A point in time to give up at, or none. Timeouts too long to add to the clock mean none.
class Deadline {
  public:
    using Clock = std::chrono::steady_clock;

    static Deadline never() noexcept { return Deadline(); }
    template <class Rep, class Period>
    static Deadline after(std::chrono::duration<Rep, Period> timeout) noexcept {
        const auto now = Clock::now();
        if (std::chrono::duration<double>(timeout) >=
            std::chrono::duration<double>(Clock::time_point::max() - now)) {
            return never();
        }
        Deadline deadline;
        deadline.at_ = now + std::chrono::ceil<Clock::duration>(
                                 std::max(timeout, std::chrono::duration<Rep, Period>::zero()));
        return deadline;
    }
    static Deadline from(std::optional<std::chrono::nanoseconds> timeout) noexcept {
        return timeout ? after(*timeout) : never();
    }

    bool is_never() const noexcept { return !at_; }
    bool passed() const noexcept { return at_ && Clock::now() >= *at_; }
    // Time left, zero once passed; nullopt for never.
    std::optional<std::chrono::nanoseconds> remaining() const noexcept {
        if (!at_) return std::nullopt;
        return std::max(Clock::duration::zero(), *at_ - Clock::now());
    }

  private:
    std::optional<Clock::time_point> at_;
};

}  // namespace mproc::detail
