#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "mproc/detail/frame.hpp"

namespace mproc {
struct PoolOptions;
}

namespace mproc::detail {

class Job;

// The compiled part of a Pool: its workers, their launcher, and the collector thread that
// sends chunks, gathers results and replaces workers that die. Thread-safe.
class PoolCore {
  public:
    explicit PoolCore(const PoolOptions& options);
    // Terminates the pool if it is still running.
    ~PoolCore();
    PoolCore(const PoolCore&) = delete;
    PoolCore& operator=(const PoolCore&) = delete;

    std::size_t processes() const noexcept;
    // Queues task frames of one job; their items are the job's tasks in order, from task
    // first_task on. StateError after close() or terminate().
    void submit(std::shared_ptr<Job> job, std::vector<Frame> frames, std::size_t first_task = 0);
    void close();
    void join();
    void terminate();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::detail
