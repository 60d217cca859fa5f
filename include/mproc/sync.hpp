#pragma once

// Synchronisation between processes, as Python's multiprocessing offers it:
//
//   Lock, RLock     mutual exclusion (Lockable, so std::lock_guard and std::unique_lock work)
//   Semaphore       a counter that acquire() takes from and release() gives back to
//   Event           a flag that processes wait to see set
//   Condition       wait for a change made under a Lock, and be notified of it
//   Barrier         n parties wait until all of them have arrived
//   Value<T>        one shared T with a lock of its own
//
// Every one of them is a handle to one object in memory shared between processes: copies share
// it, a child made by fork() shares it, and one sent through mproc (a task argument or result,
// a Process argument) arrives as a handle to the same object, never as a copy. The object lives
// as long as a handle to it does, in any process. Every operation may be called from any number
// of threads and processes at once.
//
// Handles are never empty: moving one copies it, and the state cereal loads into is a fresh
// object (which a received handle then replaces).
//
// A process that dies holding a Lock or RLock does not block the others: the next locker gets
// it and is told so (Lock::last_owner_died). The waits of the other types keep nothing in
// shared memory, so a process that dies while it waits leaves them as they were. What a dead
// process took and did not give back (a Semaphore's unit, its arrival at a Barrier) stays taken.

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "mproc/detail/shared_region.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {

// A user's timeout as src/sync takes it: nullopt waits for ever, and so does any timeout too long
// to add to the clock (over about 146 years); a negative one does not wait.
template <class Rep, class Period>
std::optional<std::chrono::nanoseconds> sync_timeout(std::chrono::duration<Rep, Period> timeout) {
    using Limit = std::chrono::duration<double, std::nano>;
    if (Limit(timeout) >= Limit(std::chrono::nanoseconds::max() / 2)) return std::nullopt;
    if (timeout <= timeout.zero()) return std::chrono::nanoseconds(0);
    return std::chrono::ceil<std::chrono::nanoseconds>(timeout);
}

template <class Clock, class Duration>
std::optional<std::chrono::nanoseconds> sync_timeout_until(
    const std::chrono::time_point<Clock, Duration>& until) {
    return sync_timeout(until - Clock::now());
}

}  // namespace detail

template <class T>
class Value;
class Condition;

// A lock between processes, like Python's multiprocessing.Lock: one thread (of any process)
// holds it at a time. It meets Lockable and TimedLockable, so std::lock_guard, std::unique_lock
// and std::scoped_lock work with it.
//
// The holder is the thread that locked it: only that thread may unlock it (another thread of the
// same process is not the holder either, unlike Python's Lock), and a child forked while its
// parent holds it does not hold it.
//
// When the holder dies (its process is killed or exits, or its thread ends) holding the lock,
// the lock is not lost. The next thread to lock it gets it as usual: lock() returns, try_lock()
// and try_lock_for() return true, nothing is thrown. That thread is told through
// last_owner_died(), which returns true from then until it unlocks. The data the lock guards
// may be half-updated: the dead holder may have stopped in the middle of changing it, so check
// or repair it before relying on it. The lock itself is already usable again: once that holder
// unlocks, whether or not it repaired anything, the lock works as before for everyone and
// last_owner_died() is false for the holders after it.
//
// Keep a handle to the lock for as long as you hold it: the last handle in a process unmaps the
// lock's memory, which a held lock must not lose (as a std::mutex must not be destroyed locked).
class Lock {
  public:
    // A new lock, not held. Throws mproc::Error when the kernel refuses the shared memory
    // (too many open descriptors, no memory).
    Lock();
    // Copies share the lock. There is no move: a moved-from handle would refer to nothing, so
    // moving copies.
    Lock(const Lock&) = default;
    Lock& operator=(const Lock&) = default;
    ~Lock() = default;

