// Specifies include/mproc/sync.hpp: Lock, RLock, Semaphore, Event, Condition, Barrier and
// Value, between threads and between processes.
//
// Children report through their exit code (0 when they saw what they should) or through an
// mproc::SharedArray<int>. A child that must stay alive while the test looks at it waits for a
// flag in shared memory, and every wait of a test, in the parent or in a child, ends by itself
// after a generous limit, so a broken build fails instead of hanging.

#include "mproc/sync.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cereal/archives/binary.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/errors.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::Barrier;
using mproc::BrokenBarrierError;
using mproc::Condition;
using mproc::Event;
using mproc::Lock;
using mproc::Process;
using mproc::RLock;
using mproc::Semaphore;
using mproc::SharedArray;
using mproc::Value;

// How long any wait of a test may last before the test gives up: far beyond what a loaded
// machine needs, short enough that a broken build fails rather than hangs.
constexpr auto kPatience = 30s;
// A timeout that is meant to pass.
constexpr auto kShortWait = 100ms;

using Clock = std::chrono::steady_clock;

int load(const SharedArray<int>& cells, std::size_t i) {
    return std::atomic_ref<int>(cells[i]).load();
}
void store(const SharedArray<int>& cells, std::size_t i, int value) {
    std::atomic_ref<int>(cells[i]).store(value);
}

// Polls pred until it holds or timeout passes; returns its last value.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = kPatience) {
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
        if (Clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

// Waits for a started child and returns its exit code; kills it past the limit.
int finish(Process& child) {
    if (!child.join(kPatience * 2)) {
        ADD_FAILURE() << "child " << child.pid() << " did not end in time";
        child.kill();
        child.join();
    }
    return child.exitcode().value_or(-100);
}

// Runs body in a child process and returns its exit code.
int run_in_child(std::function<void()> body) {
    Process child(std::move(body));
    child.start();
    return finish(child);
}

// Whether a wait that started at `start` ended before kPatience. The waits of the tests are
// bounded by kPatience only so that a lost wake-up fails a test instead of hanging it; one that
// lasts the whole of it was never woken.
bool ended_in_time(Clock::time_point start) {
    return Clock::now() - start < kPatience;
}

// Whether thread tid of this process is asleep (state S in /proc): in a test where the only
// thing it can sleep on is the futex of the object it waits on, it is waiting there.
bool thread_is_asleep(pid_t tid) {
    std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
    std::string line;
    if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) return false;
    // pid (comm) state ...: comm may hold spaces, so read after the last ')'.
    return line.substr(line.rfind(')') + 2, 1) == "S";
}

// Ends the calling child with code unless ok.
void require(bool ok, int code = 2) {
    if (!ok) ::_exit(code);
}

// Whether another thread of this process could take lock now.
template <class L>
bool free_for_another_thread(L& lock) {
    bool taken = false;
    std::thread([&] {
        taken = lock.try_lock();
        if (taken) lock.unlock();
    }).join();
    return taken;
}

// ---- task bodies for the pool: plain functions taking handles by value ----

bool lock_was_free(Lock lock) {
    if (!lock.try_lock()) return false;
    lock.unlock();
    return true;
}

void add_ten(Value<int> value) {
    value.fetch_add(10);
}

bool condition_lock_was_free(Condition condition) {
    return lock_was_free(condition.get_lock());
}

void set_event(Event event) {
    event.set();
}

// ---- encoding as mproc does, outside a pool ----

template <class T>
std::string encode(const T& value, mproc::detail::FdOutbox& outbox) {
    std::stringstream stream;
    mproc::detail::FdOutboxScope scope(outbox);
    cereal::BinaryOutputArchive archive(stream);
    archive(value);
    return stream.str();
}

template <class T>
void decode(const std::string& bytes, std::span<const mproc::detail::UniqueFd> fds, T& value) {
    std::stringstream stream(bytes);
    mproc::detail::FdInbox inbox(fds);
    mproc::detail::FdInboxScope scope(inbox);
    cereal::BinaryInputArchive archive(stream);
    archive(value);
}

