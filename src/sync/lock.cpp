// Lock and RLock: a robust process-shared pthread mutex, plus the record of who holds it.
//
// pthread knows the holder too, but neither tells a thread whether it holds the mutex nor keeps
// "the last holder died" past the lock call that saw it; both are needed (last_owner_died, a
// Value's operations under a lock already held, Condition's check), so the holder writes them
// next to the mutex.

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/sync.hpp"
#include "os/deadline.hpp"
#include "os/robust_mutex.hpp"
#include "sync/shared_object.hpp"

namespace mproc {

namespace {

using detail::Deadline;
using detail::LockOutcome;
using detail::SharedRegion;
using detail::SyncKind;

struct LockState {
    detail::SyncHeader header;
    pthread_mutex_t mutex;
    // caller_identity() of the holder, 0 when free. Written only by the holder; read by anyone,
    // who can only ever find their own identity there if they hold the lock.
    std::atomic<std::uint64_t> owner;
    // The rest is the holder's alone: how many times it has locked (RLock), and whether the
    // holder before it died holding the lock.
    std::uint32_t depth;
    std::uint32_t owner_died;
};

LockState& state_of(const std::shared_ptr<SharedRegion>& region) noexcept {
    return detail::shared_state<LockState>(*region);
}

// Where a Value's T starts in a lock's block.
std::size_t payload_offset(std::size_t payload_align) noexcept {
    return (sizeof(LockState) + payload_align - 1) / payload_align * payload_align;
}

std::shared_ptr<SharedRegion> create_lock(SyncKind kind, std::size_t payload_bytes,
                                          std::size_t payload_align) {
    const std::size_t bytes =
        payload_bytes == 0 ? sizeof(LockState) : payload_offset(payload_align) + payload_bytes;
    std::shared_ptr<SharedRegion> region = detail::create_shared_state<LockState>(kind, bytes);
    detail::init_robust_mutex(state_of(region).mutex, kind == SyncKind::rlock);
    return region;
}

// Takes the lock: waits until deadline, or not at all when deadline is nullptr. False when it
// did not get the lock.
bool acquire(LockState& state, bool recursive, const Deadline* deadline, const char* what) {
    const std::uint64_t me = detail::caller_identity();
    const bool held = state.owner.load(std::memory_order_relaxed) == me;
    if (held && !recursive) {
        // pthread would say EDEADLK; a bounded attempt is simply one that fails.
        if (deadline == nullptr || !deadline->is_never()) return false;
        throw StateError(std::string("mproc: ") + what +
                         "::lock() by the thread that holds it already would wait for ever; an "
                         "RLock may be locked again by its holder");
    }
    const LockOutcome outcome = deadline == nullptr ? detail::try_lock_robust(state.mutex)
                                                    : detail::lock_robust(state.mutex, *deadline);
    if (outcome == LockOutcome::timed_out) return false;
    if (held) {
        // The recursive mutex counted this lock too, so unlock can undo both one at a time.
        ++state.depth;
        return true;
    }
    state.owner.store(me, std::memory_order_relaxed);
    state.depth = 1;
    state.owner_died = outcome == LockOutcome::acquired_from_dead_owner ? 1 : 0;
    return true;
}

void release(LockState& state, const char* what) {
    if (state.owner.load(std::memory_order_relaxed) != detail::caller_identity()) {
        throw StateError(std::string("mproc: ") + what +
                         "::unlock() by a thread that does not hold it; only the thread that "
                         "locked it may unlock it");
    }
    if (--state.depth == 0) {
        // Cleared before the mutex is released: afterwards they belong to the next holder.
        state.owner_died = 0;
        state.owner.store(0, std::memory_order_relaxed);
    }
    detail::unlock_robust(state.mutex);
}

bool holds(const LockState& state) noexcept {
    return state.owner.load(std::memory_order_relaxed) == detail::caller_identity();
}

bool owner_died_for_caller(const LockState& state) noexcept {
    return holds(state) && state.owner_died != 0;
}

}  // namespace

Lock::Lock() : region_(create_lock(SyncKind::lock, 0, 1)) {}

Lock::Lock(std::size_t payload_bytes, std::size_t payload_align)
    : region_(create_lock(SyncKind::lock, payload_bytes, payload_align)) {}

void Lock::check_received(const SharedRegion& region, std::size_t payload_bytes,
                          std::size_t payload_align, const char* what) {
    detail::check_shared_state(region, SyncKind::lock, sizeof(LockState), what);
    if (payload_bytes != 0 && region.size() != payload_offset(payload_align) + payload_bytes) {
        throw SerializationError(std::string("mproc: a ") + what + " of " +
                                 std::to_string(payload_bytes) + " bytes arrived as a block of " +
                                 std::to_string(region.size()) +
                                 " bytes; the sender and the receiver disagree on its type");
    }
}

void Lock::lock() {
    const Deadline never = Deadline::never();
    acquire(state_of(region_), false, &never, "Lock");
}

bool Lock::try_lock() {
    return acquire(state_of(region_), false, nullptr, "Lock");
}

bool Lock::lock_within(std::optional<std::chrono::nanoseconds> timeout) {
    const Deadline deadline = Deadline::from(timeout);
    return acquire(state_of(region_), false, &deadline, "Lock");
}

void Lock::unlock() {
    release(state_of(region_), "Lock");
}

bool Lock::last_owner_died() const noexcept {
    return owner_died_for_caller(state_of(region_));
}

bool Lock::lock_unless_held() {
    if (held_by_caller()) return false;
    lock();
    return true;
}

bool Lock::held_by_caller() const noexcept {
    return holds(state_of(region_));
}

std::byte* Lock::payload(std::size_t payload_align) const noexcept {
    return region_->data() + payload_offset(payload_align);
}

std::uint64_t Lock::id() const noexcept {
    return state_of(region_).header.id;
}

RLock::RLock() : region_(create_lock(SyncKind::rlock, 0, 1)) {}

void RLock::check_received(const SharedRegion& region) {
    detail::check_shared_state(region, SyncKind::rlock, sizeof(LockState), "RLock");
}

void RLock::lock() {
    const Deadline never = Deadline::never();
    acquire(state_of(region_), true, &never, "RLock");
}

bool RLock::try_lock() {
    return acquire(state_of(region_), true, nullptr, "RLock");
}

bool RLock::lock_within(std::optional<std::chrono::nanoseconds> timeout) {
    const Deadline deadline = Deadline::from(timeout);
    return acquire(state_of(region_), true, &deadline, "RLock");
}

void RLock::unlock() {
    release(state_of(region_), "RLock");
}

bool RLock::last_owner_died() const noexcept {
    return owner_died_for_caller(state_of(region_));
}

}  // namespace mproc
