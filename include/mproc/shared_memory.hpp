#pragma once

// Memory that several processes read and write at once.
//
//   SharedArray<T>   n elements in an anonymous block, passed to other processes as a handle.
//   SharedMemory     a block of bytes with a name, which unrelated processes attach to by name.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/detail/shared_region.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {
// The descriptor index an empty SharedArray writes: it has no block, so it sends no descriptor.
inline constexpr std::uint32_t no_shared_region = std::numeric_limits<std::uint32_t>::max();
}  // namespace detail

// A fixed number of T in one block of memory shared between processes, like Python's
// multiprocessing.Array. It is a handle: copies share the memory, a child made by fork() shares
// it, and one sent to another process through mproc (a task argument or result) travels as its
// descriptor, never as a copy of the data, so the receiver reads and writes the same memory. The
// memory is freed when the last handle, in any process, goes away.
//
// Nothing orders the processes' accesses: guard elements with a lock, or use std::atomic_ref.
// Like std::span, a const handle still gives writable elements, since any copy of it could.
template <class T>
class SharedArray {
    static_assert(std::is_trivially_copyable_v<T>,
                  "mproc::SharedArray<T> needs a trivially copyable T: other processes see its "
                  "elements as plain bytes, so no constructor, destructor or copy of T runs there");
    static_assert(alignof(T) <= 4096,
                  "mproc::SharedArray<T> needs alignof(T) <= 4096: the memory is page-aligned");

  public:
    using value_type = T;
    using size_type = std::size_t;
    using iterator = T*;

    // An empty array with no memory, the state cereal loads into and a moved-from one is in.
    SharedArray() noexcept = default;

    // n elements, every byte of them zero. n == 0 gives an empty array and allocates nothing.
    // Throws mproc::Error when n * sizeof(T) overflows or is more than this machine's memory
    // and swap, or when the kernel refuses the memory; nothing is left allocated then.
    explicit SharedArray(std::size_t n);

    // Element i; requires i < size() (not checked, as with std::vector).
    T& operator[](std::size_t i) const noexcept { return data()[i]; }
    // The first element, or nullptr when empty.
    T* data() const noexcept { return region_ ? reinterpret_cast<T*>(region_->data()) : nullptr; }
    std::size_t size() const noexcept { return region_ ? region_->size() / sizeof(T) : 0; }
    bool empty() const noexcept { return size() == 0; }
    std::span<T> span() const noexcept { return {data(), size()}; }
    T* begin() const noexcept { return data(); }
    T* end() const noexcept { return data() + size(); }

    // cereal's hook for sending: hands the block's descriptor to the frame being encoded and
    // writes its index and the element count. Throws SerializationError outside mproc's
    // encoding of a task argument or result (there is no current FdOutbox then), because
    // another archive would need a copy of the data, which a handle never is.
    template <class Archive>
    void save(Archive& archive) const;

    // cereal's hook for receiving: maps the block whose descriptor the frame being decoded
    // carries. Throws SerializationError outside mproc's decoding (no current FdInbox), when the
    // frame lacks the descriptor, or when the block's size is not count * sizeof(T) (sender and
    // receiver disagree on T); mproc::Error when the block cannot be mapped. On a throw, *this
    // is unchanged.
    template <class Archive>
    void load(Archive& archive);

  private:
    std::shared_ptr<detail::SharedRegion> region_;
};

template <class T>
SharedArray<T>::SharedArray(std::size_t n) {
    if (n == 0) return;
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) {
        throw Error("mproc: a SharedArray of " + std::to_string(n) + " elements of " +
                    std::to_string(sizeof(T)) + " bytes is larger than any memory can be");
    }
    region_ = detail::SharedRegion::create(n * sizeof(T));
}

template <class T>
template <class Archive>
void SharedArray<T>::save(Archive& archive) const {
    detail::FdOutbox* outbox = detail::current_fd_outbox();
    if (outbox == nullptr) {
        throw SerializationError(
            "mproc: a SharedArray can only be sent through mproc (a task argument or result)");
    }
    std::uint32_t index = region_ ? outbox->add(region_->fd()) : detail::no_shared_region;
    archive(index, static_cast<std::uint64_t>(size()));
}

template <class T>
template <class Archive>
void SharedArray<T>::load(Archive& archive) {
    detail::FdInbox* inbox = detail::current_fd_inbox();
    if (inbox == nullptr) {
        throw SerializationError(
            "mproc: a SharedArray can only be received through mproc (a task argument or "
            "result)");
    }
    std::uint32_t index = 0;
    std::uint64_t count = 0;
    archive(index, count);
    if (index == detail::no_shared_region) {
        if (count != 0) {
            throw SerializationError("mproc: a SharedArray arrived with " + std::to_string(count) +
                                     " elements but no memory");
        }
        region_.reset();
        return;
    }
    std::shared_ptr<detail::SharedRegion> region = detail::SharedRegion::adopt(inbox->take(index));
    if (region->size() % sizeof(T) != 0 || region->size() / sizeof(T) != count) {
        throw SerializationError(
            "mproc: a SharedArray of " + std::to_string(count) + " elements of " +
            std::to_string(sizeof(T)) + " bytes arrived with a block of " +
            std::to_string(region->size()) +
            " bytes; the sender and the receiver disagree on its element type");
    }
    region_ = std::move(region);
}