    // Waits until the calling thread holds the lock. Throws StateError when the calling thread
    // holds it already (it would wait for ever; an RLock may be locked again), and mproc::Error
    // when the system refuses.
    void lock();
    // Takes the lock if it is free now; never waits. False when another thread holds it, or the
    // calling thread does.
    bool try_lock();
    // Waits at most timeout for the lock; true when the calling thread got it. False at once
    // when the calling thread already holds it, unless timeout is too long to count (hours::max()
    // say), which waits for ever: StateError then, as lock().
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return lock_within(detail::sync_timeout(timeout));
    }
    // The same, until a point in time of any clock.
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& until) {
        return lock_within(detail::sync_timeout_until(until));
    }
    // Releases the lock. Throws StateError, and changes nothing, when the calling thread does not
    // hold it.
    void unlock();

    // True when the calling thread holds the lock and got it from a holder that died holding it;
    // false otherwise, and again once it unlocks. See the class comment for what this means.
    bool last_owner_died() const noexcept;

    // cereal's hooks, for mproc's encoding only: the lock travels as its descriptor. save throws
    // SerializationError outside mproc's encoding of a task argument or result; load throws it
    // outside mproc's decoding and when the descriptor received is not a lock's. On a throw,
    // *this is unchanged.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *region_, "Lock");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "Lock");
        check_received(*region, 0, 1, "Lock");
        region_ = std::move(region);
    }

  private:
    template <class T>
    friend class Value;
    friend class Condition;

    // A lock followed, in the same block, by payload_bytes bytes aligned to payload_align: the
    // storage of a Value.
    Lock(std::size_t payload_bytes, std::size_t payload_align);
    explicit Lock(std::shared_ptr<detail::SharedRegion> region) noexcept
        : region_(std::move(region)) {}
    // SerializationError unless region is a lock's (with a payload of exactly payload_bytes
    // when that is not 0).
    static void check_received(const detail::SharedRegion& region, std::size_t payload_bytes,
                               std::size_t payload_align, const char* what);
    bool lock_within(std::optional<std::chrono::nanoseconds> timeout);
    // Locks unless the calling thread holds the lock already; true when it locked.
    bool lock_unless_held();
    bool held_by_caller() const noexcept;
    std::byte* payload(std::size_t payload_align) const noexcept;
    // The same for every handle to this lock, in any process.
    std::uint64_t id() const noexcept;

    std::shared_ptr<detail::SharedRegion> region_;
};

// A reentrant lock between processes, like Python's multiprocessing.RLock: the thread that holds
// it may lock it again, and must unlock it as many times before another thread gets it.
// Everything else is as for Lock, a holder's death included: last_owner_died() stays true until
// the holder's last unlock.
class RLock {
  public:
    // A new lock, not held. Throws mproc::Error when the kernel refuses the shared memory.
    RLock();
    // Copies share the lock; moving copies.
    RLock(const RLock&) = default;
    RLock& operator=(const RLock&) = default;
    ~RLock() = default;

    // Waits until the calling thread holds the lock; returns at once when it holds it already,
    // counting one more lock. Throws mproc::Error when the system refuses.
    void lock();
    // Takes the lock if it is free now or held by the calling thread; never waits.
    bool try_lock();
    // Waits at most timeout for the lock; true when the calling thread holds it.
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return lock_within(detail::sync_timeout(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& until) {
        return lock_within(detail::sync_timeout_until(until));
    }
    // Undoes one lock; the lock is free once every lock is undone. Throws StateError, and
    // changes nothing, when the calling thread does not hold it.
    void unlock();

    // True when the calling thread holds the lock and got it from a holder that died holding it,
    // until its last unlock. See Lock.
    bool last_owner_died() const noexcept;

    // cereal's hooks, as for Lock.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *region_, "RLock");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "RLock");
        check_received(*region);
        region_ = std::move(region);
    }

  private:
    static void check_received(const detail::SharedRegion& region);
    bool lock_within(std::optional<std::chrono::nanoseconds> timeout);

    std::shared_ptr<detail::SharedRegion> region_;
};

// A counting semaphore between processes, like Python's multiprocessing.Semaphore: acquire()
// takes one unit, waiting while there is none; release() gives one back, from any thread or
// process (no ownership). A process that dies holding units does not give them back.
class Semaphore {
  public:
    // The most units a semaphore can count (SEM_VALUE_MAX).
    static constexpr std::size_t max_value = 0x7fffffff;

