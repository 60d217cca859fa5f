#pragma once

// The client's side of a manager connection (what manager_client.hpp declares opaquely).

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "manager/address.hpp"
#include "mproc/detail/local_dict.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

class ManagerEndpoint : public std::enable_shared_from_this<ManagerEndpoint> {
  public:
    ManagerEndpoint(std::string address, std::string authkey, std::uint64_t incarnation,
                    ManagerAddress parsed, std::uint64_t serial)
        : address(std::move(address)),
          authkey(std::move(authkey)),
          incarnation(incarnation),
          parsed(std::move(parsed)),
          serial(serial) {}

    const std::string address;
    const std::string authkey;
    // The server's incarnation (auth.hpp); a connection to a server of another is refused.
    // 0 only for the probe that Manager::connect uses to learn it.
    const std::uint64_t incarnation;
    const ManagerAddress parsed;
    // Unique in this process: what a thread's connection cache knows the endpoint by.
    const std::uint64_t serial;

    // For a local server: the dicts this process has mapped, by container id, and the
    // server's life block (local_dict.cpp). Guarded by client_registry_mutex(); kept as long
    // as the endpoint, so a proxy's dict stays mapped while the proxy lives.
    std::unordered_map<std::uint64_t, std::unique_ptr<LocalDict>> local_dicts;
    std::shared_ptr<ServerLife> server_life;
};

// The lock of the process's client registry. Held across fork(), so a child never inherits it
// locked.
std::mutex& client_registry_mutex();

// One thread's connection to one server. Every open channel is known to a registry that
// closes them all in a forked child, so that a child never writes into its parent's
// conversation, and never keeps the parent's connections (and the locks they hold) open.
class ManagerChannel {
  public:
    explicit ManagerChannel(std::string address);
    ~ManagerChannel();
    ManagerChannel(const ManagerChannel&) = delete;
    ManagerChannel& operator=(const ManagerChannel&) = delete;

    bool is_open() const noexcept { return socket_.get() >= 0; }
    // Connects and authenticates; returns the server's incarnation. AuthenticationError on a
    // wrong key (either way); mproc::Error when the server cannot be reached, ends the
    // handshake, or is not the incarnation the endpoint names.
    std::uint64_t open(const ManagerEndpoint& endpoint);
    void close() noexcept;
    // Sends out() and returns the response frame, whole. mproc::Error (having closed the
    // channel) when the server is gone; SerializationError for bytes that are not a response
    // to this request.
    std::span<const std::byte> round_trip();
    // The descriptors that came with the last response.
    std::vector<UniqueFd> take_descriptors() noexcept { return std::move(in_fds_); }

    std::vector<std::byte>& out() noexcept { return out_; }
    std::uint64_t next_sequence() noexcept { return ++sequence_; }
    // Set while a ManagerCall is being built or waits for its response.
    bool busy = false;

  private:
    friend struct ChannelForkHandlers;
    void receive_at_least(std::size_t bytes);
    [[noreturn]] void fail(const std::string& why);

    std::string address_;
    UniqueFd socket_;
    std::vector<std::byte> out_;
    std::vector<std::byte> in_;
    std::size_t in_end_ = 0;
    std::vector<UniqueFd> in_fds_;
    std::uint64_t sequence_ = 0;
};

// Marks this process as the server at address: a call from inside it to itself (an update
// function using a proxy of its own manager) would wait for itself, and is refused.
void mark_serving(const std::string& address);

}  // namespace mproc::detail
