#pragma once

// The typed side of a submission. The pool's collector hands each job the result item of each
// of its tasks, or a whole block of results (block_codec.hpp), in whatever order they finish;
// the job decodes them and tells whoever waits.

#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

#include "mproc/async_result.hpp"
#include "mproc/detail/block_codec.hpp"
#include "mproc/detail/task_codec.hpp"

namespace mproc::detail {

class Job {
  public:
    virtual ~Job() = default;
    // The result item of task `index`, on the collector thread, once per task.
    virtual void deliver(std::size_t index, std::span<const std::byte> item) = 0;
    // The payload of a result_block frame for tasks [first_task, first_task + tasks), on the
    // collector thread. Throws SerializationError, having delivered nothing, when the block is
    // malformed or the job's tasks do not return numbers.
    virtual void deliver_block(std::size_t first_task, std::uint32_t tasks,
                               std::span<const std::byte> payload) = 0;
    // The results of a claimed batch's tasks that one worker ran (claimed_from_board): the
    // block's task k is task first_task + tasks[k]. Only a map's tasks are claimed; other jobs
    // throw SerializationError, as deliver_block does when malformed.
    virtual void deliver_claimed(std::size_t first_task, std::span<const std::uint32_t> tasks,
                                 std::span<const std::byte> block);
    // The values of tasks that returned numbers, recorded by a worker in its ResultArea as they
    // ran (worker_status.hpp), read by the pool after that worker died: task first_task +
    // tasks[k] returned the R at values[tasks[k] * sizeof(R)]. Throws SerializationError,
    // having delivered nothing, when the job's tasks do not return numbers.
    virtual void deliver_recorded(std::size_t first_task, std::span<const std::uint32_t> tasks,
                                  std::span<const std::byte> values) = 0;
    // Task `index` failed without a result item: its worker died, it timed out, the pool ended.
    virtual void fail(std::size_t index, std::exception_ptr error) = 0;
    // Whether task `index` was cancelled: its result is settled already, so it need not run.
    // On the collector thread, while the caller may be cancelling.
    virtual bool cancelled(std::size_t) const noexcept { return false; }
    // Whether nobody looks at any of this job's results before all of them are in (a map, not
    // an imap): its tasks of chunk size 1 may then be claimed, and their results come back
    // only at the end of each worker's claim.
    virtual bool wants_results_together() const noexcept { return false; }
};

inline void Job::deliver_claimed(std::size_t, std::span<const std::uint32_t>,
                                 std::span<const std::byte>) {
    throw SerializationError(
        "mproc: results of claimed tasks came for a job whose tasks are not claimed");
}

// One task's value, or its error.
template <class R>
struct Outcome {
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
    std::exception_ptr error;

    static Outcome decoded(std::span<const std::byte> item) {
        Outcome outcome;
        try {
            if constexpr (std::is_void_v<R>) {
                decode_result<void>(item);
                outcome.value.emplace(true);
            } else {
                outcome.value.emplace(decode_result<R>(item));
            }
        } catch (...) {
            outcome.error = std::current_exception();
        }
        return outcome;
    }
    static Outcome failed(std::exception_ptr error) {
        return Outcome{std::nullopt, std::move(error)};
    }

    R take() {
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<R>) return std::move(*value);
    }
};

template <class R>
using map_result_t = std::conditional_t<std::is_void_v<R>, void, std::vector<R>>;

[[noreturn]] inline void refuse_result_block() {
    throw SerializationError("mproc: a block of results came for tasks that return no number");
}

// Calls on_value(index, value) or on_error(index, error) for each task of a block of results.
template <class R, class OnValue, class OnError>
void for_each_block_result(std::size_t first_task, std::uint32_t tasks,
                           std::span<const std::byte> payload, OnValue on_value, OnError on_error) {
    if constexpr (wire_detail::is_block_copyable<R>) {
        ResultBlock<R>(tasks, payload)
            .for_each([&](std::uint32_t task, R value) { on_value(first_task + task, value); },
                      [&](std::uint32_t task, std::exception_ptr error) {
                          on_error(first_task + task, std::move(error));
                      });
    } else {
        refuse_result_block();
    }
}

