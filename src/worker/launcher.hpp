#pragma once

#include <cstdint>
#include <optional>
#include <sys/types.h>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/worker_status.hpp"
#include "os/process.hpp"

namespace mproc::detail {

// The process that starts a pool's workers. It is forked once, when the pool is made, while
// the pool has no thread of its own yet; every worker and every replacement is a fork of it.
// So a worker never inherits a lock that one of the pool's threads held, and every worker
// starts from the same state. Its children's deaths reach the pool as events with their
// exit statuses. It ends when told to, or when the pool's process dies.
class WorkerLauncher {
public:
    struct Event {
        enum class Kind : std::uint32_t { started = 1, exited = 2, gone = 3 };
        Kind kind;
        std::uint32_t slot = 0;
        pid_t pid = 0;
        ExitStatus status;   // for exited
        UniqueFd socket;     // for started: the pool's end of the worker's connection
    };

    // Forks the launcher. statuses points at one WorkerStatus per slot, in memory that the
    // workers share; initializer, if any, is the frame each new worker runs first.
    WorkerLauncher(WorkerStatus* statuses, const Frame* initializer);
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
    // Waits for the launcher process to end and reaps it.
    void reap();

private:
    void request(std::uint32_t op, std::uint32_t slot);

    pid_t pid_ = 0;
    UniqueFd control_;
    bool reaped_ = false;
};

}  // namespace mproc::detail
