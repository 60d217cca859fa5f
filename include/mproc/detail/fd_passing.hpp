#pragma once

// Handle types (SharedArray, and later queues and locks) travel as descriptors beside the bytes
// of a frame. While a frame is encoded, a handle's save() hands its descriptor to the current
// outbox and writes the index it got; while one is decoded, its load() takes the descriptor at
// that index from the current inbox. The transport moves the descriptors (SCM_RIGHTS).

#include <cstdint>
#include <span>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

class FdOutbox {
  public:
    // Keeps a duplicate of fd, so the handle may go away before the frame is sent.
    std::uint32_t add(const UniqueFd& fd);
    std::vector<UniqueFd> take() noexcept { return std::move(fds_); }

  private:
    std::vector<UniqueFd> fds_;
};

class FdInbox {
  public:
    explicit FdInbox(std::span<const UniqueFd> fds) noexcept : fds_(fds) {}
    // A duplicate of the descriptor at index; SerializationError when there is none.
    UniqueFd take(std::uint32_t index) const;

  private:
    std::span<const UniqueFd> fds_;
};

// The outbox (inbox) of the frame this thread is encoding (decoding), or nullptr.
FdOutbox* current_fd_outbox() noexcept;
FdInbox* current_fd_inbox() noexcept;

// The current outbox (inbox); SerializationError saying that `what` (a type's name) can only
// travel through mproc when there is none.
FdOutbox& require_fd_outbox(const char* what);
FdInbox& require_fd_inbox(const char* what);

// Makes box the current one for the scope's lifetime.
class FdOutboxScope {
  public:
    explicit FdOutboxScope(FdOutbox& box) noexcept;
    ~FdOutboxScope();
    FdOutboxScope(const FdOutboxScope&) = delete;
    FdOutboxScope& operator=(const FdOutboxScope&) = delete;

  private:
    FdOutbox* previous_;
};

class FdInboxScope {
  public:
    explicit FdInboxScope(FdInbox& box) noexcept;
    ~FdInboxScope();
    FdInboxScope(const FdInboxScope&) = delete;
    FdInboxScope& operator=(const FdInboxScope&) = delete;

  private:
    FdInbox* previous_;
};

}  // namespace mproc::detail
