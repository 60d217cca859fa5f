// The end of a pipe: frames over a SOCK_STREAM Unix socket, read one exact frame at a time.
//
// It does not use SocketLink, whose reads run ahead into a buffer of the process that made
// them: a pool's link has one reader for its whole life, but an end of a pipe is forked and
// sent to other processes, and a message already read into one process's buffer would be lost
// to (or, after a fork, read twice by) the next holder. The frames are the same.

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"
#include "os/socket.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

// How often a thread waiting on a socket looks whether another thread has begun to close it.
constexpr auto close_check_period = std::chrono::milliseconds(100);
// A frame's bytes beyond its header are read in steps that start here and double, so that the
// buffer grows with what arrives, never to what a header claims.
constexpr std::size_t first_read = 64 * 1024;

StateError closed_here() {
    return StateError("mproc: the Connection was closed (close() on this end, in this process)");
}

StateError peer_gone() {
    return StateError(
        "mproc: the other end of the pipe was closed: every process that held it closed it or "
        "ended, and every message it sent has been received");
}

SerializationError cut_off() {
    return SerializationError(
        "mproc: a message was cut off: the other end of the pipe was closed in the middle of "
        "sending it");
}

}  // namespace

std::pair<std::shared_ptr<ConnectionCore>, std::shared_ptr<ConnectionCore>>
ConnectionCore::make_pipe() {
    auto [first, second] = make_socket_pair(SOCK_STREAM);
    return {std::make_shared<ConnectionCore>(std::move(first)),
            std::make_shared<ConnectionCore>(std::move(second))};
}

std::shared_ptr<ConnectionCore> ConnectionCore::adopt(UniqueFd socket) {
    int domain = 0;
    int type = 0;
    socklen_t domain_size = sizeof domain;
    socklen_t type_size = sizeof type;
    if (!socket || ::getsockopt(socket.get(), SOL_SOCKET, SO_DOMAIN, &domain, &domain_size) != 0 ||
        ::getsockopt(socket.get(), SOL_SOCKET, SO_TYPE, &type, &type_size) != 0 ||
        domain != AF_UNIX || type != SOCK_STREAM) {
        throw SerializationError(
            "mproc: the descriptor received for a Connection is not the end of a pipe (a "
            "SOCK_STREAM Unix socket)");
    }
    return std::make_shared<ConnectionCore>(std::move(socket));
}

void ConnectionCore::check_open() const {
    if (closing_.load(std::memory_order_acquire) || !socket_) throw closed_here();
}

bool ConnectionCore::wait_until_ready(short events,
                                      std::optional<Clock::time_point> deadline) const {
    while (true) {
        check_open();
        auto slice = close_check_period;
        if (deadline) {
            const auto left = *deadline - Clock::now();
            slice = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(left),
                               std::chrono::milliseconds::zero(), close_check_period);
        }
        pollfd entry{socket_.get(), events, 0};
        const int ready = ::poll(&entry, 1, static_cast<int>(slice.count()));
        // A hang-up or an error counts too: the call that follows reports it.
        if (ready > 0) return true;
        if (ready < 0 && errno != EINTR) throw_system_error("poll on a pipe");
        if (deadline && Clock::now() >= *deadline) return false;
    }
}

std::size_t ConnectionCore::read_some(std::byte* into, std::size_t n, std::vector<UniqueFd>& fds) {
    while (true) {
        // Never blocking in recvmsg, so that close() in another thread is noticed.
        const ssize_t received = receive_packet(socket_.get(), into, n, fds, false);
        if (received >= 0) return static_cast<std::size_t>(received);
        wait_until_ready(POLLIN, std::nullopt);
    }
}

