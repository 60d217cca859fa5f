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
    if (!file_) {
        file_ = reuse_payload_file(n);
        if (!file_) return move_to_new_file(n);
        reused_ = true;
        if (!heap_.empty()) std::memcpy(file_->data(), heap_.data(), heap_.size());
        file_bytes_ = heap_.size();
        heap_ = {};
    } else if (reused_) {
        // A reused file's size is sealed.
        move_to_new_file(n);
    } else {
        file_->grow(file_capacity(n));
    }
}

void FrameBuffer::move_to_new_file(std::size_t n) {
    auto file = PayloadFile::create(file_capacity(n));
    if (file_) {
        std::memcpy(file->data(), file_->data(), file_bytes_);
        if (reused_) return_payload_file(std::move(file_));
    } else {
        if (!heap_.empty()) std::memcpy(file->data(), heap_.data(), heap_.size());
        file_bytes_ = heap_.size();
        heap_ = {};  // gives the heap's copy back now, not when the frame is done
    }
    file_ = std::move(file);
    reused_ = false;
}

std::shared_ptr<const PayloadFile> FrameBuffer::take_file() {
    if (!file_) return nullptr;
    // A receiver needs the file to be exactly the frame.
    if (reused_ && file_bytes_ != file_->size()) move_to_new_file(file_bytes_);
    if (!reused_) file_->seal(file_bytes_);
    file_bytes_ = 0;
    reused_ = false;
    return share_payload_file(std::move(file_));
}

}  // namespace mproc::detail
