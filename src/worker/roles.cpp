#include "worker/roles.hpp"

#include <unistd.h>

#include <cstdio>
#include <exception>

#include "mproc/detail/shared_region.hpp"
#include "mproc/detail/task_codec.hpp"
#include "transport/socket_link.hpp"
#include "worker/child_exit.hpp"
#include "worker/exception_capture.hpp"
#include "worker/launcher.hpp"
#include "worker/worker_loop.hpp"

namespace mproc::detail {

namespace {

[[noreturn]] void fail_bootstrap(const char* role) {
    const ErrorInfo error = capture_current_exception();
    std::fprintf(stderr, "mproc: a spawned %s could not start: %s: %s\n", role,
                 error.type_name.c_str(), error.message.c_str());
    end_child(exit_bootstrap_failed);
}

template <class T>
T item_as(const Bootstrap& bootstrap, std::size_t index) {
    if (index >= bootstrap.items.size()) throw SerializationError("mproc: a bootstrap is short");
    T value{};
    decode(bootstrap.items[index], value);
    return value;
}

Frame next_frame(Link& link) {
    auto frame = link.receive();
    if (!frame) throw Error("mproc: the parent closed the connection during the bootstrap");
    return std::move(*frame);
}

[[noreturn]] void serve_worker(UniqueFd channel) {
    auto link = std::make_unique<SocketLink>(std::move(channel));
    std::shared_ptr<SharedRegion> statuses;
    std::uint32_t slot = 0;
    std::optional<Frame> initializer;
    try {
        Bootstrap bootstrap = check_bootstrap(next_frame(*link), Role::worker);
        slot = item_as<std::uint32_t>(bootstrap, 0);
        if (bootstrap.frame.fds.size() != 1)
            throw SerializationError("mproc: a bootstrap lacks its memory");
        statuses = SharedRegion::adopt(std::move(bootstrap.frame.fds[0]));
        if (statuses->size() < pool_memory_bytes(slot + 1) ||
            (statuses->size() - sizeof(ClaimBoard)) % alignof(ClaimBoard) != 0) {
            throw SerializationError("mproc: a bootstrap names a worker slot out of range");
        }
        if (item_as<bool>(bootstrap, 1)) initializer = next_frame(*link);
    } catch (...) {
        refuse_to_serve(*link, exit_bootstrap_failed);
    }
    set_process_title("mproc-worker");
    auto* status = reinterpret_cast<WorkerStatus*>(statuses->data()) + slot;
    link->set_max_payload_bytes(status->max_value_bytes);  // its pool's, not this process's
    run_worker(std::move(link), *status, *claim_board_in(statuses->data(), statuses->size()),
               initializer ? &*initializer : nullptr);
}

[[noreturn]] void serve_launcher(UniqueFd channel) {
    pid_t pool = 0;
    UniqueFd control;
    std::shared_ptr<SharedRegion> statuses;
    static std::optional<Frame> initializer;  // lives as long as the launcher and its forks
    try {
        SocketLink boot(std::move(channel));
        Bootstrap bootstrap = check_bootstrap(next_frame(boot), Role::launcher);
        pool = static_cast<pid_t>(item_as<std::int64_t>(bootstrap, 0));
        if (bootstrap.frame.fds.size() != 2)
            throw SerializationError("mproc: a bootstrap lacks its descriptors");
        control = std::move(bootstrap.frame.fds[0]);
        statuses = SharedRegion::adopt(std::move(bootstrap.frame.fds[1]));
        if (item_as<bool>(bootstrap, 1)) initializer = next_frame(boot);
    } catch (...) {
        fail_bootstrap("launcher");
    }
    // Outside the try: what goes wrong later, in the launcher or in a worker it forked, is no
    // failure to start, which would make the pool give up.
    run_launcher(std::move(control), pool, std::move(statuses),
                 initializer ? &*initializer : nullptr, StartMethod::fork);
}

[[noreturn]] void serve_process(UniqueFd channel) {
    std::string name;
    Frame call;
    try {
        SocketLink link(std::move(channel));
        Bootstrap bootstrap = check_bootstrap(next_frame(link), Role::process);
        name = item_as<std::string>(bootstrap, 0);
        call = next_frame(link);
    } catch (...) {
        fail_bootstrap("process");
    }
    set_process_title(name.c_str());
    enable_throw_backtraces();
    int code = 0;
    try {
        ResultWriter out(0, nullptr);
        find_entry(call.header().entry)(call, out);
        if (out.errors() != 0) {
            Frame results = out.finish();
            ItemReader items(results.payload());
            decode_result<void>(items.next());
        }
    } catch (const RemoteError& error) {
        std::fprintf(stderr, "Process %s (pid %d) ended with an exception:\n%s: %s\n%s\n",
                     name.c_str(), static_cast<int>(::getpid()), error.type_name().c_str(),
                     error.message().c_str(), error.traceback().c_str());
        code = 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "Process %s (pid %d) could not run: %s\n", name.c_str(),
                     static_cast<int>(::getpid()), error.what());
        code = 1;
    }
    end_child(code);
}

}  // namespace

void serve_spawned_role(Role role, UniqueFd channel) noexcept {
    // Below this frame is the user's main, which must not go on in this process.
    run_child_entry("spawned process", [&] {
        switch (role) {
            case Role::worker:
                serve_worker(std::move(channel));
            case Role::launcher:
                serve_launcher(std::move(channel));
            case Role::process:
                serve_process(std::move(channel));
        }
        std::fprintf(stderr, "mproc: a spawned process was given an unknown role\n");
        end_child(exit_bootstrap_failed);
    });
}

}  // namespace mproc::detail
