#pragma once

// Processes: fork, the death signal that ties a child to its parent, pidfds, exit statuses.

#include <sys/types.h>
#include <chrono>
#include <optional>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

// Forks. In the parent, returns the child's pid; in the child, 0, after the child has arranged
// to be killed when the parent dies (PR_SET_PDEATHSIG, then a check that the parent did not die
// before that). Flushes stdio first so that buffered output is not printed twice.
pid_t fork_child();

// A pidfd for pid, or an empty UniqueFd when the process is already gone.
UniqueFd open_pidfd(pid_t pid);
// Sends sig through a pidfd; no effect when the process has already ended.
void signal_pidfd(const UniqueFd& pidfd, int sig) noexcept;
// Waits until the process behind a pidfd ends, for at most timeout (forever when nullopt).
// True when it has ended.
bool wait_pidfd(const UniqueFd& pidfd, std::optional<std::chrono::milliseconds> timeout);

// How a process ended, as Python reports it: the exit code, or -N for signal N.
struct ExitStatus {
    int exit_code = 0;  // meaningful when signal == 0
    int signal = 0;
    int python_exitcode() const noexcept { return signal != 0 ? -signal : exit_code; }
};
ExitStatus decode_wait_status(int status) noexcept;
// Reaps a child. With wait false, returns nullopt if it is still running.
std::optional<ExitStatus> reap(pid_t pid, bool wait);

// Sets the calling process's name as ps and top show it (at most 15 bytes).
void set_process_title(const char* title) noexcept;

}  // namespace mproc::detail
