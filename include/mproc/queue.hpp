#pragma once

// Queue and JoinableQueue: first-in first-out queues that any number of processes put into and
// get from, as Python's multiprocessing.Queue and JoinableQueue.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/detail/queue_core.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"

namespace mproc {

// A queue of T, in memory shared by every process that holds it. A copy of a Queue is a handle
// to the same queue; a child gets it by inheritance (made before the Process or Pool) or as an
// argument of a Process, of mproc::bind or of a pool task. Every item is put whole and taken
// exactly once, whatever its size.
//
// An item is copied into the queue when it is put: a process that dies afterwards loses
// nothing it put, and one that dies in the middle of a put or a get, holding one of the queue's
// two locks, leaves the queue working for the others. One killed just as a get or put woke it
// delays the others waiting beside the room or item it leaves by at most 100 ms. A T that holds
// a handle (SharedArray, Queue) cannot be put: pass handles as task or Process arguments.
template <class T>
class Queue {
  public:
    // An unbounded queue.
    Queue() : core_(detail::QueueCore::create(0)) {}
    // A queue of at most maxsize items (0: unbounded); put waits while it is full.
    explicit Queue(std::size_t maxsize) : core_(detail::QueueCore::create(maxsize)) {}

    // Appends v, waiting while the queue is full. StateError once the queue is closed;
    // SerializationError if v cannot be encoded.
    void put(const T& value) { put_item(value, std::nullopt); }
    // The same, waiting at most timeout for room: Full past it.
    template <class Rep, class Period>
    void put(const T& value, std::chrono::duration<Rep, Period> timeout) {
        if (!put_item(value, detail::to_timeout(timeout))) {
            throw Full("mproc: Queue::put found the queue full until its timeout");
        }
    }
    // Appends v if there is room now; never waits.
    bool try_put(const T& value) { return put_item(value, std::chrono::nanoseconds(0)); }

    // Takes the oldest item, waiting while the queue is empty. StateError once the queue is
    // closed and empty; SerializationError if the item does not decode as a T.
    T get() {
        core_->get(std::nullopt, buffer());
        return decoded();
    }
    // The same, waiting at most timeout: Empty past it.
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        if (!core_->get(detail::to_timeout(timeout), buffer())) {
            throw Empty("mproc: Queue::get found the queue empty until its timeout");
        }
        return decoded();
    }
    // The oldest item if there is one now; never waits.
    std::optional<T> try_get() {
        if (!core_->get(std::chrono::nanoseconds(0), buffer())) return std::nullopt;
        return decoded();
    }

    // Items in the queue now; another process may change it at once.
    std::size_t qsize() const { return core_->size(); }
    bool empty() const { return qsize() == 0; }
    bool full() const { return maxsize() != 0 && qsize() >= maxsize(); }
    std::size_t maxsize() const noexcept { return core_->maxsize(); }
    // Refuses further puts (StateError) and wakes every waiting getter and putter; getters take
    // the items left, then get StateError. Closes the queue for every process that holds it.
    void close() { core_->close(); }

    template <class Archive>
    void save(Archive& archive) const {
        auto& outbox = detail::require_fd_outbox("Queue");
        archive(outbox.add(core_->header_fd()), outbox.add(core_->ring_fd()));
    }
    template <class Archive>
    void load(Archive& archive) {
        auto& inbox = detail::require_fd_inbox("Queue");
        std::uint32_t header = 0;
        std::uint32_t ring = 0;
        archive(header, ring);
        core_ = detail::QueueCore::adopt(inbox.take(header), inbox.take(ring));
    }

  protected:
    std::shared_ptr<detail::QueueCore> core_;

  private:
    // An item's bytes on their way in or out, in a buffer each thread reuses, so that a put or
    // a get allocates nothing once the buffer has grown to the items' size.
    static std::vector<std::byte>& buffer() {
        thread_local std::vector<std::byte> bytes;
        return bytes;
    }
    // A buffer that held a large item gives its memory back.
    static void trim_buffer() {
        constexpr std::size_t keep_bytes = 64 * 1024;
        if (buffer().capacity() > keep_bytes) std::vector<std::byte>().swap(buffer());
    }
    bool put_item(const T& value, detail::QueueCore::Timeout timeout) {
        auto& bytes = buffer();
        bytes.clear();
        detail::encode(bytes, value);
        const bool put = core_->put(bytes, timeout);
        trim_buffer();
        return put;
    }
    // The item that get() left in buffer().
    static T decoded() {
        T value{};
        detail::decode(std::span<const std::byte>(buffer()), value);
        trim_buffer();
        return value;
    }
};

// A Queue that also counts unfinished tasks: each put adds one, task_done() ends one, and
// join() waits until none is left, as in Python.
template <class T>
class JoinableQueue : public Queue<T> {
  public:
    using Queue<T>::Queue;

    // Ends one task taken from the queue. StateError when called more often than items were put.
    void task_done() { this->core_->task_done(); }
    // Waits until every item put has had its task_done().
    void join() { this->core_->join(std::nullopt); }
    // The same, waiting at most timeout; false if tasks are still unfinished then.
    template <class Rep, class Period>
    bool join(std::chrono::duration<Rep, Period> timeout) {
        return this->core_->join(detail::to_timeout(timeout));
    }
};

}  // namespace mproc