// Calls on_value(index, value) for each task whose value a worker recorded (Job::deliver_recorded).
template <class R, class OnValue>
void for_each_recorded(std::size_t first_task, std::span<const std::uint32_t> tasks,
                       std::span<const std::byte> values, OnValue on_value) {
    if constexpr (wire_detail::is_block_copyable<R>) {
        for (std::uint32_t task : tasks) {
            if ((std::size_t{task} + 1) * sizeof(R) > values.size()) {
                throw SerializationError("mproc: a recorded result lies outside its area");
            }
        }
        for (std::uint32_t task : tasks) {
            R value;
            std::memcpy(&value, values.data() + std::size_t{task} * sizeof(R), sizeof value);
            on_value(first_task + task, value);
        }
    } else {
        refuse_result_block();
    }
}

// map, starmap and their async forms: all results in input order, or the error of the first
// task (by position) that failed, once every task has ended. Values are decoded straight into
// the vector the caller gets, with no per-task wrapper to build and copy.
template <class R>
class MapJob final : public Job {
  public:
    using State = ResultState<map_result_t<R>>;

    MapJob(std::size_t tasks, std::shared_ptr<State> state)
        : remaining_(tasks), state_(std::move(state)) {
        if constexpr (!std::is_void_v<R>) values_.resize(tasks);
        if (tasks == 0) complete();
    }
    void deliver(std::size_t index, std::span<const std::byte> item) override {
        try {
            if constexpr (std::is_void_v<R>) {
                decode_result<void>(item);
            } else {
                values_[index] = decode_result<R>(item);
            }
        } catch (...) {
            return fail(index, std::current_exception());
        }
        settle();
    }
    void deliver_block(std::size_t first_task, std::uint32_t tasks,
                       std::span<const std::byte> payload) override {
        if constexpr (wire_detail::is_block_copyable<R>) {
            const ResultBlock<R> block(tasks, payload);
            // The block is the values' own bytes: one copy for the chunk. A failed task's value
            // is zero, as a value-initialised R.
            std::memcpy(values_.data() + first_task, block.values().data(), block.values().size());
            remaining_ -= tasks - block.failures();
            if (block.failures() == 0) {
                if (remaining_ == 0) complete();
                return;
            }
            block.for_each([](std::uint32_t, R) {},
                           [&](std::uint32_t task, std::exception_ptr error) {
                               fail(first_task + task, std::move(error));
                           });
        } else {
            refuse_result_block();
        }
    }
    bool wants_results_together() const noexcept override { return true; }
    void deliver_claimed(std::size_t first_task, std::span<const std::uint32_t> tasks,
                         std::span<const std::byte> block) override {
        const auto count = static_cast<std::uint32_t>(tasks.size());
        for_each_block_result<R>(
            0, count, block,
            [&](std::size_t k, auto value) {
                if constexpr (!std::is_void_v<R>) values_[first_task + tasks[k]] = value;
                settle();
            },
            [&](std::size_t k, std::exception_ptr error) {
                fail(first_task + tasks[k], std::move(error));
            });
    }
    void deliver_recorded(std::size_t first_task, std::span<const std::uint32_t> tasks,
                          std::span<const std::byte> values) override {
        for_each_recorded<R>(first_task, tasks, values, [&](std::size_t index, auto value) {
            if constexpr (!std::is_void_v<R>) values_[index] = value;
            settle();
        });
    }
    void fail(std::size_t index, std::exception_ptr error) override {
        if (!first_error_ || index < first_error_index_) {
            first_error_ = std::move(error);
            first_error_index_ = index;
        }
        settle();
    }
    bool cancelled(std::size_t) const noexcept override { return state_->cancelled(); }

