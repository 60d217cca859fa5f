#include "mproc/detail/frame_buffer.hpp"

#include <algorithm>

#include "wire/payload_file_reuse.hpp"

namespace mproc::detail {

namespace {
// A new file starts with room to double, and grows by doubling: growth costs a system call,
// never a copy, and the pages not written are never allocated.
std::size_t file_capacity(std::size_t needed) noexcept {
    constexpr std::size_t page = 4096;
    return (std::max(needed * 2, 2 * large_frame_bytes) + page - 1) / page * page;
}
}  // namespace

void FrameBuffer::make_room(std::size_t n) {
    if (!file_ && n <= large_frame_bytes) {
        // As std::vector grows, but never past the threshold.
        heap_.resize(std::min(std::max(n, 2 * capacity_), large_frame_bytes));
        data_ = heap_.data();
        capacity_ = heap_.size();
    } else if (!file_) {
        if (auto file = reuse_payload_file(n)) {
            use_file(std::move(file), true);
        } else {
            move_to_new_file(n);
        }
    } else if (reused_) {
        move_to_new_file(n);  // a reused file's size is sealed
    } else {
        file_->grow(file_capacity(n));
        data_ = file_->data();
        capacity_ = file_->size();
    }
}

void FrameBuffer::move_to_new_file(std::size_t n) {
    use_file(PayloadFile::create(file_capacity(n)), false);
}

void FrameBuffer::use_file(std::unique_ptr<PayloadFile> file, bool reused) {
    if (size_ != 0) std::memcpy(file->data(), data_, size_);
    if (file_ && reused_) return_payload_file(std::move(file_));
    heap_ = {};  // gives the heap's copy back now, not when the frame is done
    file_ = std::move(file);
    reused_ = reused;
    data_ = file_->data();
    capacity_ = file_->size();
}

std::vector<std::byte> FrameBuffer::take_heap() noexcept {
    heap_.resize(size_);  // never more than it holds: no allocation
    data_ = nullptr;
    size_ = capacity_ = 0;
    return std::move(heap_);
}

std::shared_ptr<const PayloadFile> FrameBuffer::take_file() {
    if (!file_) return nullptr;
    // A receiver needs the file to be exactly the frame.
    if (reused_ && size_ != file_->size()) move_to_new_file(size_);
    if (!reused_) file_->seal(size_);
    auto file = share_payload_file(std::move(file_));
    data_ = nullptr;
    size_ = capacity_ = 0;
    reused_ = false;
    return file;
}

}  // namespace mproc::detail
