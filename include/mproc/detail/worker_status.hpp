#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mproc::detail {

// The tasks of a block chunk (or of a claimed batch) whose values a worker records in its
// ResultArea: a default chunk or a batch at most (max_default_chunk); and how large a value.
inline constexpr std::uint32_t recorded_tasks = 4096;
inline constexpr std::size_t recorded_value_bytes = 16;

// The values of the tasks of numbers of one chunk (or claim) a worker ran, in memory its pool
// reads even after the worker died: a worker's death costs the task it was running, not the
// results it had yet to send (a claim's, held until its board is empty; a chunk's, sent when it
// ends, or held back a little longer to leave with the next ones). The worker writes each value
// here rather than into its result frame, which it fills from here when the chunk ends
// (ResultWriter), so recording costs no store a task. At the start of a chunk it clears
// `sequence`, the chunk's `done` bytes, then sets `sequence` (release); a value is written,
// then its `done` byte set (release). It is never initialised: it lies in a fresh memfd, whose
// zeros record nothing, and a pool that never records touches none of its pages.
struct ResultArea {
    // The chunk recorded; 0 while it is reset. Through std::atomic_ref: a std::atomic would be
    // initialised, touching each area's page when the pool is made.
    std::uint64_t sequence;
    std::uint8_t done[recorded_tasks];  // 1 once the task's value is in `values`
    alignas(16) std::byte values[recorded_tasks * recorded_value_bytes];  // at sizeof(R) each
};

// A worker records a chunk in the first of these areas that no held-back chunk uses: the chunk
// it runs, and each of those whose results it holds back to leave together (at most 31,
// worker_loop.cpp's ResultBatcher), keep theirs; a worker that sends its results as they come
// uses the first alone.
inline constexpr std::size_t recorded_chunks = 33;

// Chunks sent to a worker that the pool cancelled before they began: the worker skips them
// and answers with a `skipped` frame. The pool writes a sequence into a free entry and then
// counts it, and frees the entry when the chunk's answer comes.
inline constexpr std::size_t max_skipped_chunks = 16;

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
    // The pool's limit on a frame (PoolOptions::max_value_bytes, resolved), set before the
    // worker starts: a spawned worker learns it here, since its own default may differ.
    std::uint64_t max_value_bytes = 0;
    // Set by the pool from max_memory_per_child (0: off): a worker whose resident memory is over
    // it after a chunk retires before its next one.
    std::atomic<std::uint64_t> memory_limit{0};
    std::atomic<std::uint32_t> skipped_count{0};
    std::atomic<std::uint64_t> skipped[max_skipped_chunks] = {};
    std::uint32_t result_area;  // the worker's own: the area its next chunk records in
    ResultArea results[recorded_chunks];
};

// Where a pool's workers take the tasks of a claimed batch from, themselves, a few at a time,
// as the threads of a thread pool take them from a shared counter: no round trip to the pool
// between tasks, and no task committed to a worker before it is free (PoolCore, Claim). One
// per pool, in the memory it shares with its workers.
struct alignas(64) ClaimBoard {
    // The batch open for claims, as its frames name it; 0 until the first.
    std::atomic<std::uint64_t> generation{0};
    // The batch's first task not yet taken.
    std::atomic<std::uint32_t> next{0};
    // How many workers share the board (the pool's size), set once before any starts: a
    // worker takes at most a share of the tasks left, so that the last ones, which may be the
    // long ones, are spread over every worker.
    std::uint32_t workers = 1;
};

// The memory a pool shares with its workers: a WorkerStatus per slot, then the ClaimBoard on
// a cache line of its own, at the end, where a worker finds it from the size alone.
inline std::size_t pool_memory_bytes(std::size_t slots) noexcept {
    const std::size_t line = alignof(ClaimBoard);
    return (slots * sizeof(WorkerStatus) + line - 1) / line * line + sizeof(ClaimBoard);
}
inline ClaimBoard* claim_board_in(std::byte* memory, std::size_t bytes) noexcept {
    return reinterpret_cast<ClaimBoard*>(memory + bytes - sizeof(ClaimBoard));
}

}  // namespace mproc::detail
