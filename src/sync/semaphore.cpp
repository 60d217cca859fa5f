// Semaphore: the count of free units is the futex word itself, so a waiter sleeps exactly while
// it reads 0, and a process that dies anywhere leaves nothing half-done (each change is one
// atomic operation).

#include <atomic>
#include <cstdint>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/sync.hpp"
#include "os/deadline.hpp"
#include "os/futex.hpp"
#include "sync/shared_object.hpp"

namespace mproc {

namespace {

using detail::Deadline;
using detail::SharedRegion;
using detail::SyncKind;

struct SemaphoreState {
    detail::SyncHeader header;
    std::atomic<std::uint32_t> units;
    // Threads asleep or about to sleep on units, so that release() makes no system call when
    // there are none. One that died asleep leaves it one too high, which costs a needless
    // wake-up, nothing more.
    std::atomic<std::uint32_t> sleepers;
};

SemaphoreState& state_of(const std::shared_ptr<SharedRegion>& region) noexcept {
    return detail::shared_state<SemaphoreState>(*region);
}

bool take_unit(SemaphoreState& state) noexcept {
    std::uint32_t units = state.units.load();
    while (units > 0) {
        if (state.units.compare_exchange_weak(units, units - 1)) return true;
    }
    return false;
}

std::shared_ptr<SharedRegion> create_semaphore(std::size_t value) {
    if (value > Semaphore::max_value) {
        throw StateError("mproc: a Semaphore of " + std::to_string(value) +
                         " units is more than it can count (at most " +
                         std::to_string(Semaphore::max_value) +
                         "); a negative value converts to such a number");
    }
    std::shared_ptr<SharedRegion> region =
        detail::create_shared_state<SemaphoreState>(SyncKind::semaphore);
    state_of(region).units.store(static_cast<std::uint32_t>(value));
    return region;
}

}  // namespace

Semaphore::Semaphore(std::size_t value) : region_(create_semaphore(value)) {}

void Semaphore::check_received(const SharedRegion& region) {
    detail::check_shared_state(region, SyncKind::semaphore, sizeof(SemaphoreState), "Semaphore");
}

void Semaphore::acquire() {
    acquire_within(std::nullopt);
}

bool Semaphore::try_acquire() {
    return take_unit(state_of(region_));
}

bool Semaphore::acquire_within(std::optional<std::chrono::nanoseconds> timeout) {
    SemaphoreState& state = state_of(region_);
    const Deadline deadline = Deadline::from(timeout);
    for (;;) {
        if (take_unit(state)) return true;
        // Counted as a sleeper before looking at units again: release() adds a unit before it
        // reads sleepers, so either it sees this sleeper and wakes it, or this thread sees the
        // unit (all sequentially consistent).
        state.sleepers.fetch_add(1);
        bool woken = true;
        try {
            if (state.units.load() == 0) woken = detail::futex_wait(state.units, 0, deadline);
        } catch (...) {
            state.sleepers.fetch_sub(1);
            throw;
        }
        state.sleepers.fetch_sub(1);
        if (!woken) return take_unit(state);
    }
}

void Semaphore::release() {
    SemaphoreState& state = state_of(region_);
    std::uint32_t units = state.units.load();
    do {
        if (units >= max_value) {
            throw StateError("mproc: Semaphore::release() on a semaphore that counts " +
                             std::to_string(max_value) + " units already, the most it can");
        }
    } while (!state.units.compare_exchange_weak(units, units + 1));
    if (state.sleepers.load() > 0) detail::futex_wake(state.units, 1);
}

std::size_t Semaphore::value() const noexcept {
    return state_of(region_).units.load();
}

}  // namespace mproc