// A copy of `from` as another process would receive it: through its descriptors.
template <class To, class From>
To send_and_receive(const From& from) {
    mproc::detail::FdOutbox outbox;
    const std::string bytes = encode(from, outbox);
    const std::vector<mproc::detail::UniqueFd> fds = outbox.take();
    To to;
    decode(bytes, fds, to);
    return to;
}

// ============================== Lock ==============================

TEST(Lock, WorksWithLockGuard) {
    Lock lock;
    {
        std::lock_guard guard(lock);
        EXPECT_FALSE(free_for_another_thread(lock));
    }
    EXPECT_TRUE(free_for_another_thread(lock));
}

TEST(Lock, WorksWithUniqueLockAndItsTimedTryLock) {
    Lock lock;
    std::unique_lock first(lock, std::defer_lock);
    ASSERT_TRUE(first.try_lock_for(kPatience));
    EXPECT_FALSE(free_for_another_thread(lock));
    first.unlock();
    std::unique_lock second(lock, std::try_to_lock);
    EXPECT_TRUE(second.owns_lock());
}

TEST(Lock, CopiesShareOneLock) {
    Lock original;
    Lock copy = original;
    Lock assigned;
    assigned = copy;
    std::lock_guard guard(original);
    EXPECT_FALSE(free_for_another_thread(copy));
    EXPECT_FALSE(free_for_another_thread(assigned));
}

TEST(Lock, ChildProcessCannotTakeALockTheParentHolds) {
    Lock lock;
    std::lock_guard guard(lock);
    EXPECT_EQ(run_in_child([&] { require(!lock.try_lock()); }), 0);
}

TEST(Lock, ChildProcessTakesALockTheParentReleased) {
    Lock lock;
    EXPECT_EQ(run_in_child([&] {
                  require(lock.try_lock_for(kPatience));
                  lock.unlock();
              }),
              0);
}

TEST(Lock, TryLockForGivesUpWhileAnotherProcessHoldsIt) {
    Lock lock;
    SharedArray<int> flags(2);  // [0]: the child holds the lock; [1]: the child may let go
    Process child([&] {
        std::lock_guard guard(lock);
        store(flags, 0, 1);
        eventually([&] { return load(flags, 1) == 1; }, kPatience * 2);
    });
    child.start();
    ASSERT_TRUE(eventually([&] { return load(flags, 0) == 1; }));
    const auto start = Clock::now();
    EXPECT_FALSE(lock.try_lock_for(kShortWait));
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, kShortWait);
    EXPECT_LT(waited, kPatience);
    store(flags, 1, 1);
    EXPECT_EQ(finish(child), 0);
}

TEST(Lock, UnlockingALockNobodyHoldsIsAStateError) {
    Lock lock;
    EXPECT_THROW(lock.unlock(), mproc::StateError);
}

TEST(Lock, UnlockingALockAnotherThreadHoldsIsAStateErrorAndLeavesItHeld) {
    Lock lock;
    std::lock_guard guard(lock);
    std::thread([&] { EXPECT_THROW(lock.unlock(), mproc::StateError); }).join();
    EXPECT_FALSE(free_for_another_thread(lock));
}

TEST(Lock, ChildForkedWhileTheParentHoldsALockDoesNotHoldIt) {
    Lock lock;
    std::lock_guard guard(lock);
    EXPECT_EQ(run_in_child([&] {
                  require(!lock.last_owner_died());
                  try {
                      lock.unlock();
                  } catch (const mproc::StateError&) {
                      ::_exit(0);
                  }
                  ::_exit(3);
              }),
              0);
    EXPECT_FALSE(free_for_another_thread(lock));
}

TEST(Lock, LockingAgainFromTheHoldingThreadIsAStateError) {
    Lock lock;
    std::lock_guard guard(lock);
    EXPECT_THROW(lock.lock(), mproc::StateError);
}

TEST(Lock, TryLockFromTheHoldingThreadReturnsFalse) {
    Lock lock;
    std::lock_guard guard(lock);
    EXPECT_FALSE(lock.try_lock());
    EXPECT_FALSE(lock.try_lock_for(kShortWait));
}

