#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

#include "mproc/errors.hpp"

namespace mproc {

namespace detail {

// What an AsyncResult waits on: filled once, by the pool's collector, with a value or an error.
template <class T>
class ResultState {
  public:
    using Stored = std::conditional_t<std::is_void_v<T>, bool, T>;

    // watch_first: whether a waiter watches for the result a little before it sleeps (see
    // wait); worth it for one call, whose result may come within microseconds.
    explicit ResultState(bool watch_first = true) noexcept : watch_first_(watch_first) {}

    template <class... V>
    void set_value(V&&... value) {
        {
            std::lock_guard lock(mutex_);
            if (ready_) return;
            value_.emplace(std::forward<V>(value)...);
            ready_ = true;
            settled_.store(true, std::memory_order_release);
        }
        ready_cv_.notify_all();
    }
    void set_error(std::exception_ptr error) {
        {
            std::lock_guard lock(mutex_);
            if (ready_) return;
            error_ = std::move(error);
            ready_ = true;
            settled_.store(true, std::memory_order_release);
        }
        ready_cv_.notify_all();
    }
    // Settles the result with CancelledError, unless it is ready; true when it did. The value
    // or error that comes later is dropped.
    bool cancel() {
        {
            std::lock_guard lock(mutex_);
            if (ready_) return false;
            error_ = std::make_exception_ptr(
                CancelledError("mproc: the task was cancelled before it finished"));
            ready_ = true;
            cancelled_.store(true, std::memory_order_release);
            settled_.store(true, std::memory_order_release);
        }
        ready_cv_.notify_all();
        return true;
    }
    // Whether cancel() settled it; readable from any thread (the pool's collector asks).
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

    void wait() {
        // A quick task's result often comes within microseconds: watching for it a little
        // first spares the waiter a sleep and the collector a wake-up. The watcher yields as it
        // watches, since the collector thread that brings the result may be waiting for this
        // very CPU. Not for a map: its result comes after all of its tasks, and a CPU kept
        // busy while the pool wakes the workers makes the kernel put two of them on one CPU
        // now and then (docs/PERFORMANCE.md, primes_speedup).
        constexpr auto watch_for = std::chrono::microseconds(30);
        const auto until = std::chrono::steady_clock::now() + watch_for;
        while (watch_first_ && !settled_.load(std::memory_order_acquire) &&
               std::chrono::steady_clock::now() < until) {
            std::this_thread::yield();
        }
        std::unique_lock lock(mutex_);
        ready_cv_.wait(lock, [&] { return ready_; });
    }
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        // A timeout too long to add to the clock (hours::max(), say) means no deadline.
        using Clock = std::chrono::steady_clock;
        const auto now = Clock::now();
        if (std::chrono::duration<double>(timeout) >=
            std::chrono::duration<double>(Clock::time_point::max() - now)) {
            wait();
            return true;
        }
        std::unique_lock lock(mutex_);
        return ready_cv_.wait_until(lock, now + std::chrono::ceil<Clock::duration>(timeout),
                                    [&] { return ready_; });
    }
    bool ready() const {
        std::lock_guard lock(mutex_);
        return ready_;
    }
    bool successful() const {
        std::lock_guard lock(mutex_);
        if (!ready_) throw StateError("mproc: successful() asked of a result that is not ready");
        return !error_;
    }
    // Moves the value out, or rethrows the error; the state must be ready.
    T take() {
        std::lock_guard lock(mutex_);
        if (error_) std::rethrow_exception(error_);
        if (!value_) throw StateError("mproc: the value of this result was already taken by get()");
        if constexpr (!std::is_void_v<T>) {
            T value = std::move(*value_);
            value_.reset();
            return value;
        }
    }

  private:
    mutable std::mutex mutex_;
    std::condition_variable ready_cv_;
    bool ready_ = false;
    std::atomic<bool> settled_{false};  // ready_, readable without the lock
    std::atomic<bool> cancelled_{false};
    const bool watch_first_;
    std::optional<Stored> value_;
    std::exception_ptr error_;
};

// What stops the tasks of a cancelled result: the pool that runs them. Told after the result
// was settled as cancelled, it looks for that result's tasks, drops those not started and
// kills the workers running one.
class CancelListener {
  public:
    virtual void tasks_cancelled() noexcept = 0;

  protected:
    ~CancelListener() = default;
};

}  // namespace detail

// The result of a task submitted with apply_async, map_async or starmap_async: ready once the
// pool has its value or its error. Copies refer to the same result.
template <class T>
class AsyncResult {
  public:
    explicit AsyncResult(std::shared_ptr<detail::ResultState<T>> state,
                         std::weak_ptr<detail::CancelListener> pool = {}) noexcept
        : state_(std::move(state)), pool_(std::move(pool)) {}

    // Waits for the result and returns its value, or rethrows the task's error: RemoteError,
    // WorkerLost, TimeoutError (task_timeout), StateError (the pool was terminated). The value
    // is moved out: a second get() of a value throws StateError; an error is rethrown each time.
    T get() {
        state_->wait();
        return state_->take();
    }
    // The same, throwing TimeoutError when the result is not ready within timeout.
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        if (!state_->wait_for(timeout)) {
            throw TimeoutError("mproc: AsyncResult::get timed out before the result was ready");
        }
        return state_->take();
    }
    void wait() { state_->wait(); }
    // True when the result became ready within timeout.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) {
        return state_->wait_for(timeout);
    }
    bool ready() const { return state_->ready(); }
    // True when the task ended without an error; StateError if it is not ready yet.
    bool successful() const { return state_->successful(); }
    // Cancels the task (for map_async and starmap_async: every task of the map) unless its
    // result is ready: get() then throws CancelledError, and true is returned. A task not yet
    // started never starts; a running one is stopped by killing its worker, which is replaced,
    // and no other task is touched. (Calls of numbers that apply_async sent to a worker
    // together with other calls, in one piece, may still run: their results are dropped.)
    // False, doing nothing, when the result was already ready.
    bool cancel() {
        if (!state_->cancel()) return false;
        if (auto pool = pool_.lock()) pool->tasks_cancelled();
        return true;
    }

  private:
    std::shared_ptr<detail::ResultState<T>> state_;
    std::weak_ptr<detail::CancelListener> pool_;
};

}  // namespace mproc
