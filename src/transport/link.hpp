#pragma once

// The transport seam: one end of the connection between a pool and one of its workers. The
// pool's collector uses the non-blocking half from its poll loop; the worker uses the blocking
// half. A shared-memory ring or MPI implements the same interface.

#include <memory>
#include <optional>
#include <vector>

#include "mproc/detail/frame.hpp"

namespace mproc::detail {

class Link {
  public:
    virtual ~Link() = default;

    // Pool side, never blocking.
    // Queues a frame; flush() sends it. The frame is shared, not copied: the pool keeps it to
    // send again elsewhere if this worker dies.
    virtual void post(std::shared_ptr<const Frame> frame) = 0;
    // Sends what the peer accepts now. False once the peer is gone.
    virtual bool flush() = 0;
    virtual bool has_unsent() const noexcept = 0;
    // Appends the frames that have arrived complete. False once the peer is gone and nothing
    // more will come. Throws SerializationError on bytes that are not frames.
    virtual bool receive_ready(std::vector<Frame>& out) = 0;
    // A descriptor that poll() reports readable when receive_ready() has something, and
    // writable when flush() can make progress.
    virtual int poll_fd() const noexcept = 0;

    // Worker side, blocking.
    // The next frame; nullopt when the peer is gone. Before it waits for one, it sends every
    // frame posted and not yet sent, since the peer may be waiting for those.
    virtual std::optional<Frame> receive() = 0;
    // Whether receive() has a whole frame to return without waiting.
    virtual bool frame_ready() const noexcept = 0;
    // Sends a frame whole, after every frame posted before it; false when the peer is gone.
    virtual bool send(Frame frame) = 0;
};

}  // namespace mproc::detail