TEST(Lock, HolderThatExitedHandsTheLockToTheNextLockerWithLastOwnerDied) {
    Lock lock;
    EXPECT_EQ(run_in_child([&] {
                  lock.lock();
                  ::_exit(0);
              }),
              0);
    ASSERT_TRUE(lock.try_lock_for(kPatience));
    EXPECT_TRUE(lock.last_owner_died());
    lock.unlock();
}

TEST(Lock, HolderKilledBySigkillHandsTheLockToTheNextLocker) {
    Lock lock;
    SharedArray<int> held(1);
    Process child([&] {
        lock.lock();
        store(held, 0, 1);
        std::this_thread::sleep_for(kPatience * 4);
    });
    child.start();
    ASSERT_TRUE(eventually([&] { return load(held, 0) == 1; }));
    child.kill();
    finish(child);
    ASSERT_TRUE(lock.try_lock_for(kPatience));
    EXPECT_TRUE(lock.last_owner_died());
    lock.unlock();
}

TEST(Lock, HolderThreadThatEndedHandsTheLockToTheNextLocker) {
    Lock lock;
    std::thread([&] { lock.lock(); }).join();
    ASSERT_TRUE(lock.try_lock_for(kPatience));
    EXPECT_TRUE(lock.last_owner_died());
    lock.unlock();
}

TEST(Lock, LastOwnerDiedIsFalseAgainAfterTheToldHolderUnlocks) {
    Lock lock;
    EXPECT_EQ(run_in_child([&] {
                  lock.lock();
                  ::_exit(0);
              }),
              0);
    ASSERT_TRUE(lock.try_lock_for(kPatience));
    lock.unlock();
    std::lock_guard guard(lock);
    EXPECT_FALSE(lock.last_owner_died());
}

TEST(Lock, LastOwnerDiedIsFalseForAThreadThatDoesNotHoldTheLock) {
    Lock lock;
    EXPECT_EQ(run_in_child([&] {
                  lock.lock();
                  ::_exit(0);
              }),
              0);
    ASSERT_TRUE(lock.try_lock_for(kPatience));
    bool other_thread_told = true;
    std::thread([&] { other_thread_told = lock.last_owner_died(); }).join();
    EXPECT_FALSE(other_thread_told);
    lock.unlock();
}

TEST(Lock, LastOwnerDiedIsFalseAfterAnOrdinaryHandover) {
    Lock lock;
    EXPECT_EQ(run_in_child([&] {
                  lock.lock();
                  lock.unlock();
              }),
              0);
    std::lock_guard guard(lock);
    EXPECT_FALSE(lock.last_owner_died());
}

TEST(Lock, SentAsAPoolTaskArgumentIsTheSameLock) {
    Lock lock;
    mproc::Pool pool(1);
    lock.lock();
    EXPECT_FALSE(pool.apply(lock_was_free, lock));
    lock.unlock();
    EXPECT_TRUE(pool.apply(lock_was_free, lock));
}

// ============================== RLock ==============================

TEST(RLock, HolderMayLockAgainAndMustUnlockAsOften) {
    RLock lock;
    lock.lock();
    ASSERT_TRUE(lock.try_lock());
    ASSERT_TRUE(lock.try_lock_for(kShortWait));
    lock.unlock();
    lock.unlock();
    EXPECT_FALSE(free_for_another_thread(lock));
    lock.unlock();
    EXPECT_TRUE(free_for_another_thread(lock));
}

TEST(RLock, UnlockingAnRLockYouDoNotHoldIsAStateError) {
    RLock lock;
    EXPECT_THROW(lock.unlock(), mproc::StateError);
    std::lock_guard guard(lock);
    std::thread([&] { EXPECT_THROW(lock.unlock(), mproc::StateError); }).join();
}

