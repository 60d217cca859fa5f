#pragma once

// A pthread mutex in memory shared between processes, robust: when its holder dies, the next
// process to lock it gets it, told that the previous holder died, instead of waiting forever.

#include <pthread.h>

#include "os/deadline.hpp"

namespace mproc::detail {

enum class LockOutcome {
    acquired,
    acquired_from_dead_owner,  // the previous holder died holding it; the data it guards may
                               // be half-updated
    timed_out,
};

// Initialises a mutex in shared memory; run once, by the process that creates the object.
void init_robust_mutex(pthread_mutex_t& mutex, bool recursive = false);
// Locks, waiting at most until the deadline (after a few microseconds of trying, whatever the
// deadline, before it sleeps). A mutex whose holder died is made consistent and handed over. Throws
// mproc::Error on errors other than these (EDEADLK: already held).
LockOutcome lock_robust(pthread_mutex_t& mutex, const Deadline& deadline = Deadline::never());
LockOutcome try_lock_robust(pthread_mutex_t& mutex);
void unlock_robust(pthread_mutex_t& mutex) noexcept;

// Holds a robust mutex for a scope.
class RobustLockGuard {
  public:
    explicit RobustLockGuard(pthread_mutex_t& mutex) : mutex_(mutex) { lock_robust(mutex_); }
    ~RobustLockGuard() { unlock_robust(mutex_); }
    RobustLockGuard(const RobustLockGuard&) = delete;
    RobustLockGuard& operator=(const RobustLockGuard&) = delete;

  private:
    pthread_mutex_t& mutex_;
};

}  // namespace mproc::detail
