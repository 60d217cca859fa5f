#pragma once

// Whether a manager's server still runs, as a local client can tell without asking it: the
// server holds a robust mutex in a small shared block for as long as it lives. However it
// ends (returning, crashing, killed), the kernel marks the mutex's holder dead, and a client's
// try-lock, which costs no system call while the server lives, sees it. A client that works
// on a dict's shared memory directly checks this first, so that a proxy of an ended manager
// fails as it did when every call was a round trip.

#include <memory>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

class SharedRegion;

class ServerLife {
  public:
    // In the server: a new block, locked by the calling thread, which must be the one that
    // serves. mproc::Error when the kernel refuses the memory.
    static std::shared_ptr<ServerLife> hold();
    // In a client: the block the server sent. SerializationError when fd is not one.
    static std::shared_ptr<ServerLife> watch(UniqueFd fd);

    // The server's unlocks the mutex: a server that ends normally ends after its store.
    ~ServerLife();
    ServerLife(const ServerLife&) = delete;
    ServerLife& operator=(const ServerLife&) = delete;

    // False once the server has ended. For a client only.
    bool server_running() noexcept;
    const UniqueFd& fd() const noexcept;

  private:
    ServerLife(std::shared_ptr<SharedRegion> region, bool held) noexcept;

    std::shared_ptr<SharedRegion> region_;
    bool held_;
};

}  // namespace mproc::detail