void ConnectionCore::send(const Frame& frame) {
    std::lock_guard one_sender(send_mutex_);
    std::shared_lock socket_alive(socket_mutex_);
    check_open();
    std::vector<int> fds;
    frame.append_fds(fds);
    std::size_t sent = 0;
    while (sent < frame.bytes.size()) {
        iovec vector{const_cast<std::byte*>(frame.bytes.data()) + sent, frame.bytes.size() - sent};
        msghdr message{};
        message.msg_iov = &vector;
        message.msg_iovlen = 1;
        ControlBuffer control;
        // The descriptors ride the frame's first byte, where the reader collects them.
        attach_fds(message, control,
                   sent == 0 ? std::span<const int>(fds) : std::span<const int>());
        const ssize_t written = ::sendmsg(socket_.get(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (written >= 0) {
            sent += static_cast<std::size_t>(written);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wait_until_ready(POLLOUT, std::nullopt);
        } else if (errno == EPIPE || errno == ECONNRESET) {
            throw peer_gone();
        } else if (errno != EINTR) {
            throw_system_error("sendmsg on a pipe");
        }
    }
}

Frame ConnectionCore::receive() {
    std::lock_guard one_receiver(receive_mutex_);
    std::shared_lock socket_alive(socket_mutex_);
    check_open();
    if (lost_frame_boundary_.load()) {
        throw SerializationError(
            "mproc: bytes that were not a message arrived on this Connection earlier, so where "
            "the next message starts is unknown; it cannot be read any more");
    }
    if (peer_gone_.load()) throw peer_gone();

    Frame frame;
    std::size_t got = 0;
    try {
        frame.bytes.resize(sizeof(FrameHeader));
        while (got < sizeof(FrameHeader)) {
            const std::size_t n =
                read_some(frame.bytes.data() + got, sizeof(FrameHeader) - got, frame.fds);
            if (n == 0) {
                peer_gone_.store(true);
                if (got == 0) throw peer_gone();
                throw cut_off();
            }
            got += n;
        }
        const FrameHeader header = frame.header();
        check_header(header);
        const std::size_t whole = stream_bytes(header);
        while (got < whole) {
            const std::size_t want = std::min(whole - got, std::max(got, first_read));
            if (frame.bytes.size() < got + want) frame.bytes.resize(got + want);
            const std::size_t n = read_some(frame.bytes.data() + got, want, frame.fds);
            if (n == 0) {
                peer_gone_.store(true);
                throw cut_off();
            }
            got += n;
        }
        if (frame.fds.size() != header.fd_count) {
            throw SerializationError("mproc: a message claims " + std::to_string(header.fd_count) +
                                     " descriptors but " + std::to_string(frame.fds.size()) +
                                     " arrived with it");
        }
        adopt_payload_file(frame);
    } catch (const SerializationError&) {
        // Bytes were taken from the stream without a whole frame's worth of sense: the next
        // frame's start cannot be found. (A count of descriptors that disagrees comes after a
        // whole frame, but it too says that the stream is not what the sender wrote.)
        if (got > 0 && !peer_gone_.load()) lost_frame_boundary_.store(true);
        throw;
    } catch (const StateError&) {
        throw;
    } catch (...) {
        if (got > 0) lost_frame_boundary_.store(true);
        throw;
    }
    return frame;
}

bool ConnectionCore::poll(std::optional<std::chrono::nanoseconds> timeout) {
    std::shared_lock socket_alive(socket_mutex_);
    check_open();
    if (peer_gone_.load() || lost_frame_boundary_.load()) return true;
    std::optional<Clock::time_point> deadline;
    if (timeout) deadline = Clock::now() + *timeout;
    return wait_until_ready(POLLIN, deadline);
}

void ConnectionCore::close() noexcept {
    closing_.store(true, std::memory_order_release);
    // Waits for the calls that use the descriptor to notice and leave.
    std::unique_lock socket_unused(socket_mutex_);
    socket_.reset();
}

UniqueFd ConnectionCore::duplicate_socket() {
    std::shared_lock socket_alive(socket_mutex_);
    check_open();
    return socket_.duplicate();
}

std::span<const std::byte> message_item(const Frame& frame) {
    const FrameHeader header = frame.header();
    if (frame.kind() != FrameKind::task || header.item_count != 1) {
        throw SerializationError(
            "mproc: a frame that is not a pipe's message (kind " + std::to_string(header.kind) +
            ", " + std::to_string(header.item_count) + " items) arrived on a Connection");
    }
    ItemReader items(frame.payload());
    const std::span<const std::byte> item = items.next();
    if (!items.at_end()) {
        throw SerializationError("mproc: a pipe's message has bytes after its one value");
    }
    return item;
}

}  // namespace mproc::detail
