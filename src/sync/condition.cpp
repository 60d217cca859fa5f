// Condition: a futex sequence word that every notify bumps. A waiter reads it while it still
// holds the lock, so a notification made under the lock after that read changes the word before
// the waiter sleeps on it (the futex then does not sleep) or wakes it.

#include <atomic>
#include <cstdint>
#include <exception>

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

struct ConditionState {
    detail::SyncHeader header;
    std::atomic<std::uint32_t> sequence;
    // Threads between reading sequence and waking, so that a notify makes no system call when
    // there are none. One that died waiting leaves it one too high: a needless wake-up.
    std::atomic<std::uint32_t> waiters;
};

ConditionState& state_of(const std::shared_ptr<SharedRegion>& region) noexcept {
    return detail::shared_state<ConditionState>(*region);
}

void notify(ConditionState& state, int count) noexcept {
    state.sequence.fetch_add(1);
    // Sequentially consistent with the waiter's increment of waiters then read of sequence:
    // either this sees the waiter, or the waiter read the new sequence and does not sleep.
    if (state.waiters.load() > 0) detail::futex_wake(state.sequence, count);
}

}  // namespace

Condition::Condition()
    : region_(detail::create_shared_state<ConditionState>(SyncKind::condition)) {}

Condition::Condition(Lock lock)
    : region_(detail::create_shared_state<ConditionState>(SyncKind::condition)),
      lock_(std::move(lock)) {}

void Condition::check_received(const SharedRegion& region) {
    detail::check_shared_state(region, SyncKind::condition, sizeof(ConditionState), "Condition");
}

bool Condition::wait_within(std::unique_lock<Lock>& lock,
                            std::optional<std::chrono::nanoseconds> timeout) {
    Lock* held = lock.mutex();
    if (held == nullptr || !lock.owns_lock() || !held->held_by_caller()) {
        throw StateError(
            "mproc: Condition::wait needs the condition's lock held by the calling thread");
    }
    if (held->id() != lock_.id()) {
        throw StateError(
            "mproc: Condition::wait was given a lock other than the condition's own (get_lock())");
    }
    ConditionState& state = state_of(region_);
    const Deadline deadline = Deadline::from(timeout);
    state.waiters.fetch_add(1);
    const std::uint32_t seen = state.sequence.load();
    held->unlock();
    bool woken = false;
    std::exception_ptr failure;
    try {
        woken = detail::futex_wait(state.sequence, seen, deadline);
    } catch (...) {
        failure = std::current_exception();
    }
    state.waiters.fetch_sub(1);
    try {
        held->lock();
    } catch (...) {
        // The unique_lock must not go on claiming a lock this thread does not hold.
        lock.release();
        throw;
    }
    if (failure) std::rethrow_exception(failure);
    // As std::condition_variable: a wait that ran out of time reports it, even if a notification
    // came at the same moment; a caller with a predicate looks at it again anyway.
    return woken;
}

void Condition::notify_one() noexcept {
    notify(state_of(region_), 1);
}

void Condition::notify_all() noexcept {
    notify(state_of(region_), INT32_MAX);
}

}  // namespace mproc