namespace detail {

// A named POSIX shared memory object (/dev/shm/<name>) mapped into this process, with the
// descriptor it was opened with, kept so that the memory can be sent to another process. The
// mapping and the descriptor go when the last handle in this process does; the name stays.
class NamedRegion {
  public:
    // See SharedMemory::create and SharedMemory::attach.
    static std::shared_ptr<NamedRegion> create(std::string name, std::size_t bytes);
    static std::shared_ptr<NamedRegion> attach(std::string name);
    // Takes ownership of fd, an object another process sent under `name`, and maps it. Throws
    // mproc::Error when the name is not a valid one or fd is not a non-empty regular file.
    static std::shared_ptr<NamedRegion> adopt(UniqueFd fd, std::string name);

    ~NamedRegion();
    NamedRegion(const NamedRegion&) = delete;
    NamedRegion& operator=(const NamedRegion&) = delete;

    std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    // Without the leading '/'.
    const std::string& name() const noexcept { return name_; }
    const UniqueFd& fd() const noexcept { return fd_; }
    // See SharedMemory::unlink.
    void unlink() const;

  private:
    NamedRegion(UniqueFd fd, std::string name, std::size_t size) noexcept;
    // Run after construction, so that the destructor cleans up a failure like any other.
    void map();

    UniqueFd fd_;
    std::string name_;
    std::size_t size_;
    std::byte* data_ = nullptr;
};

}  // namespace detail

// A block of bytes shared between processes under a name, like Python's
// multiprocessing.shared_memory.SharedMemory: one process creates it, any process of the same
// user attaches to it by name, related or not (another program, a process started with spawn).
// It is a handle: copies share one mapping, a child made by fork() shares it, and one sent
// through mproc (a task argument or result, a pipe message) travels as its descriptor and its
// name, never as a copy of the bytes.
//
// Unlike every other shared object in mproc, the name outlives all of its users: the memory
// stays in /dev/shm, taking RAM, until someone calls unlink(), even after every process has
// exited. Call unlink() once, from one process, when no new process needs to attach; handles
// already open keep working after it. Prefer SharedArray when the other processes are started
// by this program: it has no name to leak.
//
// Names are those of shm_open: "block" and "/block" name the same object, /dev/shm/block. Any
// process that can open the name can also resize the object, and touching memory past a
// shrunken end kills a process with SIGBUS; mproc never resizes it.
//
// Nothing orders the processes' accesses: guard the bytes with a lock, or use std::atomic_ref.
// Like std::span, a const handle still gives writable bytes.
class SharedMemory {
  public:
    // A new object of `bytes` bytes, every one zero, mapped read-write, readable and writable
    // by this user only (mode 0600). The memory is reserved now, so that a /dev/shm too small
    // for it (a container's is often 64 MiB) is an error here rather than a SIGBUS later.
    // Throws mproc::Error when the name is invalid (empty, "." or "..", longer than 255 bytes,
    // or holding a '/' other than a leading one), when an object of that name exists already,
    // when bytes is 0 or there is no room for it, or when the kernel refuses; nothing is left
    // behind then, neither a name in /dev/shm nor a descriptor.
    static SharedMemory create(std::string name, std::size_t bytes);

    // Maps the existing object `name` read-write; its size is the object's. Throws mproc::Error
    // saying "no shared memory named ..." when there is none, and mproc::Error when the name is
    // invalid, the object is empty (its creator has not sized it yet) or cannot be opened
    // (another user's, without permission) or mapped.
    static SharedMemory attach(std::string name);

    // A handle to nothing: data() nullptr, size() 0, name() empty. What cereal loads into and
    // a moved-from handle is in.
    SharedMemory() noexcept = default;

    // The first byte, or nullptr for an empty handle.
    std::byte* data() const noexcept { return region_ ? region_->data() : nullptr; }
    std::size_t size() const noexcept { return region_ ? region_->size() : 0; }
    std::span<std::byte> span() const noexcept { return {data(), size()}; }
    // The name without its leading '/', as Python gives it; empty for an empty handle.
    const std::string& name() const noexcept;

    // Removes the name, so that no process can attach to it any more and the memory is freed
    // once every handle, in every process, has gone. Handles already open go on working. It
    // removes the name only while it still names this memory: a second unlink, from any copy
    // in any process, does nothing, and so does an unlink after the name was removed and
    // created again for other memory. Throws StateError on an empty handle, and mproc::Error
    // when the kernel refuses (permission).
    void unlink() const;

    // cereal's hooks: the object travels as its descriptor (through the frame's FdOutbox) and
    // its name. Throws SerializationError outside mproc's encoding or decoding, or when the
    // frame lacks the descriptor; mproc::Error when the received object cannot be mapped. On a
    // throw from load, *this is unchanged.
    template <class Archive>
    void save(Archive& archive) const;
    template <class Archive>
    void load(Archive& archive);

  private:
    explicit SharedMemory(std::shared_ptr<detail::NamedRegion> region) noexcept
        : region_(std::move(region)) {}

    std::shared_ptr<detail::NamedRegion> region_;
};

template <class Archive>
void SharedMemory::save(Archive& archive) const {
    detail::FdOutbox& outbox = detail::require_fd_outbox("SharedMemory");
    if (!region_) {
        archive(detail::no_shared_region, std::string());
        return;
    }
    archive(outbox.add(region_->fd()), region_->name());
}

template <class Archive>
void SharedMemory::load(Archive& archive) {
    detail::FdInbox& inbox = detail::require_fd_inbox("SharedMemory");
    std::uint32_t index = 0;
    std::string name;
    archive(index, name);
    if (index == detail::no_shared_region) {
        region_.reset();
        return;
    }
    region_ = detail::NamedRegion::adopt(inbox.take(index), std::move(name));
}

}  // namespace mproc
