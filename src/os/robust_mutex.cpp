#include "os/robust_mutex.hpp"

#include <cerrno>
#include <ctime>

#include "mproc/errors.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

void init_robust_mutex(pthread_mutex_t& mutex, bool recursive) {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attributes,
                              recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
    const int error = pthread_mutex_init(&mutex, &attributes);
    pthread_mutexattr_destroy(&attributes);
    if (error != 0) throw_system_error("pthread_mutex_init", error);
}

namespace {

// A few microseconds of trying, at most.
constexpr int spin_tries = 200;

void pause_briefly() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

LockOutcome settle(pthread_mutex_t& mutex, int result, const char* what) {
    switch (result) {
        case 0:
            return LockOutcome::acquired;
        case EOWNERDEAD:
            pthread_mutex_consistent(&mutex);
            return LockOutcome::acquired_from_dead_owner;
        case ETIMEDOUT:
        case EBUSY:
            return LockOutcome::timed_out;
        case EDEADLK:
            throw StateError("mproc: a lock was acquired again by the thread that holds it");
        default:
            throw_system_error(what, result);
    }
}

}  // namespace

LockOutcome lock_robust(pthread_mutex_t& mutex, const Deadline& deadline) {
    // glibc's robust mutexes do not spin: a thread that finds one held sleeps in the kernel at
    // once, and its holder's unlock then wakes it, two system calls (and a wake-up sent to
    // another vCPU) for a wait that is usually shorter than either: mproc's queues and dicts
    // hold their locks for well under a microsecond. So try for a little while first.
    for (int tries = 0; tries < spin_tries; ++tries) {
        const LockOutcome outcome = try_lock_robust(mutex);
        if (outcome != LockOutcome::timed_out) return outcome;
        pause_briefly();
    }
    auto left = deadline.remaining();
    if (!left) return settle(mutex, pthread_mutex_lock(&mutex), "pthread_mutex_lock");
    timespec until{};
    clock_gettime(CLOCK_MONOTONIC, &until);
    const long long total = until.tv_nsec + left->count();
    until.tv_sec += static_cast<time_t>(total / 1'000'000'000);
    until.tv_nsec = static_cast<long>(total % 1'000'000'000);
    return settle(mutex, pthread_mutex_clocklock(&mutex, CLOCK_MONOTONIC, &until),
                  "pthread_mutex_clocklock");
}

LockOutcome try_lock_robust(pthread_mutex_t& mutex) {
    return settle(mutex, pthread_mutex_trylock(&mutex), "pthread_mutex_trylock");
}

void unlock_robust(pthread_mutex_t& mutex) noexcept {
    // EPERM (not the holder) is the only error, and a caller's bug; nothing to undo here.
    pthread_mutex_unlock(&mutex);
}

}  // namespace mproc::detail
