#include "worker/launcher.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>

#include "mproc/detail/wire_archive.hpp"
#include "os/socket.hpp"
#include "os/system_error.hpp"
#include "transport/socket_link.hpp"
#include "worker/child_exit.hpp"
#include "worker/spawn.hpp"
#include "worker/worker_loop.hpp"

namespace mproc::detail {

namespace {

enum Op : std::uint32_t { op_launch = 1, op_shutdown = 2, op_kill_all = 3 };

struct Request {
    std::uint32_t op;
    std::uint32_t slot;
};

struct Notice {
    std::uint32_t kind;
    std::uint32_t slot;
    std::int32_t pid;
    std::int32_t exit_code;
    std::int32_t signal;
};

// The launcher process's loop. It watches three things: requests from the pool, its children's
// deaths (SIGCHLD through a signalfd) and the pool's process itself (a pidfd), so that it and
// its workers end with the pool's process, whichever of its threads made the pool.
class Launcher {
  public:
    Launcher(UniqueFd control, pid_t pool_process, std::shared_ptr<SharedRegion> statuses,
             const Frame* initializer, StartMethod workers_by)
        : control_(std::move(control)),
          pool_process_(open_pidfd(pool_process)),
          status_region_(std::move(statuses)),
          statuses_(reinterpret_cast<WorkerStatus*>(status_region_->data())),
          initializer_(initializer),
          workers_by_(workers_by) {
        ::prctl(PR_SET_PDEATHSIG, 0);
        if (!pool_process_ || ::getppid() != pool_process) ::_exit(0);
        set_process_title("mproc-launcher");
        ::signal(SIGCHLD, SIG_DFL);
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        ::sigprocmask(SIG_BLOCK, &chld, &original_mask_);
        child_deaths_ = UniqueFd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!child_deaths_) ::_exit(3);
    }

    [[noreturn]] void run() {
        while (!(ending_ && children_.empty())) {
            pollfd fds[3] = {{control_.get(), POLLIN, 0},
                             {child_deaths_.get(), POLLIN, 0},
                             {pool_process_.get(), POLLIN, 0}};
            if (::poll(fds, 3, -1) < 0) {
                if (errno == EINTR) continue;
                ::_exit(3);
            }
            if (fds[2].revents != 0) kill_children();  // the pool's process died
            if (fds[0].revents != 0) serve_requests();
            if (fds[1].revents != 0) reap_children();
        }
        ::_exit(0);
    }

  private:
    void serve_requests() {
        while (true) {
            Request request{};
            std::vector<UniqueFd> unexpected;
            ssize_t size;
            try {
                size = receive_packet(control_.get(), &request, sizeof request, unexpected, false);
            } catch (...) {
                size = 0;
            }
            if (size < 0) return;                   // nothing more waiting
            if (size == 0) return kill_children();  // the pool is gone
            if (static_cast<std::size_t>(size) != sizeof request) continue;
            switch (request.op) {
                case op_launch:
                    launch(request.slot);
                    break;
                case op_shutdown:
                    ending_ = true;
                    break;
                case op_kill_all:
                    kill_children();
                    break;
                default:
                    break;
            }
        }
    }

    void launch(std::uint32_t slot) {
        auto [pool_end, worker_end] = make_socket_pair(SOCK_STREAM);
        WorkerStatus& status = statuses_[slot];
        status.running.store(0);
        status.sequence.store(0);
        status.serving.store(0);
        const pid_t pid = workers_by_ == StartMethod::spawn
                              ? spawn_worker(slot, pool_end, worker_end)
                              : fork_worker(status, pool_end, worker_end);
        children_[pid] = slot;
        const int fd = pool_end.get();
        notify(Notice{1, slot, pid, 0, 0}, std::span(&fd, 1));
    }

    pid_t fork_worker(WorkerStatus& status, UniqueFd& pool_end, UniqueFd& worker_end) {
        const pid_t pid = fork_child();
        if (pid == 0) {
            run_child_entry("worker", [&] {
                ::sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
                control_.reset();
                child_deaths_.reset();
                pool_process_.reset();
                pool_end.reset();
                set_process_title("mproc-worker");
                run_worker(
                    std::make_unique<SocketLink>(std::move(worker_end), status.max_value_bytes),
                    status, *claim_board_in(status_region_->data(), status_region_->size()),
                    initializer_);
            });
        }
        return pid;
    }

    // A fresh run of the program; what it needs goes ahead of the pool's first frame on the
    // pool's end of its socket: the bootstrap, then the initializer.
    pid_t spawn_worker(std::uint32_t slot, const UniqueFd& pool_end, const UniqueFd& worker_end) {
        const pid_t pid = spawn_program(Role::worker, worker_end);
        std::vector<std::byte> slot_item;
        std::vector<std::byte> initializer_item;
        encode(slot_item, slot);
        encode(initializer_item, initializer_ != nullptr);
        std::vector<UniqueFd> fds;
        fds.push_back(status_region_->fd().duplicate());
        SocketLink ahead(pool_end.duplicate());
        if (ahead.send(
                bootstrap_frame(Role::worker, {slot_item, initializer_item}, std::move(fds))) &&
            initializer_ != nullptr) {
            ahead.send(copy_frame(*initializer_));
        }
        return pid;
    }

