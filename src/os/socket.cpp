#include "os/socket.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "mproc/errors.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

std::pair<UniqueFd, UniqueFd> make_socket_pair(int type) {
    int fds[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) throw_system_error("socketpair");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void attach_fds(msghdr& message, ControlBuffer& buffer, std::span<const int> fds) {
    if (fds.empty()) {
        message.msg_control = nullptr;
        message.msg_controllen = 0;
        return;
    }
    message.msg_control = buffer.bytes;
    message.msg_controllen = CMSG_SPACE(fds.size_bytes());
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(fds.size_bytes());
    std::memcpy(CMSG_DATA(header), fds.data(), fds.size_bytes());
}

void collect_fds(msghdr& message, std::vector<UniqueFd>& out) {
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
            out.emplace_back(fd);
        }
    }
    if ((message.msg_flags & MSG_CTRUNC) != 0) {
        throw SerializationError(
            "mproc: descriptors sent with a message were lost (truncated "
            "control data; is the process out of descriptors?)");
    }
}

bool send_packet(int socket, const void* data, std::size_t size, std::span<const int> fds) {
    iovec vector{const_cast<void*>(data), size};
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    ControlBuffer control;
    attach_fds(message, control, fds);
    ssize_t sent;
    do {
        sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno == EPIPE || errno == ECONNRESET) return false;
        throw_system_error("sendmsg");
    }
    return true;
}

ssize_t receive_packet(int socket, void* data, std::size_t size, std::vector<UniqueFd>& fds,
                       bool wait) {
    iovec vector{data, size};
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    ControlBuffer control;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof control.bytes;
    ssize_t received;
    do {
        received = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
    } while (received < 0 && errno == EINTR);
    if (received < 0) {
        if (errno == ECONNRESET) return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        throw_system_error("recvmsg");
    }
    collect_fds(message, fds);
    if ((message.msg_flags & MSG_TRUNC) != 0) {
        throw SerializationError("mproc: a control message was longer than expected");
    }
    return received;
}

}  // namespace mproc::detail