    // A semaphore with `value` units. Throws StateError when value is more than max_value (a
    // negative int converts to such a value), mproc::Error when the kernel refuses the memory.
    explicit Semaphore(std::size_t value = 1);
    // Copies share the semaphore; moving copies.
    Semaphore(const Semaphore&) = default;
    Semaphore& operator=(const Semaphore&) = default;
    ~Semaphore() = default;

    // Takes one unit, waiting for as long as it takes.
    void acquire();
    // Takes one unit, waiting at most timeout; false when none came in time.
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) {
        return acquire_within(detail::sync_timeout(timeout));
    }
    // Takes one unit if there is one now; never waits.
    bool try_acquire();
    // Gives one unit back and wakes a waiter. Throws StateError, and changes nothing, when the
    // semaphore already counts max_value units.
    void release();
    // The units free now; another process may change it at once.
    std::size_t value() const noexcept;

    // cereal's hooks, as for Lock.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *region_, "Semaphore");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "Semaphore");
        check_received(*region);
        region_ = std::move(region);
    }

  private:
    static void check_received(const detail::SharedRegion& region);
    bool acquire_within(std::optional<std::chrono::nanoseconds> timeout);

    std::shared_ptr<detail::SharedRegion> region_;
};

// A flag between processes, like Python's multiprocessing.Event: wait() returns once it is set.
class Event {
  public:
    // A new event, not set. Throws mproc::Error when the kernel refuses the shared memory.
    Event();
    // Copies share the event; moving copies.
    Event(const Event&) = default;
    Event& operator=(const Event&) = default;
    ~Event() = default;

    // Sets the flag and wakes every waiter.
    void set();
    // Unsets the flag.
    void clear() noexcept;
    bool is_set() const noexcept;
    // Returns once the flag is set; at once if it is set now.
    void wait();
    // The same, waiting at most timeout. True when the flag was set at some moment of the
    // wait, even if it was cleared again before this thread ran (which Python's Event misses);
    // false when it stayed unset until the timeout.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) {
        return wait_within(detail::sync_timeout(timeout));
    }

    // cereal's hooks, as for Lock.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *region_, "Event");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "Event");
        check_received(*region);
        region_ = std::move(region);
    }

  private:
    static void check_received(const detail::SharedRegion& region);
    bool wait_within(std::optional<std::chrono::nanoseconds> timeout);

    std::shared_ptr<detail::SharedRegion> region_;
};

// A condition variable between processes, like Python's multiprocessing.Condition: a thread
// holding the condition's Lock waits, releasing the lock, until another notifies it, and holds
// the lock again when wait returns. As with std::condition_variable, a wait may return without
// a notification (a spurious wake-up, and every waiter may wake for one notify_one), so wait in
// a loop on the state you wait for, or use the forms that take a predicate.
//
// If the lock's holder died while a waiter was away, the waiter returns holding the lock with
// get_lock().last_owner_died() true (see Lock).
class Condition {
  public:
    // A condition with a new Lock of its own. Throws mproc::Error when the kernel refuses the
    // shared memory.
    Condition();
    // A condition on an existing lock (the condition shares it).
    explicit Condition(Lock lock);
    // Copies share the condition and its lock; moving copies.
    Condition(const Condition&) = default;
    Condition& operator=(const Condition&) = default;
    ~Condition() = default;

    // The lock waiters must hold.
    Lock& get_lock() const noexcept { return lock_; }