    void reap_children() {
        signalfd_siginfo info;
        while (::read(child_deaths_.get(), &info, sizeof info) == sizeof info) {
        }
        int status = 0;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
            auto child = children_.find(pid);
            if (child == children_.end()) continue;
            const ExitStatus exit = decode_wait_status(status);
            notify(Notice{2, child->second, pid, exit.exit_code, exit.signal}, {});
            children_.erase(child);
        }
    }

    void kill_children() {
        ending_ = true;
        for (const auto& [pid, slot] : children_) ::kill(pid, SIGKILL);
    }

    void notify(const Notice& notice, std::span<const int> fds) {
        try {
            send_packet(control_.get(), &notice, sizeof notice, fds);
        } catch (...) {
            // The pool's end is gone or broken; it will hear nothing more, and needs nothing.
        }
    }

    UniqueFd control_;
    UniqueFd pool_process_;
    UniqueFd child_deaths_;
    sigset_t original_mask_{};
    std::shared_ptr<SharedRegion> status_region_;
    WorkerStatus* statuses_;
    const Frame* initializer_;
    StartMethod workers_by_;
    std::map<pid_t, std::uint32_t> children_;
    bool ending_ = false;
};

}  // namespace

void run_launcher(UniqueFd control, pid_t pool_process, std::shared_ptr<SharedRegion> statuses,
                  const Frame* initializer, StartMethod workers_by) noexcept {
    // A launcher that cannot go on (no socket, no fork for a worker) ends here, and its pool
    // hears that its launcher died.
    run_child_entry("launcher", [&] {
        Launcher(std::move(control), pool_process, std::move(statuses), initializer, workers_by)
            .run();
    });
}

WorkerLauncher::WorkerLauncher(StartMethod method, std::shared_ptr<SharedRegion> statuses,
                               const Frame* initializer) {
    auto [pool_end, launcher_end] = make_socket_pair(SOCK_SEQPACKET);
    const pid_t pool_process = ::getpid();
    if (method == StartMethod::forkserver) {
        // A clean launcher: a fresh run of the program, which then forks every worker itself.
        auto [boot, boot_there] = make_socket_pair(SOCK_STREAM);
        pid_ = spawn_program(Role::launcher, boot_there);
        std::vector<std::byte> pool_item;
        std::vector<std::byte> initializer_item;
        encode(pool_item, static_cast<std::int64_t>(pool_process));
        encode(initializer_item, initializer != nullptr);
        std::vector<UniqueFd> fds;
        fds.push_back(std::move(launcher_end));
        fds.push_back(statuses->fd().duplicate());
        SocketLink link(std::move(boot));
        if (link.send(
                bootstrap_frame(Role::launcher, {pool_item, initializer_item}, std::move(fds))) &&
            initializer != nullptr) {
            link.send(copy_frame(*initializer));
        }
    } else {
        pid_ = fork_child();
        if (pid_ == 0) {
            pool_end.reset();
            run_launcher(std::move(launcher_end), pool_process, std::move(statuses), initializer,
                         method);
        }
    }
    control_ = std::move(pool_end);
}

WorkerLauncher::~WorkerLauncher() {
    if (reaped_) return;
    kill_all();
    UniqueFd launcher = open_pidfd(pid_);
    if (!wait_pidfd(launcher, std::chrono::seconds(5))) {
        // It stopped answering; its workers die with it through their death signal.
        ::kill(pid_, SIGKILL);
    }
    reap();
}

void WorkerLauncher::request(std::uint32_t op, std::uint32_t slot) {
    if (gone_) return;
    const Request request{op, slot};
    send_packet(control_.get(), &request, sizeof request);
}

void WorkerLauncher::launch(std::uint32_t slot) {
    request(op_launch, slot);
}
void WorkerLauncher::shutdown() {
    request(op_shutdown, 0);
}
void WorkerLauncher::kill_all() {
    request(op_kill_all, 0);
}

std::optional<WorkerLauncher::Event> WorkerLauncher::next_event() {
    if (gone_) return std::nullopt;
    Notice notice{};
    std::vector<UniqueFd> fds;
    const ssize_t size = receive_packet(control_.get(), &notice, sizeof notice, fds, false);
    if (size < 0) return std::nullopt;
    Event event;
    if (size == 0) {
        event.kind = Event::Kind::gone;
        gone_ = true;
        return event;
    }
    event.kind = static_cast<Event::Kind>(notice.kind);
    event.slot = notice.slot;
    event.pid = notice.pid;
    event.status = ExitStatus{notice.exit_code, notice.signal};
    if (!fds.empty()) event.socket = std::move(fds.front());
    return event;
}

ExitStatus WorkerLauncher::reap() {
    if (!reaped_) {
        exit_ = detail::reap(pid_, true).value_or(ExitStatus{});
        reaped_ = true;
    }
    return exit_;
}

}  // namespace mproc::detail
