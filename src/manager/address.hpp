#pragma once

// Where a manager listens and how a client reaches it: address strings, listening sockets,
// connections. One concern per file: everything here is sockets, nothing is protocol.
//
//   "host:port"   TCP over IPv4 ("localhost", "0.0.0.0", a dotted quad, or a name resolved
//                 to IPv4); port 0 when listening lets the system pick one
//   "unix:@name"  a Unix stream socket in the abstract namespace: nothing in the file system,
//                 so nothing is left behind, whatever way the server ends

#include <cstdint>
#include <string>
#include <string_view>

#include "mproc/detail/unique_fd.hpp"
#include "os/deadline.hpp"

namespace mproc::detail {

struct ManagerAddress {
    enum class Family { tcp, unix_abstract };
    Family family = Family::unix_abstract;
    std::string host;        // tcp: as given
    std::uint16_t port = 0;  // tcp
    std::string name;        // unix_abstract: without the '@'

    bool is_unix() const noexcept { return family == Family::unix_abstract; }
};

// Throws mproc::Error, saying what is accepted, when text is not an address.
ManagerAddress parse_manager_address(std::string_view text);

// A fresh abstract Unix address that no other manager uses: "unix:@mproc-<pid>-<random>".
std::string private_manager_address();

// A non-blocking, close-on-exec socket listening at address. bound is set to the address as
// clients should use it (the port picked when 0 was asked for). Throws mproc::Error when the
// address cannot be bound.
UniqueFd listen_at(const ManagerAddress& address, std::string& bound);

// A blocking, close-on-exec socket connected to address, within the deadline. Throws
// mproc::Error when no one accepts there.
UniqueFd connect_to(const ManagerAddress& address, const std::string& text,
                    const Deadline& deadline);

// Accepts one connection as non-blocking; an empty UniqueFd when none is waiting. errno is
// left set when accept failed for another reason (EMFILE, ...), and the result is empty.
UniqueFd accept_connection(int listener) noexcept;

// Socket options every manager connection gets: no Nagle delay (one request, one reply: the
// delay would be pure latency) and, on TCP, keep-alive probes so that a peer that vanished
// with its machine is noticed in under a minute.
void tune_connection(int socket, bool tcp) noexcept;

// The uid of the process at the other end of a Unix socket, or -1.
long peer_uid(int socket) noexcept;

// Writes all of bytes to a blocking socket; false when the peer is gone.
bool write_all(int socket, const void* data, std::size_t size);
// Reads exactly size bytes before the deadline; false when the peer closed first. Throws
// TimeoutError past the deadline.
bool read_exact(int socket, void* data, std::size_t size, const Deadline& deadline);

}  // namespace mproc::detail