TEST(RLock, HolderThatDiedHandsItToTheNextLockerWithLastOwnerDiedUntilTheLastUnlock) {
    RLock lock;
    EXPECT_EQ(run_in_child([&] {
                  lock.lock();
                  lock.lock();
                  ::_exit(0);
              }),
              0);
    ASSERT_TRUE(lock.try_lock_for(kPatience));
    lock.lock();
    EXPECT_TRUE(lock.last_owner_died());
    lock.unlock();
    EXPECT_TRUE(lock.last_owner_died());
    lock.unlock();
    EXPECT_TRUE(free_for_another_thread(lock));
}

TEST(RLock, ChildProcessCannotTakeAnRLockTheParentHolds) {
    RLock lock;
    std::lock_guard guard(lock);
    EXPECT_EQ(run_in_child([&] { require(!lock.try_lock()); }), 0);
}

// ============================== Semaphore ==============================

TEST(Semaphore, NeverLetsMoreProcessesInThanItsValue) {
    constexpr int children = 4;
    constexpr int rounds = 50;
    Semaphore semaphore(2);
    SharedArray<int> counts(3);  // [0]: inside now; [1]: most inside at once; [2]: entries
    std::vector<Process> workers;
    for (int i = 0; i < children; ++i) {
        workers.emplace_back([&] {
            for (int round = 0; round < rounds; ++round) {
                require(semaphore.acquire(kPatience));
                const int inside = std::atomic_ref<int>(counts[0]).fetch_add(1) + 1;
                std::atomic_ref<int> most(counts[1]);
                int seen = most.load();
                while (inside > seen && !most.compare_exchange_weak(seen, inside)) {
                }
                std::atomic_ref<int>(counts[2]).fetch_add(1);
                std::this_thread::sleep_for(200us);
                std::atomic_ref<int>(counts[0]).fetch_sub(1);
                semaphore.release();
            }
        });
    }
    for (auto& worker : workers) worker.start();
    for (auto& worker : workers) EXPECT_EQ(finish(worker), 0);
    EXPECT_EQ(load(counts, 2), children * rounds);
    EXPECT_GE(load(counts, 1), 1);
    EXPECT_LE(load(counts, 1), 2);
    EXPECT_EQ(semaphore.value(), 2u);
}

TEST(Semaphore, AcquireWithTimeoutReturnsFalseWhenNoUnitComes) {
    Semaphore semaphore(0);
    const auto start = Clock::now();
    EXPECT_FALSE(semaphore.acquire(kShortWait));
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, kShortWait);
    EXPECT_LT(waited, kPatience);
}

TEST(Semaphore, ReleaseWakesAProcessWaitingToAcquire) {
    Semaphore semaphore(0);
    Process child([&] {
        const auto start = Clock::now();
        require(semaphore.acquire(kPatience));
        require(ended_in_time(start), 4);
    });
    child.start();
    std::this_thread::sleep_for(kShortWait);  // most likely asleep by now; correct either way
    semaphore.release();
    EXPECT_EQ(finish(child), 0);
    EXPECT_EQ(semaphore.value(), 0u);
}

TEST(Semaphore, ValueCountsItsFreeUnits) {
    Semaphore semaphore(3);
    semaphore.acquire();
    EXPECT_EQ(semaphore.value(), 2u);
    EXPECT_TRUE(semaphore.try_acquire());
    EXPECT_TRUE(semaphore.try_acquire());
    EXPECT_FALSE(semaphore.try_acquire());
    EXPECT_EQ(semaphore.value(), 0u);
    semaphore.release();
    EXPECT_EQ(semaphore.value(), 1u);
}

TEST(Semaphore, CopiesShareTheUnits) {
    Semaphore semaphore(1);
    Semaphore copy = semaphore;
    ASSERT_TRUE(copy.try_acquire());
    EXPECT_FALSE(semaphore.try_acquire());
}

TEST(Semaphore, MoreUnitsThanItCanCountIsAStateError) {
    EXPECT_THROW(Semaphore(Semaphore::max_value + 1), mproc::StateError);
    Semaphore full(Semaphore::max_value);
    EXPECT_THROW(full.release(), mproc::StateError);
    EXPECT_EQ(full.value(), Semaphore::max_value);
}

// ============================== Event ==============================

