#include "os/process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>

#include "os/system_error.hpp"

namespace mproc::detail {

pid_t fork_child() {
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw_system_error("fork");
    if (pid == 0) {
        // The death signal fires when the thread that forked us ends; checking the parent after
        // setting it closes the window in which the parent died first. A child that finds its
        // parent gone dies by the signal it would have had, so that whoever reaps it (a
        // subreaper) sees one way of dying whichever came first.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::raise(SIGKILL);
    }
    return pid;
}

UniqueFd open_pidfd(pid_t pid) {
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        if (errno == ESRCH) return {};
        throw_system_error("pidfd_open");
    }
    UniqueFd pidfd(static_cast<int>(fd));
    return pidfd;
}

void signal_pidfd(const UniqueFd& pidfd, int sig) noexcept {
    if (pidfd) ::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0);
}

bool wait_pidfd(const UniqueFd& pidfd, std::optional<std::chrono::milliseconds> timeout) {
    if (!pidfd) return true;
    using Clock = std::chrono::steady_clock;
    // A timeout too long to add to the clock waits forever: the same thing, for any program.
    const auto start = Clock::now();
    if (timeout && *timeout > std::chrono::duration_cast<std::chrono::milliseconds>(
                                  Clock::time_point::max() - start)) {
        timeout.reset();
    }
    const auto deadline = start + timeout.value_or(std::chrono::milliseconds(0));
    while (true) {
        int wait_ms = -1;
        if (timeout) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            wait_ms = static_cast<int>(std::clamp<long long>(left.count(), 0, INT_MAX));
        }
        pollfd entry{pidfd.get(), POLLIN, 0};
        const int ready = ::poll(&entry, 1, wait_ms);
        if (ready > 0) return true;
        if (ready == 0 && (!timeout || Clock::now() >= deadline)) return false;
        if (ready < 0 && errno != EINTR) throw_system_error("poll");
    }
}

ExitStatus decode_wait_status(int status) noexcept {
    if (WIFSIGNALED(status)) return ExitStatus{0, WTERMSIG(status)};
    return ExitStatus{WEXITSTATUS(status), 0};
}

std::optional<ExitStatus> reap(pid_t pid, bool wait) {
    int status = 0;
    pid_t result;
    do {
        result = ::waitpid(pid, &status, wait ? 0 : WNOHANG);
    } while (result < 0 && errno == EINTR);
    if (result < 0) throw_system_error("waitpid");
    if (result == 0) return std::nullopt;
    return decode_wait_status(status);
}

void set_process_title(const char* title) noexcept {
    ::prctl(PR_SET_NAME, title);
}

}  // namespace mproc::detail
