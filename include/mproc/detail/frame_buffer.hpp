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
    std::size_t size() const noexcept { return size_; }
    std::byte* data() noexcept { return data_; }
    bool in_file() const noexcept { return file_ != nullptr; }

    // Inline, with one test on the way: these run several times per task and per result.
    // Grows to n bytes, or cuts back to n. New bytes are for the caller to write.
    void resize(std::size_t n) {
        if (n > capacity_) make_room(n);
        size_ = n;
    }
    // Makes room for n bytes in all, so that they can be written without moving.
    void reserve(std::size_t n) {
        if (n > capacity_) make_room(n);
    }
    void append(const void* bytes, std::size_t n) {
        const std::size_t at = size_;
        resize(at + n);
        if (n != 0) std::memcpy(data_ + at, bytes, n);
    }
    void push_back(std::byte byte) {
        if (size_ == capacity_) make_room(size_ + 1);
        data_[size_++] = byte;
    }

    // The bytes written, on the heap; empty when they are in a file (see take_file).
    std::vector<std::byte> take_heap() noexcept;
    // The file that holds the bytes written, cut to their size and sealed; nullptr when they
    // are on the heap.
    std::shared_ptr<const PayloadFile> take_file();

  private:
    // Grows the heap, moves the bytes into a file, or grows the file, so that n bytes fit.
    void make_room(std::size_t n);
    // Moves the bytes written into a new file with room for n.
    void move_to_new_file(std::size_t n);
    void use_file(std::unique_ptr<PayloadFile> file, bool reused);

    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
    std::vector<std::byte> heap_;  // sized to the capacity, while the bytes are on the heap
    std::unique_ptr<PayloadFile> file_;
    bool reused_ = false;  // file_ was sent before: its size is sealed
};

}  // namespace mproc::detail
