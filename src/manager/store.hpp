#pragma once

// What a manager's server holds and does: its containers, and the execution of requests on
// them. No sockets here (server.cpp has those), so every behaviour can be tested by feeding
// request frames in and reading response frames out.
//
// Keys and values are kept as the bytes the clients encoded; the store never decodes them,
// except in an update entry. Dicts live in shared memory (shared_dict.hpp), which local
// clients map and change without a request; the store serves them the memory, and runs the
// requests of TCP clients on it. Each container records its kind and its type signature, and a
// request whose signature differs is refused: that is how a proxy of the wrong types finds
// out, on its first call.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

using ClientId = std::uint64_t;
using StoreClock = std::chrono::steady_clock;

struct ClientInfo {
    ClientId id = 0;
    // Whether the client runs the same code at the same wire addresses (auth.hpp): only then
    // may it name an update function.
    bool same_code = false;
    // Whether the client is on this machine (a Unix socket): only then may it be sent a
    // dict's shared memory.
    bool local = false;
};

class Store {
  public:
    enum class Outcome {
        answered,  // the response was appended to out
        parked,    // the request waits (a queue get or put, a lock acquire): its response will
                   // come from take_completions(); take no more requests from that client
                   // until then
    };
    struct Completion {
        ClientId client;
        std::vector<std::byte> response;
    };

    Store();
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Runs one request frame (header and payload, as framed by the caller). Never throws for
    // anything a client sends: malformed requests, unknown containers, wrong types, failing
    // update functions all get an error response. (std::bad_alloc for the response itself may
    // still escape.) A response that carries descriptors (a dict's shared memory, to a local
    // client) appends them to descriptors, in the order its header counts them; a request for
    // one without descriptors is refused.
    Outcome execute(const ClientInfo& client, std::span<const std::byte> frame,
                    std::vector<std::byte>& out, std::vector<UniqueFd>* descriptors = nullptr);

    // Completes the parked requests whose deadline is at or before now.
    void expire(StoreClock::time_point now);
    // The earliest deadline of a parked request, if any.
    std::optional<StoreClock::time_point> next_deadline() const noexcept;
    // The client has gone: its parked request is dropped without an answer, and the locks
    // it held are released (and handed to the next waiter).
    void forget_client(ClientId client);
    // The responses to parked requests completed since the last call, in completion order.
    std::vector<Completion> take_completions();

    std::size_t container_count() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::detail
