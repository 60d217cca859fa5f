#pragma once

// The bytes of a frame being written. A frame starts on the heap; once it grows past
// large_frame_bytes its bytes move, once, into a PayloadFile (an idle one written before when
// there is one, see payload_file_reuse.hpp), where it keeps growing without another copy (the
// file is extended and its mapping moved, the pages stay). So a large
// argument or result is encoded straight into the memory the receiver will map, and the
// sender's heap never holds it: a heap that grew by hundreds of MiB would stay that large and
// make every later fork of the process slower.

#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "mproc/detail/payload_file.hpp"

namespace mproc::detail {

// Frames larger than this travel as a PayloadFile. A file costs a fixed ~50 µs (memfd_create,
// mmap and munmap on both sides, the descriptor passed), while the socket costs a copy in and
// a copy out plus the receive buffer's growth, about 0.5 ms per MiB on these machines: at
// 1 MiB the file is already far ahead, and the frames of ordinary tasks, far smaller, never
// pay its fixed cost.
inline constexpr std::size_t large_frame_bytes = std::size_t{1} << 20;

class FrameBuffer {
  public:
    std::size_t size() const noexcept { return file_ ? file_bytes_ : heap_.size(); }
    std::byte* data() noexcept { return file_ ? file_->data() : heap_.data(); }
    bool in_file() const noexcept { return file_ != nullptr; }

    // Grows to n bytes, or cuts back to n. New bytes are for the caller to write: they are
    // zero on the heap, unspecified in a file.
    void resize(std::size_t n) {
        if (n > limit()) make_room(n);
        if (file_) {
            file_bytes_ = n;
        } else {
            heap_.resize(n);
        }
    }
    // Makes room for n bytes in all, so that they can be written without moving.
    void reserve(std::size_t n) {
        if (n > limit()) {
            make_room(n);
        } else if (!file_) {
            heap_.reserve(n);
        }
    }
    void append(const void* bytes, std::size_t n) {
        const std::size_t at = size();
        resize(at + n);
        if (n != 0) std::memcpy(data() + at, bytes, n);
    }
    void push_back(std::byte byte) {
        if (!file_ && heap_.size() < large_frame_bytes) {
            heap_.push_back(byte);
        } else {
            append(&byte, 1);
        }
    }

    // The bytes written, on the heap; empty when they are in a file (see take_file).
    std::vector<std::byte> take_heap() noexcept { return std::move(heap_); }
    // The file that holds the bytes written, cut to their size and sealed; nullptr when they
    // are on the heap.
    std::shared_ptr<const PayloadFile> take_file();

  private:
    std::size_t limit() const noexcept { return file_ ? file_->size() : large_frame_bytes; }
    // Moves the bytes into a file, or grows the file, so that n bytes fit.
    void make_room(std::size_t n);

    // Moves the bytes written into a new file with room for n.
    void move_to_new_file(std::size_t n);

    std::vector<std::byte> heap_;
    std::unique_ptr<PayloadFile> file_;
    std::size_t file_bytes_ = 0;
    bool reused_ = false;  // file_ was sent before: its size is sealed
};

}  // namespace mproc::detail
