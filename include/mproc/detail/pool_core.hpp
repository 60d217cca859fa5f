#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "mproc/async_result.hpp"
#include "mproc/detail/frame.hpp"

namespace mproc {
struct PoolOptions;
}

namespace mproc::detail {

class Job;

// The compiled part of a Pool: its workers, their launcher, and the collector thread that
// sends chunks, gathers results and replaces workers that die. Thread-safe.
class PoolCore final : public CancelListener {
  public:
    explicit PoolCore(const PoolOptions& options);
    // Terminates the pool if it is still running.
    ~PoolCore();
    PoolCore(const PoolCore&) = delete;
    PoolCore& operator=(const PoolCore&) = delete;

    std::size_t processes() const noexcept;
    // Queues task frames of one job, moved from `frames`; their tasks are the job's tasks in
    // order, from task first_task on. With `batch`, the frames are task_block frames whose
    // tasks are each a unit of their own (chunksize 1): the pool cuts them into pieces as
    // it sends them, by the pace of the worker each piece goes to. StateError after close()
    // or terminate(), but for an open lazy input (from_lazy_input): see open_lazy_input.
    void submit(const std::shared_ptr<Job>& job, std::span<Frame> frames,
                std::size_t first_task = 0, bool batch = false, bool from_lazy_input = false);
    // An imap's input, read as its consumer reads the results, opens here for as long as it
    // has inputs left to submit: after close(), it may still submit (from_lazy_input), and the
    // workers stay up for it, until join() or terminate() begins; its submissions then throw
    // StateError, and the pool waits for it no more. StateError after close() or terminate().
    void open_lazy_input();
    // The lazy input has ended, or its consumer is gone.
    void end_lazy_input() noexcept;
    // apply_async's calls of numbers, gathered into batches: the calls made while the
    // collector was busy travel as one chunk, at the cost of one record each. Adds `record` as
    // one more task of the last chunk submitted, when that is a batch of the same entry and
    // function that the collector has not taken yet, and calls add_task with the batch's job,
    // under the pool's lock. False, having done nothing, when there is no such batch: the
    // caller then starts one with submit_batch. StateError after close() or terminate().
    bool add_to_batch(std::uint64_t entry, std::uint64_t function,
                      std::span<const std::byte> record,
                      const std::function<void(const std::shared_ptr<Job>&)>& add_task);
    // Queues a task_block frame as a batch that add_to_batch may add to.
    void submit_batch(const std::shared_ptr<Job>& job, Frame frame);
    void close();
    void join();
    void terminate();
    // A result of this pool's was cancelled: the collector drops, skips or kills its tasks.
    void tasks_cancelled() noexcept override;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::detail