  private:
    void settle() {
        if (--remaining_ == 0) complete();
    }
    void complete() {
        if (first_error_) return state_->set_error(first_error_);
        if constexpr (std::is_void_v<R>) {
            state_->set_value(true);
        } else {
            state_->set_value(std::move(values_));
        }
    }

    std::conditional_t<std::is_void_v<R>, std::monostate, std::vector<R>> values_;
    std::size_t remaining_;
    std::exception_ptr first_error_;
    std::size_t first_error_index_ = 0;
    std::shared_ptr<State> state_;
};

// apply_async: one task, and the result that the caller waits on.
template <class R>
class SingleJob final : public Job {
  public:
    ResultState<R>& state() noexcept { return state_; }
    void deliver(std::size_t, std::span<const std::byte> item) override {
        auto outcome = Outcome<R>::decoded(item);
        if (outcome.error) return state_.set_error(outcome.error);
        if constexpr (std::is_void_v<R>) {
            state_.set_value(true);
        } else {
            state_.set_value(std::move(*outcome.value));
        }
    }
    void deliver_block(std::size_t first_task, std::uint32_t tasks,
                       std::span<const std::byte> payload) override {
        for_each_block_result<R>(
            first_task, tasks, payload, [&](std::size_t, auto value) { state_.set_value(value); },
            [&](std::size_t, std::exception_ptr error) { state_.set_error(std::move(error)); });
    }
    void deliver_recorded(std::size_t first_task, std::span<const std::uint32_t> tasks,
                          std::span<const std::byte> values) override {
        for_each_recorded<R>(first_task, tasks, values,
                             [&](std::size_t, auto value) { state_.set_value(value); });
    }
    void fail(std::size_t, std::exception_ptr error) override {
        state_.set_error(std::move(error));
    }
    bool cancelled(std::size_t) const noexcept override { return state_.cancelled(); }

  private:
    ResultState<R> state_;
};

// apply_async of calls of numbers, gathered into one chunk while the collector was busy
// (PoolCore::add_to_batch): task i is call i, with a result of its own. The results live in the
// job, so that a call costs no allocation of its own.
template <class R>
class ApplyBatchJob final : public Job {
  public:
    // The result of one more call. Under the pool's lock, before the collector takes the chunk:
    // no task of it is delivered before the last call is added.
    std::shared_ptr<ResultState<R>> add_call(const std::shared_ptr<Job>& self) {
        return std::shared_ptr<ResultState<R>>(self, &results_.emplace_back());
    }

    void deliver(std::size_t index, std::span<const std::byte> item) override {
        auto outcome = Outcome<R>::decoded(item);
        if (outcome.error) return results_[index].set_error(outcome.error);
        results_[index].set_value(std::move(*outcome.value));
    }
    void deliver_block(std::size_t first_task, std::uint32_t tasks,
                       std::span<const std::byte> payload) override {
        for_each_block_result<R>(
            first_task, tasks, payload,
            [&](std::size_t index, auto value) { results_[index].set_value(value); },
            [&](std::size_t index, std::exception_ptr error) {
                results_[index].set_error(std::move(error));
            });
    }
    void deliver_recorded(std::size_t first_task, std::span<const std::uint32_t> tasks,
                          std::span<const std::byte> values) override {
        for_each_recorded<R>(first_task, tasks, values, [&](std::size_t index, auto value) {
            results_[index].set_value(value);
        });
    }
    void fail(std::size_t index, std::exception_ptr error) override {
        results_[index].set_error(std::move(error));
    }
    // The collector asks only of a batch it has taken, to which no call is added any more.
    bool cancelled(std::size_t index) const noexcept override {
        return results_[index].cancelled();
    }

  private:
    std::deque<ResultState<R>> results_;  // a deque: results stay where they are as it grows
};

