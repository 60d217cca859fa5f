#pragma once

// Futexes on words in memory shared between processes: the wait and wake-up under every
// process-shared object (queues, events, semaphores, conditions, barriers). Waiting keeps no
// state in shared memory, so a process that dies while it waits leaves nothing behind.

#include <atomic>
#include <cstdint>

#include "os/deadline.hpp"

namespace mproc::detail {

// Sleeps while *word equals expected, until woken or the deadline. False when the deadline
// passed; true otherwise (woken, or the word had already changed; callers re-check).
bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline);
// Wakes up to count waiters on word (all of them by default).
void futex_wake(std::atomic<std::uint32_t>& word, int count = INT32_MAX) noexcept;

}  // namespace mproc::detail
