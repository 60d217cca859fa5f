#pragma once

// One block of memory that several processes map at once: an anonymous memfd and this
// process's mapping of it. Handle types (SharedArray, and later named SharedMemory) hold one
// through a shared_ptr; the block is freed by the kernel when the last descriptor and the last
// mapping of it, in any process, are gone. Nothing is created in /dev/shm.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

class SharedRegion {
  public:
    // A new zero-filled block of `bytes` bytes, mapped read-write and shared. Its size is sealed,
    // so no process that holds it can shrink it under another's mapping (which would make that
    // mapping fault with SIGBUS). bytes == 0 makes a block with no mapping; data() is nullptr.
    // Throws mproc::Error, having released everything it took, when the size is more than this
    // machine's memory and swap, or when the kernel refuses (EMFILE, ENOMEM, ...).
    static std::shared_ptr<SharedRegion> create(std::size_t bytes);

    // Takes ownership of fd, a block made by create() in this or another process, and maps it;
    // the size comes from the descriptor. Throws mproc::Error when fd is not such a block (not a
    // memfd, or its size not sealed) or cannot be mapped; fd is closed in that case.
    static std::shared_ptr<SharedRegion> adopt(UniqueFd fd);

    // Unmaps the block and closes its descriptor; the memory lives on in other holders.
    ~SharedRegion();
    SharedRegion(const SharedRegion&) = delete;
    SharedRegion& operator=(const SharedRegion&) = delete;

    // The start of this process's mapping (nullptr when size() is 0). The memory is shared, so
    // a const region still hands out writable bytes, as std::span does.
    std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    // The descriptor, for a handle's save() to hand to an FdOutbox.
    const UniqueFd& fd() const noexcept { return fd_; }

  private:
    SharedRegion(UniqueFd fd, std::size_t size) noexcept;
    // Maps fd_ over size_ bytes; run only after construction, so that a failure here is cleaned
    // up by the destructor like any other.
    void map();

    UniqueFd fd_;
    std::size_t size_;
    std::byte* data_ = nullptr;
};

// A handle to a region, on the wire: the index of its descriptor in the frame. `what` names the
// handle type in the error raised outside a frame.
template <class Archive>
void save_region(Archive& archive, const SharedRegion& region, const char* what) {
    archive(require_fd_outbox(what).add(region.fd()));
}

template <class Archive>
std::shared_ptr<SharedRegion> load_region(Archive& archive, const char* what) {
    FdInbox& inbox = require_fd_inbox(what);
    std::uint32_t index = 0;
    archive(index);
    return SharedRegion::adopt(inbox.take(index));
}

}  // namespace mproc::detail
