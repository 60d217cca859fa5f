#pragma once

// The spawn start method: a new process is a fresh run of this program, told by its
// environment which role to serve and which inherited descriptor leads to its parent. Its
// mproc::init reads a bootstrap frame there and serves the role; the user's main never goes on.

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>

#include "mproc/detail/frame.hpp"

namespace mproc::detail {

enum class Role : int {
    worker = 1,    // a pool's worker, spawned by the pool's launcher
    launcher = 2,  // a pool's launcher under forkserver: a clean process that forks workers
    process = 3,   // a Process: runs one call and exits
};

// Exit codes of a spawned process that could not serve, which its parent turns into errors.
inline constexpr int exit_missing_init = 86;      // main did not call mproc::init first
inline constexpr int exit_bootstrap_failed = 87;  // the bootstrap did not arrive or decode

// Runs this program again as `role`, with `channel` (one end of a SOCK_STREAM socket pair) as
// its only inherited mproc descriptor. Returns the child's pid; the child dies with the thread
// that started it.
pid_t spawn_program(Role role, const UniqueFd& channel);

// Records the program's arguments for spawn_program (mproc::init calls it).
void remember_arguments(int argc, char** argv);

// In a process that spawn_program started: its role and channel, once; nullopt otherwise.
std::optional<std::pair<Role, UniqueFd>> take_spawned_role();
// Ends, with a message that says what to add, a process that spawn_program started whose main
// did not call mproc::init first; called by everything that starts processes, so that such a
// program cannot multiply.
void require_served_role_taken();

// The first frame a spawned process reads: the build it must match and role-specific items.
Frame bootstrap_frame(Role role, const std::vector<std::vector<std::byte>>& items,
                      std::vector<UniqueFd> fds);
// Reads and checks a bootstrap: SerializationError (or Error on another build) if it is wrong.
struct Bootstrap {
    Frame frame;
    std::vector<std::span<const std::byte>> items;
};
Bootstrap check_bootstrap(Frame frame, Role role);

}  // namespace mproc::detail
