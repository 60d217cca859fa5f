#pragma once

// Unix sockets and the descriptors they carry (SCM_RIGHTS).

#include <sys/types.h>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

struct msghdr;

namespace mproc::detail {

// A connected pair of close-on-exec Unix sockets of the given type (SOCK_STREAM, SOCK_SEQPACKET).
std::pair<UniqueFd, UniqueFd> make_socket_pair(int type);

// Space for the control message of the most descriptors one message may carry.
inline constexpr std::size_t max_fds_per_message = 253;
struct ControlBuffer {
    alignas(8) unsigned char bytes[1024 + 64];
};
static_assert(sizeof(ControlBuffer::bytes) >= 16 + max_fds_per_message * sizeof(int));

// Attaches fds to message as one SCM_RIGHTS control message written into buffer.
void attach_fds(msghdr& message, ControlBuffer& buffer, std::span<const int> fds);
// Takes ownership of the descriptors a received message carries, appending them to out.
// Throws SerializationError when the control data was truncated (descriptors were lost).
void collect_fds(msghdr& message, std::vector<UniqueFd>& out);

// One datagram on a SOCK_SEQPACKET socket, with descriptors; send returns false when the peer
// is gone. receive reads a datagram, or what a SOCK_STREAM socket has, up to size bytes: it
// returns the bytes received, 0 when the peer is gone, and -1 when wait is false and nothing
// is there. Interrupted calls are retried.
bool send_packet(int socket, const void* data, std::size_t size, std::span<const int> fds = {});
ssize_t receive_packet(int socket, void* data, std::size_t size, std::vector<UniqueFd>& fds,
                       bool wait);

}  // namespace mproc::detail
