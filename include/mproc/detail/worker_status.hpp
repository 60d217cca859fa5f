#pragma once

#include <atomic>
#include <cstdint>

namespace mproc::detail {

// What a worker is running, in memory it shares with its pool. The worker writes it before
// each task without a system call; the pool reads it to enforce task_timeout and, when the
// worker dies, to tell which task it held.
struct WorkerStatus {
    std::atomic<std::uint64_t> sequence{0};   // the chunk being run
    std::atomic<std::uint32_t> item{0};       // the task within it
    std::atomic<std::uint32_t> running{0};    // 1 between the start and the end of a task
    std::atomic<std::int64_t> started_ns{0};  // steady_clock time when the task started
    // Set by the pool when it has a task_timeout: only then is started_ns kept, since reading
    // the clock costs more than a tiny task.
    std::atomic<std::uint32_t> timed{0};
    // 1 once the worker is running and about to serve (before its initializer), 0 while it is
    // being started: the Pool's constructor waits on it (a futex word), so that the start of
    // the workers is not paid for by the first map.
    std::atomic<std::uint32_t> serving{0};
};

}  // namespace mproc::detail
