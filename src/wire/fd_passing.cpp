#include "mproc/detail/fd_passing.hpp"

#include <string>

#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {
thread_local FdOutbox* outbox = nullptr;
thread_local FdInbox* inbox = nullptr;
}  // namespace

std::uint32_t FdOutbox::add(const UniqueFd& fd) {
    fds_.push_back(fd.duplicate());
    return static_cast<std::uint32_t>(fds_.size() - 1);
}

UniqueFd FdInbox::take(std::uint32_t index) const {
    if (index >= fds_.size()) {
        throw SerializationError("mproc: a handle names descriptor " + std::to_string(index) +
                                 " but its frame carries " + std::to_string(fds_.size()));
    }
    return fds_[index].duplicate();
}

FdOutbox& require_fd_outbox(const char* what) {
    if (outbox == nullptr) {
        throw SerializationError(std::string("mproc: a ") + what +
                                 " can only be sent through mproc: as a task argument or result, "
                                 "or an argument of mproc::bind");
    }
    return *outbox;
}

FdInbox& require_fd_inbox(const char* what) {
    if (inbox == nullptr) {
        throw SerializationError(std::string("mproc: a ") + what +
                                 " can only be received through mproc: as a task argument or "
                                 "result, or an argument of mproc::bind");
    }
    return *inbox;
}

FdOutbox* current_fd_outbox() noexcept {
    return outbox;
}
FdInbox* current_fd_inbox() noexcept {
    return inbox;
}

FdOutboxScope::FdOutboxScope(FdOutbox& box) noexcept : previous_(outbox) {
    outbox = &box;
}
FdOutboxScope::~FdOutboxScope() {
    outbox = previous_;
}
FdInboxScope::FdInboxScope(FdInbox& box) noexcept : previous_(inbox) {
    inbox = &box;
}
FdInboxScope::~FdInboxScope() {
    inbox = previous_;
}

}  // namespace mproc::detail