// A job whose reader may leave before its last result (an imap range destroyed early), told
// by the range's input feed, which knows nothing of R: its tasks then count as cancelled.
class AbandonableJob : public Job {
  public:
    void abandon() noexcept { abandoned_.store(true, std::memory_order_release); }
    bool cancelled(std::size_t) const noexcept override { return abandoned(); }

  protected:
    bool abandoned() const noexcept { return abandoned_.load(std::memory_order_acquire); }

  private:
    std::atomic<bool> abandoned_{false};
};

// imap and imap_unordered: each result is handed to the reader as soon as it may be read, in
// input order or in the order tasks finish. The job holds only the outcomes not read yet, which
// the reader's window bounds (ImapRange), whatever the number of tasks: an imap may have no end.
template <class R>
class StreamJob final : public AbandonableJob {
  public:
    explicit StreamJob(bool ordered) : ordered_(ordered) {}

    void deliver(std::size_t index, std::span<const std::byte> item) override {
        auto outcome = Outcome<R>::decoded(item);
        {
            std::lock_guard lock(mutex_);
            settle(index, std::move(outcome));
        }
        arrived_cv_.notify_all();
    }
    void deliver_block(std::size_t first_task, std::uint32_t tasks,
                       std::span<const std::byte> payload) override {
        {
            // One lock and one wake-up for the block: its tasks are many and quick.
            std::lock_guard lock(mutex_);
            for_each_block_result<R>(
                first_task, tasks, payload,
                [&](std::size_t index, auto value) {
                    settle(index, Outcome<R>{value, nullptr});
                },
                [&](std::size_t index, std::exception_ptr error) {
                    settle(index, Outcome<R>::failed(std::move(error)));
                });
        }
        arrived_cv_.notify_all();
    }
    void deliver_recorded(std::size_t first_task, std::span<const std::uint32_t> tasks,
                          std::span<const std::byte> values) override {
        {
            std::lock_guard lock(mutex_);
            for_each_recorded<R>(first_task, tasks, values, [&](std::size_t index, auto value) {
                settle(index, Outcome<R>{value, nullptr});
            });
        }
        arrived_cv_.notify_all();
    }
    void fail(std::size_t index, std::exception_ptr error) override {
        {
            std::lock_guard lock(mutex_);
            settle(index, Outcome<R>::failed(std::move(error)));
        }
        arrived_cv_.notify_all();
    }

    // The next outcome to read: that of the first task not read yet when ordered, else the
    // oldest finished one. Waits until it is there; the reader asks only for tasks submitted.
    Outcome<R> next() {
        std::unique_lock lock(mutex_);
        if (ordered_) {
            arrived_cv_.wait(lock, [&] { return !unread_.empty() && unread_.front().has_value(); });
            Outcome<R> outcome = std::move(*unread_.front());
            unread_.pop_front();
            ++first_unread_;
            return outcome;
        }
        arrived_cv_.wait(lock, [&] { return !finished_.empty(); });
        Outcome<R> outcome = std::move(finished_.front());
        finished_.pop_front();
        return outcome;
    }

  private:
    // Under mutex_. Once the reader is gone, nobody will read the outcome.
    void settle(std::size_t index, Outcome<R> outcome) {
        if (abandoned()) return;
        if (!ordered_) return finished_.push_back(std::move(outcome));
        const std::size_t offset = index - first_unread_;
        if (offset >= unread_.size()) unread_.resize(offset + 1);
        unread_[offset].emplace(std::move(outcome));
    }

    std::mutex mutex_;
    std::condition_variable arrived_cv_;
    const bool ordered_;
    // Ordered: by task from first_unread_ on, the outcomes that came (the others empty).
    std::deque<std::optional<Outcome<R>>> unread_;
    std::size_t first_unread_ = 0;
    // Unordered: in the order they came.
    std::deque<Outcome<R>> finished_;
};

}  // namespace mproc::detail
