#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

// A user's timeout as the core takes it; one too long to count in nanoseconds waits for ever.
template <class Rep, class Period>
std::optional<std::chrono::nanoseconds> to_timeout(std::chrono::duration<Rep, Period> timeout) {
    using Limit = std::chrono::duration<double, std::nano>;
    if (Limit(timeout) >= Limit(std::chrono::nanoseconds::max())) return std::nullopt;
    if (timeout < timeout.zero()) return std::chrono::nanoseconds(0);
    return std::chrono::ceil<std::chrono::nanoseconds>(timeout);
}

// Tests only: called in a process that slept on a queue each time a wake-up reaches it, before
// it takes a lock again, so that a test can end the process there. Null outside tests, which
// costs a load after each sleep.
extern void (*queue_sleeper_woken_hook)() noexcept;

// The bytes of a queue, shared by every process that holds it: a fixed header (a robust
// process-shared mutex for putters and one for getters, positions, counters, futex words) and a
// ring of length-prefixed items that grows to fit whatever is put. Items are in shared memory
// once put, so a process that dies after a put loses nothing, and one that dies holding either
// lock leaves the queue usable.
//
// A timeout of nullopt waits for ever; zero does not wait.
class QueueCore {
  public:
    using Timeout = std::optional<std::chrono::nanoseconds>;

    // maxsize 0: unbounded.
    static std::shared_ptr<QueueCore> create(std::size_t maxsize);
    // Maps the queue whose descriptors arrived with a frame; SerializationError if they are not
    // a queue's.
    static std::shared_ptr<QueueCore> adopt(UniqueFd header, UniqueFd ring);
    ~QueueCore();
    QueueCore(const QueueCore&) = delete;
    QueueCore& operator=(const QueueCore&) = delete;

    // Appends one item; false if the queue stayed full until the timeout. StateError once the
    // queue is closed.
    bool put(std::span<const std::byte> item, Timeout timeout);
    // Takes the oldest item into out (replacing what it held, reusing its memory); false if
    // the queue stayed empty until the timeout. StateError once the queue is closed and empty.
    bool get(Timeout timeout, std::vector<std::byte>& out);
    std::size_t size() const;
    std::size_t maxsize() const noexcept;
    // Refuses further puts and wakes every waiting getter and putter. Items already in the
    // queue can still be taken.
    void close();
    bool closed() const;

    // JoinableQueue: a put counts one unfinished task, task_done ends one; join waits for none.
    void task_done();
    bool join(Timeout timeout);

    const UniqueFd& header_fd() const noexcept;
    const UniqueFd& ring_fd() const noexcept;

    struct Impl;  // defined in src/queue/queue_core.cpp

  private:
    explicit QueueCore(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::detail
