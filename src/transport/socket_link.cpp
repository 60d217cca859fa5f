#include "transport/socket_link.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "mproc/errors.hpp"
#include "os/socket.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {
// Small frames are read through a buffer of this size, many per system call.
constexpr std::size_t read_block = 64 * 1024;
// Frames without descriptors are written up to this many per system call.
constexpr std::size_t max_frames_per_write = 64;
}  // namespace

void SocketLink::post(std::shared_ptr<const Frame> frame) {
    unsent_.push_back(std::move(frame));
}

SocketLink::Progress SocketLink::write_some(bool wait) {
    iovec vectors[max_frames_per_write];
    std::size_t count = 0;
    std::vector<int> fds;
    for (const auto& shared : unsent_) {
        const Frame& frame = *shared;
        const bool first = count == 0;
        if (!first && frame.has_fds()) break;  // its descriptors must ride its first byte
        if (first && sent_of_front_ == 0) frame.append_fds(fds);
        const std::size_t offset = first ? sent_of_front_ : 0;
        vectors[count++] = {const_cast<std::byte*>(frame.bytes.data()) + offset,
                            frame.bytes.size() - offset};
        if (count == max_frames_per_write) break;
    }
    msghdr message{};
    message.msg_iov = vectors;
    message.msg_iovlen = count;
    ControlBuffer control;
    attach_fds(message, control, fds);
    ssize_t sent;
    do {
        sent = ::sendmsg(socket_.get(), &message, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Progress::would_block;
        if (errno == EPIPE || errno == ECONNRESET) return Progress::closed;
        throw_system_error("sendmsg");
    }
    auto left = static_cast<std::size_t>(sent);
    while (left > 0) {
        const std::size_t rest = unsent_.front()->bytes.size() - sent_of_front_;
        if (left < rest) {
            sent_of_front_ += left;
            break;
        }
        left -= rest;
        unsent_.pop_front();
        sent_of_front_ = 0;
    }
    return Progress::some;
}

bool SocketLink::flush() {
    if (peer_gone_) return false;
    while (!unsent_.empty()) {
        const auto progress = write_some(false);
        if (progress == Progress::would_block) return true;
        if (progress == Progress::closed) return !(peer_gone_ = true);
    }
    return true;
}

bool SocketLink::write_all() {
    while (!unsent_.empty()) {
        if (write_some(true) == Progress::closed) return false;
    }
    return true;
}

bool SocketLink::send(Frame frame) {
    post(std::make_shared<const Frame>(std::move(frame)));
    return write_all();
}

SocketLink::Progress SocketLink::read_some(bool wait) {
    // Read up to a block; but once the frame at the front is known to be larger, read to its
    // end, and no further, so that its bytes can become the frame without a copy. The buffer
    // grows with what arrives, never to what a header claims.
    std::size_t want = read_block;
    if (buffered() >= sizeof(FrameHeader)) {
        FrameHeader header;
        std::memcpy(&header, buffer_.data() + start_, sizeof header);
        const std::size_t whole = stream_bytes(header);
        if (whole > read_block)
            want = std::min<std::size_t>(whole - buffered(), std::max(buffered(), read_block));
    }
    if (start_ > 0 && (start_ == end_ || buffer_.size() - end_ < want)) {
        std::copy(buffer_.begin() + start_, buffer_.begin() + end_, buffer_.begin());
        end_ -= start_;
        start_ = 0;
    }
    if (buffer_.size() < end_ + want) buffer_.resize(end_ + want);

    const ssize_t received =
        receive_packet(socket_.get(), buffer_.data() + end_, want, arrived_fds_, wait);
    if (received < 0) return Progress::would_block;
    if (received == 0) return Progress::closed;
    end_ += static_cast<std::size_t>(received);
    return Progress::some;
}

bool SocketLink::take_frame(std::optional<Frame>& out) {
    if (buffered() < sizeof(FrameHeader)) return false;
    FrameHeader header;
    std::memcpy(&header, buffer_.data() + start_, sizeof header);
    check_header(header, max_payload_bytes_);
    const std::size_t whole = stream_bytes(header);
    if (buffered() < whole) return false;
    if (arrived_fds_.size() - next_fd_ < header.fd_count) {
        throw SerializationError("mproc: a frame claims " + std::to_string(header.fd_count) +
                                 " descriptors but fewer arrived with it");
    }
    Frame frame;
    if (start_ == 0 && end_ == whole) {
        buffer_.resize(whole);
        frame.bytes = std::move(buffer_);
        buffer_ = {};
        end_ = 0;
    } else {
        frame.bytes.assign(buffer_.begin() + start_, buffer_.begin() + start_ + whole);
        start_ += whole;
    }
    for (std::uint32_t i = 0; i < header.fd_count; ++i) {
        frame.fds.push_back(std::move(arrived_fds_[next_fd_++]));
    }
    if (next_fd_ == arrived_fds_.size()) {
        arrived_fds_.clear();
        next_fd_ = 0;
    }
    adopt_payload_file(frame);
    out.emplace(std::move(frame));
    return true;
}

bool SocketLink::receive_ready(std::vector<Frame>& out) {
    std::optional<Frame> frame;
    while (true) {
        while (take_frame(frame)) out.push_back(std::move(*std::exchange(frame, std::nullopt)));
        if (peer_gone_) return false;
        const auto progress = read_some(false);
        if (progress == Progress::would_block) return true;
        if (progress == Progress::closed) peer_gone_ = true;
    }
}

bool SocketLink::frame_ready() const noexcept {
    if (buffered() < sizeof(FrameHeader)) return false;
    FrameHeader header;
    std::memcpy(&header, buffer_.data() + start_, sizeof header);
    return buffered() >= stream_bytes(header);
}

std::optional<Frame> SocketLink::receive() {
    std::optional<Frame> frame;
    while (!take_frame(frame)) {
        if (peer_gone_ || !write_all() || read_some(true) == Progress::closed) {
            peer_gone_ = true;
            return std::nullopt;
        }
    }
    return frame;
}

}  // namespace mproc::detail