    // Releases the lock, waits for a notification, and takes the lock again before returning.
    // Throws StateError when lock does not hold get_lock() (another lock, or not locked by the
    // calling thread).
    void wait(std::unique_lock<Lock>& lock) { wait_within(lock, std::nullopt); }
    // The same, waiting at most timeout; false when no notification came in time. The lock is
    // held again on return either way.
    template <class Rep, class Period>
    bool wait_for(std::unique_lock<Lock>& lock, std::chrono::duration<Rep, Period> timeout) {
        return wait_within(lock, detail::sync_timeout(timeout));
    }
    // Waits until predicate() is true; it is called with the lock held.
    template <class Predicate>
    void wait(std::unique_lock<Lock>& lock, Predicate predicate) {
        while (!predicate()) wait(lock);
    }
    // The same, waiting at most timeout; returns predicate()'s last value.
    template <class Rep, class Period, class Predicate>
    bool wait_for(std::unique_lock<Lock>& lock, std::chrono::duration<Rep, Period> timeout,
                  Predicate predicate) {
        const std::optional<std::chrono::nanoseconds> limit = detail::sync_timeout(timeout);
        if (!limit) {
            wait(lock, std::move(predicate));
            return true;
        }
        const auto until = std::chrono::steady_clock::now() + *limit;
        while (!predicate()) {
            const auto left = until - std::chrono::steady_clock::now();
            if (left <= left.zero()) return predicate();
            wait_within(lock, std::chrono::ceil<std::chrono::nanoseconds>(left));
        }
        return true;
    }

    // Wakes one waiter (at least one, possibly more), or none if nobody waits. The caller need
    // not hold the lock, but a waiter is sure to see a change only if it was made under it.
    void notify_one() noexcept;
    // Wakes every waiter.
    void notify_all() noexcept;

    // cereal's hooks, as for Lock: the condition travels as two descriptors, its lock's and
    // its own.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *lock_.region_, "Condition");
        detail::save_region(archive, *region_, "Condition");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> lock = detail::load_region(archive, "Condition");
        Lock::check_received(*lock, 0, 1, "Condition's lock");
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "Condition");
        check_received(*region);
        region_ = std::move(region);
        lock_ = Lock(std::move(lock));
    }

  private:
    static void check_received(const detail::SharedRegion& region);
    bool wait_within(std::unique_lock<Lock>& lock, std::optional<std::chrono::nanoseconds> timeout);

    std::shared_ptr<detail::SharedRegion> region_;
    // mutable: the lock is shared memory, which a const handle reaches as much as any other.
    mutable Lock lock_;
};

// What Barrier::wait throws when the barrier is broken: a wait on it timed out, abort() was
// called, or a process died in the middle of the barrier's bookkeeping.
class BrokenBarrierError : public Error {
  public:
    using Error::Error;
};

// A barrier between processes, like Python's multiprocessing.Barrier: each of `parties` waiters
// waits until all of them have arrived, then all go on, and the barrier is ready for the next
// round.
//
// A barrier breaks as Python's does, so that no party waits for ever for one that will not
// come: when a wait times out (that waiter gets TimeoutError), when abort() is called, or when
// a process died while it updated the barrier's count. Every party waiting then, and every
// later wait, throws BrokenBarrierError. Unlike Python's, a broken barrier stays broken (there is
// no reset(), which could not tell late waiters of the broken round from new ones): make a new
// Barrier. A party that dies while it waits still counts as arrived.
class Barrier {
  public:
    // A barrier for `parties` waiters. Throws StateError when parties is 0 or more than
    // 0x7fffffff, mproc::Error when the kernel refuses the shared memory. The default, one
    // party, never waits; it is what a received barrier is loaded into.
    explicit Barrier(std::size_t parties = 1);
    // Copies share the barrier; moving copies.
    Barrier(const Barrier&) = default;
    Barrier& operator=(const Barrier&) = default;
    ~Barrier() = default;

    // Waits until all parties have arrived. Returns this waiter's arrival index, 0 for the first
    // to arrive up to parties() - 1 for the last (as Python's). Throws BrokenBarrierError when
    // the barrier is or becomes broken.
    std::size_t wait() { return wait_within(std::nullopt); }
    // The same, waiting at most timeout: past it, breaks the barrier and throws TimeoutError.
    template <class Rep, class Period>
    std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
        return wait_within(detail::sync_timeout(timeout));
    }
    // Breaks the barrier: its waiters, and later ones, throw BrokenBarrierError.
    void abort();

    std::size_t parties() const noexcept;
    // The parties waiting now; another process may change it at once.
    std::size_t n_waiting() const;
    bool broken() const;

    // cereal's hooks, as for Lock.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *region_, "Barrier");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "Barrier");
        check_received(*region);
        region_ = std::move(region);
    }

  private:
    static void check_received(const detail::SharedRegion& region);
    std::size_t wait_within(std::optional<std::chrono::nanoseconds> timeout);

    std::shared_ptr<detail::SharedRegion> region_;
};

