// Barrier: the count of arrivals, the round and the broken flag change under a robust mutex;
// waiters sleep on a futex word (epoch) that changes whenever a round ends or the barrier
// breaks. A waiter remembers its round: when the round has moved on it was released, whatever
// happened after.

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/sync.hpp"
#include "os/deadline.hpp"
#include "os/futex.hpp"
#include "os/robust_mutex.hpp"
#include "sync/shared_object.hpp"

namespace mproc {

namespace {

using detail::Deadline;
using detail::LockOutcome;
using detail::SharedRegion;
using detail::SyncKind;

constexpr std::size_t max_parties = 0x7fffffff;

struct BarrierState {
    detail::SyncHeader header;
    pthread_mutex_t mutex;
    std::uint32_t parties;
    // Under the mutex:
    std::uint32_t arrived;  // in this round
    std::uint32_t round;
    std::uint32_t broken;
    std::atomic<std::uint32_t> epoch;
};

BarrierState& state_of(const std::shared_ptr<SharedRegion>& region) noexcept {
    return detail::shared_state<BarrierState>(*region);
}

std::shared_ptr<SharedRegion> create_barrier(std::size_t parties) {
    if (parties == 0 || parties > max_parties) {
        throw StateError("mproc: a Barrier needs between 1 and " + std::to_string(max_parties) +
                         " parties, not " + std::to_string(parties) +
                         "; a negative number converts to a huge one");
    }
    std::shared_ptr<SharedRegion> region =
        detail::create_shared_state<BarrierState>(SyncKind::barrier);
    BarrierState& state = state_of(region);
    detail::init_robust_mutex(state.mutex);
    state.parties = static_cast<std::uint32_t>(parties);
    return region;
}

// Holds the barrier's mutex for a scope, once taken by take().
class Held {
  public:
    explicit Held(BarrierState& state) noexcept : state_(state) {}
    ~Held() {
        if (held_) detail::unlock_robust(state_.mutex);
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

    // Takes the mutex. False when a process died holding it, in the middle of changing the
    // count or the round, which nobody can trust then: the barrier is broken, and the mutex
    // released again.
    [[nodiscard]] bool take() {
        const LockOutcome outcome = detail::lock_robust(state_.mutex);
        held_ = true;
        if (outcome == LockOutcome::acquired_from_dead_owner) {
            break_barrier();
            return false;
        }
        return true;
    }
    void release() noexcept {
        detail::unlock_robust(state_.mutex);
        held_ = false;
    }
    // Breaks the barrier and wakes every waiter; the mutex is released first, so that they do
    // not wake only to wait for it.
    void break_barrier() noexcept {
        state_.broken = 1;
        state_.epoch.fetch_add(1);
        release();
        detail::futex_wake(state_.epoch);
    }

  private:
    BarrierState& state_;
    bool held_ = false;
};

[[noreturn]] void throw_broken_by_death() {
    throw BrokenBarrierError(
        "mproc: the Barrier broke: a process died while it updated the barrier; make a new one");
}

[[noreturn]] void throw_broken() {
    throw BrokenBarrierError(
        "mproc: the Barrier is broken (a wait timed out, abort() was called, or a process died "
        "inside it); make a new one");
}

}  // namespace

Barrier::Barrier(std::size_t parties) : region_(create_barrier(parties)) {}

void Barrier::check_received(const SharedRegion& region) {
    detail::check_shared_state(region, SyncKind::barrier, sizeof(BarrierState), "Barrier");
}

std::size_t Barrier::wait_within(std::optional<std::chrono::nanoseconds> timeout) {
    BarrierState& state = state_of(region_);
    const Deadline deadline = Deadline::from(timeout);
    Held held(state);
    if (!held.take()) throw_broken_by_death();
    if (state.broken != 0) throw_broken();
    const std::uint32_t index = state.arrived++;
    if (state.arrived == state.parties) {
        state.arrived = 0;
        ++state.round;
        state.epoch.fetch_add(1);
        held.release();
        detail::futex_wake(state.epoch);
        return index;
    }
    const std::uint32_t round = state.round;
    for (;;) {
        // Read under the mutex: whatever ends the round or breaks the barrier after this
        // changes epoch, so the futex below does not sleep through it.
        const std::uint32_t epoch = state.epoch.load();
        held.release();
        bool woken = true;
        try {
            woken = detail::futex_wait(state.epoch, epoch, deadline);
        } catch (...) {
            // This waiter leaves the round, which can then never end: break it for the others.
            if (held.take()) held.break_barrier();
            throw;
        }
        if (!held.take()) throw_broken_by_death();
        if (state.round != round) return index;
        if (state.broken != 0) throw_broken();
        if (!woken) {
            const std::string message =
                "mproc: Barrier::wait timed out with " + std::to_string(state.arrived) + " of " +
                std::to_string(state.parties) + " parties arrived; the barrier is now broken";
            held.break_barrier();
            throw TimeoutError(message);
        }
    }
}

void Barrier::abort() {
    Held held(state_of(region_));
    if (held.take()) held.break_barrier();
}

std::size_t Barrier::parties() const noexcept {
    return state_of(region_).parties;
}

std::size_t Barrier::n_waiting() const {
    BarrierState& state = state_of(region_);
    Held held(state);
    return held.take() ? state.arrived : 0;
}

bool Barrier::broken() const {
    BarrierState& state = state_of(region_);
    Held held(state);
    return !held.take() || state.broken != 0;
}

}  // namespace mproc
