#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "transport/link.hpp"

namespace mproc::detail {

// A Link over a SOCK_STREAM Unix socket. Frames are written back to back, several in one
// sendmsg when they carry no descriptors; descriptors ride SCM_RIGHTS on a frame's first byte.
// Reads go through a buffer, except that the bytes of a large frame go straight into it.
class SocketLink final : public Link {
  public:
    // max_payload_bytes: the largest frame it takes; a header that claims more is refused
    // (SerializationError) before anything is mapped or allocated for it.
    explicit SocketLink(UniqueFd socket,
                        std::uint64_t max_payload_bytes = default_max_payload_bytes()) noexcept
        : socket_(std::move(socket)), max_payload_bytes_(max_payload_bytes) {}

    // The limit of a link whose first frames (a bootstrap) came under another.
    void set_max_payload_bytes(std::uint64_t bytes) noexcept { max_payload_bytes_ = bytes; }

    void post(std::shared_ptr<const Frame> frame) override;
    bool flush() override;
    bool has_unsent() const noexcept override { return !unsent_.empty(); }
    bool receive_ready(std::vector<Frame>& out) override;
    int poll_fd() const noexcept override { return socket_.get(); }

    std::optional<Frame> receive() override;
    bool frame_ready() const noexcept override;
    bool send(Frame frame) override;

  private:
    enum class Progress { some, would_block, closed };
    Progress write_some(bool wait);
    Progress read_some(bool wait);
    // Writes every posted frame, waiting as needed; false when the peer is gone.
    bool write_all();
    // Moves the frame at the front of the buffer into out, if it is complete.
    bool take_frame(std::optional<Frame>& out);
    std::size_t buffered() const noexcept { return end_ - start_; }

    UniqueFd socket_;
    std::uint64_t max_payload_bytes_;
    std::deque<std::shared_ptr<const Frame>> unsent_;
    std::size_t sent_of_front_ = 0;
    std::vector<std::byte> buffer_;
    std::size_t start_ = 0;  // the first byte in buffer_ not yet taken
    std::size_t end_ = 0;    // one past the last byte received
    std::vector<UniqueFd> arrived_fds_;
    std::size_t next_fd_ = 0;
    bool peer_gone_ = false;
};

}  // namespace mproc::detail