TEST(Event, SetWakesAWaitingChild) {
    Event event;
    Process child([&] {
        const auto start = Clock::now();
        require(event.wait(kPatience));
        require(ended_in_time(start), 4);
    });
    child.start();
    std::this_thread::sleep_for(kShortWait);  // most likely waiting by now; correct either way
    event.set();
    EXPECT_EQ(finish(child), 0);
}

TEST(Event, WaitWithTimeoutReturnsFalseWhenNeverSet) {
    Event event;
    const auto start = Clock::now();
    EXPECT_FALSE(event.wait(kShortWait));
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, kShortWait);
    EXPECT_LT(waited, kPatience);
}

TEST(Event, IsSetFollowsSetAndClear) {
    Event event;
    EXPECT_FALSE(event.is_set());
    event.set();
    EXPECT_TRUE(event.is_set());
    event.set();
    EXPECT_TRUE(event.is_set());
    event.clear();
    EXPECT_FALSE(event.is_set());
}

TEST(Event, WaitReturnsTrueAtOnceWhenAlreadySet) {
    Event event;
    event.set();
    EXPECT_TRUE(event.wait(0s));
    event.wait();
}

TEST(Event, WaiterSeesASetThatWasClearedAgain) {
    Event event;
    std::atomic<pid_t> waiter_tid{0};
    std::thread waiter([&] {
        waiter_tid = ::gettid();
        const auto start = Clock::now();
        EXPECT_TRUE(event.wait(kPatience));
        EXPECT_TRUE(ended_in_time(start));
    });
    // The set and clear must come while the waiter sleeps, which nothing but the kernel shows.
    ASSERT_TRUE(eventually([&] { return waiter_tid != 0 && thread_is_asleep(waiter_tid); }));
    event.set();
    event.clear();
    waiter.join();
}

TEST(Event, SentAsAPoolTaskArgumentIsTheSameEvent) {
    Event event;
    mproc::Pool pool(1);
    pool.apply(set_event, event);
    EXPECT_TRUE(event.is_set());
}

// ============================== Condition ==============================

TEST(Condition, NotifyWakesAWaitingChild) {
    Condition condition;
    SharedArray<int> flags(2);  // [0]: the child waits; [1]: the parent's change
    Process child([&] {
        std::unique_lock lock(condition.get_lock());
        store(flags, 0, 1);
        while (load(flags, 1) == 0) require(condition.wait_for(lock, kPatience), 3);
    });
    child.start();
    ASSERT_TRUE(eventually([&] { return load(flags, 0) == 1; }));
    {
        // Only free once the child is inside wait.
        std::lock_guard guard(condition.get_lock());
        store(flags, 1, 1);
    }
    condition.notify_all();
    EXPECT_EQ(finish(child), 0);
}

TEST(Condition, NotifyOneWakesAWaitingThread) {
    Condition condition;
    std::atomic<bool> waiting{false};
    bool changed = false;
    bool woken = true;
    std::thread waiter([&] {
        std::unique_lock lock(condition.get_lock());
        waiting = true;
        while (!changed && woken) woken = condition.wait_for(lock, kPatience);
    });
    ASSERT_TRUE(eventually([&] { return waiting.load(); }));
    {
        std::lock_guard guard(condition.get_lock());
        changed = true;
    }
    condition.notify_one();
    waiter.join();
    EXPECT_TRUE(woken);
}

TEST(Condition, WaitForWithoutANotificationReturnsFalseHoldingTheLock) {
    Condition condition;
    std::unique_lock lock(condition.get_lock());
    const auto start = Clock::now();
    EXPECT_FALSE(condition.wait_for(lock, kShortWait));
    EXPECT_GE(Clock::now() - start, kShortWait);
    EXPECT_TRUE(lock.owns_lock());
    EXPECT_FALSE(free_for_another_thread(condition.get_lock()));
}

