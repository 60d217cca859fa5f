#include "worker/spawn.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"
#include "mproc/init.hpp"
#include "os/build_id.hpp"
#include "os/process.hpp"
#include "os/system_error.hpp"

extern char** environ;

namespace mproc::detail {

namespace {

constexpr const char* role_variable = "MPROC_ROLE";
constexpr const char* channel_variable = "MPROC_CHANNEL_FD";

std::mutex arguments_mutex;
std::vector<std::string> saved_arguments;

std::vector<std::string> program_arguments() {
    {
        std::lock_guard lock(arguments_mutex);
        if (!saved_arguments.empty()) return saved_arguments;
    }
    // mproc::init was not called here: take the arguments the kernel recorded.
    std::ifstream file("/proc/self/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    std::vector<std::string> arguments;
    for (std::size_t start = 0; start < all.size();) {
        const std::size_t end = all.find('\0', start);
        arguments.push_back(all.substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return arguments;
}

// Read before main by the static initialiser below, so that a spawned process knows its role
// however main begins.
struct SpawnedRole {
    SpawnedRole() {
        const char* role_text = std::getenv(role_variable);
        const char* channel_text = std::getenv(channel_variable);
        if (role_text == nullptr || channel_text == nullptr) return;
        role = static_cast<Role>(std::atoi(role_text));
        channel = std::atoi(channel_text);
        // The user's own children must not believe they were spawned by mproc.
        ::unsetenv(role_variable);
        ::unsetenv(channel_variable);
    }

    std::optional<Role> role;
    int channel = -1;
    std::atomic<bool> taken{false};
};

SpawnedRole& spawned_role() {
    static SpawnedRole role;
    return role;
}

[[maybe_unused]] const bool role_read_before_main = [] {
    if (spawned_role().role) {
        std::atexit([] {
            if (!spawned_role().taken) {
                std::fprintf(stderr,
                             "mproc: this process was started by mproc (start method spawn or "
                             "forkserver) to serve tasks, but its main() ended without calling "
                             "mproc::init(argc, argv). Add `mproc::init(argc, argv);` as the first "
                             "statement of main.\n");
                std::fflush(stderr);
                ::_exit(exit_missing_init);
            }
        });
    }
    return true;
}();

}  // namespace

void remember_arguments(int argc, char** argv) {
    std::lock_guard lock(arguments_mutex);
    saved_arguments.assign(argv, argv + argc);
}

pid_t spawn_program(Role role, const UniqueFd& channel) {
    // Everything the child needs is built before the fork: between fork and exec a child of a
    // threaded program may only make system calls.
    const std::vector<std::string> arguments = program_arguments();
    std::vector<char*> argv;
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    const std::string role_setting =
        std::string(role_variable) + "=" + std::to_string(static_cast<int>(role));
    const std::string channel_setting =
        std::string(channel_variable) + "=" + std::to_string(channel.get());
    std::vector<char*> envp;
    for (char** variable = environ; *variable != nullptr; ++variable) {
        if (std::strncmp(*variable, "MPROC_", 6) != 0) envp.push_back(*variable);
    }
    envp.push_back(const_cast<char*>(role_setting.c_str()));
    envp.push_back(const_cast<char*>(channel_setting.c_str()));
    envp.push_back(nullptr);

    const pid_t pid = fork_child();
    if (pid == 0) {
        ::fcntl(channel.get(), F_SETFD, 0);  // the one descriptor the new program keeps
        ::execve("/proc/self/exe", argv.data(), envp.data());
        ::_exit(127);
    }
    return pid;
}

std::optional<std::pair<Role, UniqueFd>> take_spawned_role() {
    SpawnedRole& found = spawned_role();
    if (!found.role || found.taken.exchange(true)) return std::nullopt;
    ::fcntl(found.channel, F_SETFD, FD_CLOEXEC);
    return std::make_pair(*found.role, UniqueFd(found.channel));
}

void require_served_role_taken() {
    if (spawned_role().role && !spawned_role().taken) {
        std::fprintf(stderr,
                     "mproc: this process was started by mproc (start method spawn or forkserver) "
                     "to serve tasks, but main() did not call mproc::init(argc, argv) before using "
                     "mproc. Add `mproc::init(argc, argv);` as the first statement of main.\n");
        std::fflush(stderr);
        ::_exit(exit_missing_init);
    }
}

Frame bootstrap_frame(Role role, const std::vector<std::vector<std::byte>>& items,
                      std::vector<UniqueFd> fds) {
    FrameWriter writer(FrameKind::bootstrap, static_cast<std::uint64_t>(role));
    writer.begin_item();
    encode(writer.buffer(), program_build_id());
    writer.end_item();
    for (const auto& item : items) {
        writer.begin_item();
        writer.buffer().append(item.data(), item.size());
        writer.end_item();
    }
    writer.add_fds(std::move(fds));
    return writer.finish();
}

Bootstrap check_bootstrap(Frame frame, Role role) {
    if (frame.kind() != FrameKind::bootstrap ||
        frame.header().sequence != static_cast<std::uint64_t>(role)) {
        throw SerializationError("mproc: a spawned process got something other than its bootstrap");
    }
    Bootstrap bootstrap{std::move(frame), {}};
    ItemReader items(bootstrap.frame.payload());
    std::string build;
    decode(items.next(), build);
    if (build != program_build_id()) {
        throw Error("mproc: a spawned process runs another build of the program (" +
                    program_build_id() + ") than its parent (" + build +
                    "); was the program rebuilt while it ran?");
    }
    while (!items.at_end()) bootstrap.items.push_back(items.next());
    return bootstrap;
}

}  // namespace mproc::detail