// One T in memory shared between processes, with a lock of its own, like Python's
// multiprocessing.Value. load, store, fetch_add and fetch_sub each hold the value's lock, so
// each is atomic, across processes too; a compound update holds get_lock() around them:
//
//     std::lock_guard guard(v.get_lock());
//     v.store(v.load() * 2);
//
// which works because they do not lock again when the calling thread holds the lock already.
// A T is copied in and out as bytes; a holder that died in the middle of a store may leave it
// half-written (get_lock().last_owner_died() tells the thread that takes the lock next, if it
// holds the lock itself; load and store do not check).
template <class T>
class Value {
    static_assert(std::is_trivially_copyable_v<T>,
                  "mproc::Value<T> needs a trivially copyable T: other processes see it as plain "
                  "bytes, so no constructor, destructor or copy of T runs there");
    static_assert(alignof(T) <= 4096,
                  "mproc::Value<T> needs alignof(T) <= 4096: the memory is page-aligned");

  public:
    // A new shared T holding `initial`. Throws mproc::Error when the kernel refuses the memory.
    explicit Value(const T& initial = T{}) : lock_(sizeof(T), alignof(T)) {
        std::memcpy(slot(), &initial, sizeof(T));
    }
    // Copies share the value; moving copies.
    Value(const Value&) = default;
    Value& operator=(const Value&) = default;
    ~Value() = default;

    T load() const {
        return under_lock([&] { return read(); });
    }
    void store(const T& value) {
        under_lock([&] { write(value); });
    }
    // Adds delta and returns the value before. Integers wrap around, as std::atomic's do.
    T fetch_add(T delta) requires(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
        return under_lock([&] {
            const T old = read();
            write(plus(old, delta, false));
            return old;
        });
    }
    // Subtracts delta and returns the value before.
    T fetch_sub(T delta) requires(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
        return under_lock([&] {
            const T old = read();
            write(plus(old, delta, true));
            return old;
        });
    }

    // The value's lock, for updates made of several operations. The calling thread may call
    // load, store, fetch_add and fetch_sub while it holds it.
    Lock& get_lock() const noexcept { return lock_; }

    // cereal's hooks, as for Lock. load also throws SerializationError when the block received
    // is not a Value of a type of T's size.
    template <class Archive>
    void save(Archive& archive) const {
        detail::save_region(archive, *lock_.region_, "Value");
    }
    template <class Archive>
    void load(Archive& archive) {
        std::shared_ptr<detail::SharedRegion> region = detail::load_region(archive, "Value");
        Lock::check_received(*region, sizeof(T), alignof(T), "Value");
        lock_ = Lock(std::move(region));
    }

  private:
    std::byte* slot() const noexcept { return lock_.payload(alignof(T)); }
    T read() const noexcept {
        std::array<std::byte, sizeof(T)> bytes;
        std::memcpy(bytes.data(), slot(), sizeof(T));
        return std::bit_cast<T>(bytes);
    }
    void write(const T& value) const noexcept { std::memcpy(slot(), &value, sizeof(T)); }

    static T plus(T a, T b, bool subtract) noexcept {
        if constexpr (std::is_integral_v<T>) {
            // In unsigned arithmetic, so that overflow wraps instead of being undefined.
            using U = std::make_unsigned_t<T>;
            return static_cast<T>(subtract ? static_cast<U>(static_cast<U>(a) - static_cast<U>(b))
                                           : static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
        } else {
            return subtract ? a - b : a + b;
        }
    }

    template <class F>
    decltype(auto) under_lock(F f) const {
        struct Release {
            Lock* lock;
            ~Release() {
                if (lock != nullptr) lock->unlock();
            }
        } release{lock_.lock_unless_held() ? &lock_ : nullptr};
        return f();
    }

    // mutable: the value is shared memory, which a const handle reaches as much as any other.
    mutable Lock lock_;
};

}  // namespace mproc