TEST(Condition, WaitWithAPredicateReturnsOnceItHolds) {
    Condition condition;
    int stage = 0;
    std::thread changer([&] {
        for (int i = 0; i < 3; ++i) {
            {
                std::lock_guard guard(condition.get_lock());
                ++stage;
            }
            condition.notify_all();
        }
    });
    std::unique_lock lock(condition.get_lock());
    EXPECT_TRUE(condition.wait_for(lock, kPatience, [&] { return stage == 3; }));
    lock.unlock();
    changer.join();
}

TEST(Condition, BuiltOnALockSharesThatLock) {
    Lock lock;
    Condition condition(lock);
    std::lock_guard guard(lock);
    EXPECT_FALSE(free_for_another_thread(condition.get_lock()));
}

TEST(Condition, WaitWithoutHoldingItsLockIsAStateError) {
    Condition condition;
    std::unique_lock lock(condition.get_lock(), std::defer_lock);
    EXPECT_THROW(condition.wait(lock), mproc::StateError);
}

TEST(Condition, WaitOnAnotherLockIsAStateError) {
    Condition condition;
    Lock other;
    std::unique_lock lock(other);
    EXPECT_THROW(condition.wait_for(lock, kShortWait), mproc::StateError);
    EXPECT_TRUE(lock.owns_lock());
}

TEST(Condition, SentAsAPoolTaskArgumentKeepsItsLock) {
    Condition condition;
    mproc::Pool pool(1);
    condition.get_lock().lock();
    EXPECT_FALSE(pool.apply(condition_lock_was_free, condition));
    condition.get_lock().unlock();
    EXPECT_TRUE(pool.apply(condition_lock_was_free, condition));
}

// ============================== Barrier ==============================

TEST(Barrier, ReleasesNobodyUntilAllPartiesHaveArrived) {
    Barrier barrier(3);
    SharedArray<int> passed(4);  // [0]: how many passed; [1 + i]: child i's arrival index + 1
    std::vector<Process> children;
    for (int i = 0; i < 2; ++i) {
        children.emplace_back([&, i] {
            const auto start = Clock::now();
            const std::size_t index = barrier.wait(kPatience);
            require(ended_in_time(start), 4);
            store(passed, 1 + i, static_cast<int>(index) + 1);
            std::atomic_ref<int>(passed[0]).fetch_add(1);
        });
    }
    for (auto& child : children) child.start();
    ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 2; }));
    std::this_thread::sleep_for(kShortWait);
    EXPECT_EQ(load(passed, 0), 0);
    const std::size_t mine = barrier.wait(kPatience);
    for (auto& child : children) EXPECT_EQ(finish(child), 0);
    EXPECT_EQ(load(passed, 0), 2);
    const std::set<int> indices{static_cast<int>(mine), load(passed, 1) - 1, load(passed, 2) - 1};
    EXPECT_EQ(indices, (std::set<int>{0, 1, 2}));
}

TEST(Barrier, LastToArriveGetsTheHighestIndex) {
    Barrier barrier(2);
    std::size_t first = 99;
    std::thread waiter([&] { first = barrier.wait(kPatience); });
    ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
    EXPECT_EQ(barrier.wait(kPatience), 1u);
    waiter.join();
    EXPECT_EQ(first, 0u);
}

TEST(Barrier, ServesManyRounds) {
    constexpr int parties = 3;
    constexpr int rounds = 20;
    Barrier barrier(parties);
    std::vector<std::set<std::size_t>> indices(rounds);
    std::mutex indices_mutex;
    std::vector<std::thread> threads;
    for (int t = 0; t < parties; ++t) {
        threads.emplace_back([&] {
            try {
                for (int round = 0; round < rounds; ++round) {
                    const auto start = Clock::now();
                    const std::size_t index = barrier.wait(kPatience);
                    EXPECT_TRUE(ended_in_time(start));
                    std::lock_guard guard(indices_mutex);
                    indices[round].insert(index);
                }
            } catch (const mproc::Error& error) {
                ADD_FAILURE() << error.what();
            }
        });
    }
    for (auto& thread : threads) thread.join();
    for (const auto& round : indices) EXPECT_EQ(round, (std::set<std::size_t>{0, 1, 2}));
    EXPECT_FALSE(barrier.broken());
}

