// Event: one futex word, the flag in its low bit and, above it, the number of times the flag
// went from unset to set. A waiter sleeps on the value it saw; any set changes the word, so it
// wakes, and it can tell a set it slept through, even one cleared again at once, from a
// spurious wake-up.

#include <atomic>
#include <cstdint>

#include "mproc/sync.hpp"
#include "os/deadline.hpp"
#include "os/futex.hpp"
#include "sync/shared_object.hpp"

namespace mproc {

namespace {

using detail::Deadline;
using detail::SharedRegion;
using detail::SyncKind;

constexpr std::uint32_t set_bit = 1;
// Adding this to the word counts one more set; it wraps, and only a waiter that slept through
// exactly 2^31 sets could miss them.
constexpr std::uint32_t one_set = 2;

struct EventState {
    detail::SyncHeader header;
    std::atomic<std::uint32_t> word;
};

EventState& state_of(const std::shared_ptr<SharedRegion>& region) noexcept {
    return detail::shared_state<EventState>(*region);
}

}  // namespace

Event::Event() : region_(detail::create_shared_state<EventState>(SyncKind::event)) {}

void Event::check_received(const SharedRegion& region) {
    detail::check_shared_state(region, SyncKind::event, sizeof(EventState), "Event");
}

void Event::set() {
    EventState& state = state_of(region_);
    std::uint32_t word = state.word.load();
    do {
        if ((word & set_bit) != 0) return;
    } while (!state.word.compare_exchange_weak(word, (word + one_set) | set_bit));
    detail::futex_wake(state.word);
}

void Event::clear() noexcept {
    state_of(region_).word.fetch_and(~set_bit);
}

bool Event::is_set() const noexcept {
    return (state_of(region_).word.load() & set_bit) != 0;
}

void Event::wait() {
    wait_within(std::nullopt);
}

bool Event::wait_within(std::optional<std::chrono::nanoseconds> timeout) {
    EventState& state = state_of(region_);
    const Deadline deadline = Deadline::from(timeout);
    const std::uint32_t seen = state.word.load();
    if ((seen & set_bit) != 0) return true;
    for (;;) {
        const bool woken = detail::futex_wait(state.word, seen, deadline);
        // Only set() changes an unset word.
        if (state.word.load() != seen) return true;
        if (!woken) return false;
    }
}

}  // namespace mproc
