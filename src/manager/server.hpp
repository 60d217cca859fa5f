#pragma once

// The manager's server process: forked from the program when a Manager is made, it owns the
// containers (store.hpp) and serves every connection from one thread with epoll, so that no
// client, slow, silent or dead, holds up another.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

// The owner's handle on a running server.
struct ServerProcess {
    pid_t pid = 0;
    UniqueFd pidfd;
    UniqueFd stop;  // a byte written here asks the server to end
};

// Forks the server, which takes over listener (a listening socket at address, non-blocking)
// and serves until stop_manager_server() or until this process dies. unix_socket says that
// connections are local, and are to be checked to come from this user; incarnation is the
// server's random identity (auth.hpp). Throws mproc::Error when the fork fails.
ServerProcess start_manager_server(UniqueFd listener, bool unix_socket, const std::string& address,
                                   const std::string& authkey, std::uint64_t incarnation);

// Asks the server to end, waits for it (a few seconds, then kills it) and reaps it. Does
// nothing for a server already stopped.
void stop_manager_server(ServerProcess& server) noexcept;

}  // namespace mproc::detail
