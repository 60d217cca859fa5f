#include "mproc/process.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"
#include "os/process.hpp"
#include "os/socket.hpp"
#include "transport/socket_link.hpp"
#include "worker/child_exit.hpp"
#include "worker/exception_capture.hpp"
#include "worker/spawn.hpp"

namespace mproc {

namespace detail {

class ProcessState {
  public:
    ProcessState(ProcessOptions options, std::unique_ptr<ProcessTarget> target)
        : options_(std::move(options)), target_(std::move(target)) {
        static std::atomic<int> created{0};
        if (options_.name.empty()) options_.name = "Process-" + std::to_string(++created);
    }

    void start() {
        if (pid_ != 0)
            throw StateError("mproc: process '" + options_.name + "' was already started");
        require_served_role_taken();
        if (options_.start_method.value_or(get_start_method()) == StartMethod::fork) {
            const pid_t pid = fork_child();
            if (pid == 0) run_child();
            pid_ = pid;
        } else {
            pid_ = spawn_child();
        }
        pidfd_ = open_pidfd(pid_);
    }

    bool join_for(std::optional<std::chrono::milliseconds> timeout) {
        require_started("join");
        if (exitcode_) return true;
        if (!wait_pidfd(pidfd_, timeout)) return false;
        settle(reap(pid_, true));
        return true;
    }

    std::optional<int> exitcode() {
        if (pid_ != 0 && !exitcode_) settle(reap(pid_, false));
        return exitcode_;
    }

    void signal(int sig, const char* what) {
        require_started(what);
        if (!exitcode()) signal_pidfd(pidfd_, sig);
    }

    void end_with_owner() {
        if (pid_ == 0 || exitcode()) return;
        if (options_.daemon) {
            signal_pidfd(pidfd_, SIGTERM);
            if (!join_for(std::chrono::seconds(1))) signal_pidfd(pidfd_, SIGKILL);
        }
        join_for(std::nullopt);
    }

    pid_t pid() const noexcept { return pid_; }
    const ProcessOptions& options() const noexcept { return options_; }

  private:
    // The forked child's entry: whatever the target throws ends here, reported as Python
    // reports it, and the child never unwinds into the caller's frames it holds a copy of.
    [[noreturn]] void run_child() noexcept {
        set_process_title(options_.name.c_str());
        enable_throw_backtraces();
        int code = 0;
        try {
            target_->run();
        } catch (...) {
            const ErrorInfo error = capture_current_exception();
            std::fprintf(stderr, "Process %s (pid %d) ended with an exception:\n%s: %s\n%s\n",
                         options_.name.c_str(), static_cast<int>(::getpid()),
                         error.type_name.c_str(), error.message.c_str(), error.traceback.c_str());
            code = 1;
        }
        end_child(code);
    }

    // A fresh run of the program, which gets the call through its mproc::init.
    pid_t spawn_child() {
        std::optional<BoundCall> call = target_->encode_for_spawn();
        if (!call) {
            throw StateError("mproc: process '" + options_.name +
                             "' cannot start by spawn or forkserver: its callable must be "
                             "sendable (a function pointer or a lambda without captures) and its "
                             "arguments values mproc can encode; use the fork start method, or "
                             "pass the captured state as arguments");
        }
        auto [here, there] = make_socket_pair(SOCK_STREAM);
        const pid_t pid = spawn_program(Role::process, there);
        std::vector<std::byte> name;
        encode(name, options_.name);
        SocketLink link(std::move(here));
        if (link.send(bootstrap_frame(Role::process, {name}, {})))
            link.send(copy_frame(call->frame()));
        return pid;
    }

    void require_started(const char* what) const {
        if (pid_ == 0) {
            throw StateError(std::string("mproc: ") + what + "() on process '" + options_.name +
                             "', which was never started");
        }
    }

    void settle(std::optional<ExitStatus> status) {
        if (!status) return;
        exitcode_ = status->python_exitcode();
        pidfd_.reset();
    }

    ProcessOptions options_;
    std::unique_ptr<ProcessTarget> target_;
    pid_t pid_ = 0;
    UniqueFd pidfd_;
    std::optional<int> exitcode_;
};

}  // namespace detail

Process::Process(ProcessOptions options, std::unique_ptr<detail::ProcessTarget> target)
    : state_(std::make_unique<detail::ProcessState>(std::move(options), std::move(target))) {}

Process::Process(Process&&) noexcept = default;

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        if (state_) state_->end_with_owner();
        state_ = std::move(other.state_);
    }
    return *this;
}

Process::~Process() {
    if (state_) state_->end_with_owner();
}

detail::ProcessState& Process::started_state(const char* what) const {
    if (!state_) {
        throw StateError(std::string("mproc: ") + what + "() on a Process that was moved from");
    }
    return *state_;
}

void Process::start() {
    started_state("start").start();
}
void Process::join() {
    started_state("join").join_for(std::nullopt);
}
bool Process::join_for(std::chrono::milliseconds timeout) {
    return started_state("join").join_for(timeout);
}
bool Process::is_alive() {
    return state_ && state_->pid() != 0 && !state_->exitcode();
}
void Process::terminate() {
    started_state("terminate").signal(SIGTERM, "terminate");
}
void Process::kill() {
    started_state("kill").signal(SIGKILL, "kill");
}
std::optional<int> Process::exitcode() {
    return state_ ? state_->exitcode() : std::nullopt;
}
pid_t Process::pid() const noexcept {
    return state_ ? state_->pid() : 0;
}
const std::string& Process::name() const noexcept {
    static const std::string moved_from;
    return state_ ? state_->options().name : moved_from;
}
bool Process::daemon() const noexcept {
    return state_ && state_->options().daemon;
}

}  // namespace mproc
