#pragma once

// Memory that several processes read and write at once.
//
//   SharedArray<T>   n elements in an anonymous block, passed to other processes as a handle.
//
// Named shared memory, which unrelated processes attach to by name, belongs in this header too,
// after SharedArray.

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

}  // namespace mproc