TEST(Barrier, WaitThatTimesOutThrowsTimeoutErrorAndBreaksTheBarrier) {
    Barrier barrier(2);
    const auto start = Clock::now();
    EXPECT_THROW(barrier.wait(kShortWait), mproc::TimeoutError);
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, kShortWait);
    EXPECT_LT(waited, kPatience);
    EXPECT_TRUE(barrier.broken());
    EXPECT_THROW(barrier.wait(kShortWait), BrokenBarrierError);
}

TEST(Barrier, TimeoutOfOneWaiterWakesTheOthersWithBrokenBarrierError) {
    Barrier barrier(3);
    bool broke = false;
    std::thread waiter([&] {
        const auto start = Clock::now();
        try {
            barrier.wait(kPatience);
        } catch (const BrokenBarrierError&) {
            broke = ended_in_time(start);
        }
    });
    ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
    EXPECT_THROW(barrier.wait(kShortWait), mproc::TimeoutError);
    waiter.join();
    EXPECT_TRUE(broke);
}

TEST(Barrier, AbortWakesAWaitingChildWithBrokenBarrierError) {
    Barrier barrier(2);
    Process child([&] {
        const auto start = Clock::now();
        try {
            barrier.wait(kPatience);
        } catch (const BrokenBarrierError&) {
            require(ended_in_time(start), 4);
            ::_exit(0);
        }
        ::_exit(3);
    });
    child.start();
    ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
    barrier.abort();
    EXPECT_EQ(finish(child), 0);
}

TEST(Barrier, OfOnePartyReturnsAtOnce) {
    Barrier barrier(1);
    EXPECT_EQ(barrier.wait(), 0u);
    EXPECT_EQ(barrier.wait(0s), 0u);
    EXPECT_EQ(barrier.parties(), 1u);
}

TEST(Barrier, OfZeroPartiesIsAStateError) {
    EXPECT_THROW(Barrier(0), mproc::StateError);
}

// ============================== Value ==============================

// Runs body in `children` processes at once: each starts it only once all have started, so
// that they overlap however slowly processes start.
void run_together(int children, const std::function<void()>& body) {
    SharedArray<int> started(1);
    std::vector<Process> workers;
    for (int i = 0; i < children; ++i) {
        workers.emplace_back([&] {
            // A spin, not a sleep, so that they go on at the same moment.
            std::atomic_ref<int>(started[0]).fetch_add(1);
            const auto deadline = Clock::now() + kPatience;
            while (load(started, 0) < children) {
                require(Clock::now() < deadline, 5);
                std::this_thread::yield();
            }
            body();
        });
    }
    for (auto& worker : workers) worker.start();
    for (auto& worker : workers) EXPECT_EQ(finish(worker), 0);
}

TEST(Value, ChildrenIncrementingUnderItsLockReachTheExactTotal) {
    constexpr int children = 4;
    // Enough that the children overlap: a thousand take less than one time slice.
    constexpr int increments = 20000;
    Value<int> counter(0);
    run_together(children, [&] {
        for (int n = 0; n < increments; ++n) {
            std::lock_guard guard(counter.get_lock());
            counter.store(counter.load() + 1);
        }
    });
    EXPECT_EQ(counter.load(), children * increments);
}

TEST(Value, FetchAddIsAtomicAcrossProcesses) {
    constexpr int children = 4;
    constexpr int increments = 20000;
    Value<long> counter(5);
    run_together(children, [&] {
        for (int n = 0; n < increments; ++n) counter.fetch_add(1);
    });
    EXPECT_EQ(counter.load(), 5 + children * increments);
}

TEST(Value, FetchAddAndFetchSubReturnTheValueBefore) {
    Value<double> value(1.5);
    EXPECT_EQ(value.fetch_add(2.0), 1.5);
    EXPECT_EQ(value.fetch_sub(0.5), 3.5);
    EXPECT_EQ(value.load(), 3.0);
}

TEST(Value, IntegerOverflowWrapsAround) {
    Value<std::int32_t> value(INT32_MAX);
    value.fetch_add(1);
    EXPECT_EQ(value.load(), INT32_MIN);
}

