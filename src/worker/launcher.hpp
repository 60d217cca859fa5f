#pragma once

#include <sys/types.h>
#include <cstdint>
#include <optional>

#include <memory>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/shared_region.hpp"
#include "mproc/detail/worker_status.hpp"
#include "mproc/start_method.hpp"
#include "os/process.hpp"

namespace mproc::detail {

// The process that starts a pool's workers, one per pool. Under fork it is forked when the
// pool is made, while the pool has no thread of its own yet, and every worker is a fork of it:
// a worker never inherits a lock that one of the pool's threads held, and every worker starts
// from the same state. Under spawn it is forked the same way but runs each worker as a fresh
// run of the program. Under forkserver it is itself a fresh run of the program (clean: no
// thread, no lock, no state of the user's), and forks every worker. Its children's deaths reach
// the pool as events with their exit statuses. It ends when told to, or when the pool's
// process dies.
class WorkerLauncher {
  public:
    struct Event {
        enum class Kind : std::uint32_t { started = 1, exited = 2, gone = 3 };
        Kind kind;
        std::uint32_t slot = 0;
        pid_t pid = 0;
        ExitStatus status;  // for exited
        UniqueFd socket;    // for started: the pool's end of the worker's connection
    };

    // Starts the launcher. statuses holds one WorkerStatus per slot, shared with the workers;
    // initializer, if any, is the frame each new worker runs first.
    WorkerLauncher(StartMethod method, std::shared_ptr<SharedRegion> statuses,
                   const Frame* initializer);
    // Kills the workers and the launcher if it is still running, and reaps it.
    ~WorkerLauncher();
    WorkerLauncher(const WorkerLauncher&) = delete;
    WorkerLauncher& operator=(const WorkerLauncher&) = delete;

    int poll_fd() const noexcept { return control_.get(); }
    // Asks for a worker in slot; its `started` event follows.
    void launch(std::uint32_t slot);
    // Asks the launcher to exit once its workers have all exited.
    void shutdown();
    // Asks the launcher to kill every worker now, then exit.
    void kill_all();
    // The next event, or nullopt when none is waiting. After `gone`, there are no more.
    std::optional<Event> next_event();
    // Whether next_event() has said `gone`: the launcher has exited, and the requests above do
    // nothing.
    bool gone() const noexcept { return gone_; }
    // Waits for the launcher process to end, reaps it, and tells how it ended.
    ExitStatus reap();

  private:
    void request(std::uint32_t op, std::uint32_t slot);

    pid_t pid_ = 0;
    UniqueFd control_;
    bool reaped_ = false;
    bool gone_ = false;
    ExitStatus exit_;
};

// The launcher's life, in the process that serves as one; never returns, and never throws into
// the stack it was forked from.
[[noreturn]] void run_launcher(UniqueFd control, pid_t pool_process,
                               std::shared_ptr<SharedRegion> statuses, const Frame* initializer,
                               StartMethod workers_by) noexcept;

}  // namespace mproc::detail