TEST(Value, OperationsWhileHoldingItsLockDoNotLockAgain) {
    Value<int> value(1);
    std::lock_guard guard(value.get_lock());
    value.fetch_add(1);
    value.store(value.load() * 10);
    EXPECT_EQ(value.load(), 20);
}

TEST(Value, CopiesShareTheValue) {
    Value<int> value(1);
    Value<int> copy = value;
    copy.store(7);
    EXPECT_EQ(value.load(), 7);
}

TEST(Value, HoldsATriviallyCopyableStruct) {
    struct Point {
        double x;
        double y;
        int tag;
    };
    Value<Point> point(Point{1.0, 2.0, 3});
    EXPECT_EQ(run_in_child([&] { point.store(Point{4.0, 5.0, 6}); }), 0);
    const Point seen = point.load();
    EXPECT_EQ(seen.x, 4.0);
    EXPECT_EQ(seen.y, 5.0);
    EXPECT_EQ(seen.tag, 6);
}

TEST(Value, SentAsAPoolTaskArgumentIsTheSameValue) {
    Value<int> value(1);
    mproc::Pool pool(2);
    pool.apply(add_ten, value);
    pool.apply(add_ten, value);
    EXPECT_EQ(value.load(), 21);
}

// ============================== sending ==============================

TEST(Sending, LockReceivedInTheSameProcessIsTheSameLock) {
    Lock lock;
    Lock received = send_and_receive<Lock>(lock);
    std::lock_guard guard(lock);
    EXPECT_FALSE(free_for_another_thread(received));
}

TEST(Sending, ConditionReceivedInTheSameProcessAcceptsTheOriginalsLock) {
    Condition condition;
    Condition received = send_and_receive<Condition>(condition);
    std::unique_lock lock(condition.get_lock());
    EXPECT_FALSE(received.wait_for(lock, 1ms));
}

TEST(Sending, HandleReceivedAsAnotherKindIsASerializationError) {
    Lock lock;
    EXPECT_THROW(send_and_receive<Semaphore>(lock), mproc::SerializationError);
    EXPECT_THROW(send_and_receive<RLock>(lock), mproc::SerializationError);
    EXPECT_THROW(send_and_receive<Lock>(Event()), mproc::SerializationError);
    EXPECT_THROW(send_and_receive<Barrier>(SharedArray<char>(4096)), mproc::SerializationError);
}

TEST(Sending, ValueReceivedAsAValueOfAnotherSizeIsASerializationError) {
    Value<std::int32_t> value(1);
    EXPECT_THROW(send_and_receive<Value<std::int64_t>>(value), mproc::SerializationError);
}

TEST(Sending, ValuesLockReceivedAsALockIsTheValuesLock) {
    Value<int> value(1);
    Lock received = send_and_receive<Lock>(value.get_lock());
    std::lock_guard guard(received);
    EXPECT_FALSE(free_for_another_thread(value.get_lock()));
}

TEST(Sending, HandleOutsideMprocsEncodingIsASerializationError) {
    std::stringstream stream;
    cereal::BinaryOutputArchive archive(stream);
    EXPECT_THROW(archive(Event()), mproc::SerializationError);
}

// ============================== resources ==============================

TEST(Resources, NothingIsLeftOpenOnceTheHandlesAreGone) {
    const std::size_t before = mproc::testing::open_descriptor_count();
    {
        Lock lock;
        RLock rlock;
        Semaphore semaphore(1);
        Event event;
        Condition condition;
        Barrier barrier(2);
        Value<int> value(0);
        auto copies = std::make_tuple(lock, rlock, semaphore, event, condition, barrier, value);
        Lock received = send_and_receive<Lock>(lock);
        Condition received_condition = send_and_receive<Condition>(condition);
        EXPECT_EQ(run_in_child([&] {
                      std::lock_guard guard(lock);
                      value.fetch_add(1);
                      event.set();
                  }),
                  0);
        EXPECT_EQ(value.load(), 1);
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), before);
    EXPECT_TRUE(mproc::testing::child_pids().empty());
}

}  // namespace
