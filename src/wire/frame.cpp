#include "mproc/detail/frame.hpp"

#include <string>

#include "mproc/errors.hpp"

namespace mproc::detail {

void check_header(const FrameHeader& header) {
    if (header.magic != frame_magic) {
        throw SerializationError("mproc: a frame does not start with mproc's magic number");
    }
    if (header.version != frame_version) {
        throw SerializationError("mproc: a frame has wire version " +
                                 std::to_string(header.version) + ", this build reads " +
                                 std::to_string(frame_version));
    }
    if (header.kind < static_cast<std::uint16_t>(FrameKind::task) ||
        header.kind > static_cast<std::uint16_t>(FrameKind::retiring)) {
        throw SerializationError("mproc: a frame has the unknown kind " +
                                 std::to_string(header.kind));
    }
    if ((header.flags & ~std::uint16_t{payload_in_file | piece_of_batch | claimed_from_board}) !=
        0) {
        throw SerializationError("mproc: a frame has the unknown flags " +
                                 std::to_string(header.flags));
    }
    if ((header.flags & payload_in_file) != 0 && header.fd_count == 0) {
        throw SerializationError(
            "mproc: a frame claims that its payload travels in a file (a memfd) but carries no "
            "descriptor");
    }
    if (header.fd_count > max_frame_fds) {
        throw SerializationError("mproc: a frame claims " + std::to_string(header.fd_count) +
                                 " descriptors, more than the " + std::to_string(max_frame_fds) +
                                 " one message can carry");
    }
    if (header.payload_bytes > max_payload_bytes) {
        throw SerializationError("mproc: a frame claims " + std::to_string(header.payload_bytes) +
                                 " bytes, more than the limit of " +
                                 std::to_string(max_payload_bytes));
    }
    // A block's tasks have at least a byte each, an item its length prefix.
    const bool block = header.kind == static_cast<std::uint16_t>(FrameKind::task_block) ||
                       header.kind == static_cast<std::uint16_t>(FrameKind::result_block);
    const std::uint64_t smallest = block ? 1 : sizeof(ItemLength);
    if (header.item_count > header.payload_bytes / smallest) {
        throw SerializationError("mproc: a frame claims more items than its payload can hold");
    }
}

void Frame::append_fds(std::vector<int>& out) const {
    for (const auto& fd : fds) out.push_back(fd.get());
    if (file) out.push_back(file->fd().get());
}

Frame copy_frame(const Frame& frame) {
    Frame copy;
    copy.bytes = frame.bytes;
    copy.file = frame.file;
    for (const auto& fd : frame.fds) copy.fds.push_back(fd.duplicate());
    return copy;
}

void adopt_payload_file(Frame& frame) {
    const FrameHeader header = frame.header();
    if ((header.flags & payload_in_file) == 0) return;
    // check_header made sure that at least one descriptor was promised, and the transport that
    // it arrived; this guards a caller that skipped either.
    if (frame.fds.empty()) {
        throw SerializationError(
            "mproc: a frame claims that its payload travels in a file (a memfd) but none "
            "arrived with it");
    }
    UniqueFd fd = std::move(frame.fds.back());
    frame.fds.pop_back();
    frame.file = PayloadFile::adopt(std::move(fd), sizeof header + header.payload_bytes);
}

FrameWriter::FrameWriter(FrameKind kind, std::uint64_t sequence, std::uint64_t entry,
                         std::uint64_t function) {
    FrameHeader header{};
    header.magic = frame_magic;
    header.version = frame_version;
    header.kind = static_cast<std::uint16_t>(kind);
    header.sequence = sequence;
    header.entry = entry;
    header.function = function;
    buffer_.append(&header, sizeof header);
}

void FrameWriter::refuse_item(std::size_t length) {
    abandon_item();
    throw SerializationError("mproc: a value of " + std::to_string(length) +
                             " bytes makes a frame larger than the limit of " +
                             std::to_string(max_payload_bytes) + " bytes");
}

void FrameWriter::add_fds(std::vector<UniqueFd> fds) {
    for (auto& fd : fds) fds_.push_back(std::move(fd));
    if (fds_.size() > max_frame_fds) refuse_fds(max_frame_fds);
}

void FrameWriter::refuse_fds(std::size_t limit) {
    throw SerializationError("mproc: a frame would carry more than " + std::to_string(limit) +
                             " shared handles");
}

Frame FrameWriter::finish() {
    FrameHeader header;
    std::memcpy(&header, buffer_.data(), sizeof header);
    header.item_count = items_;
    header.payload_bytes = buffer_.size() - sizeof header;
    header.flags = buffer_.in_file() ? payload_in_file : 0;
    // A large frame's file rides beside the handles' descriptors.
    if (buffer_.in_file() && fds_.size() + 1 > max_frame_fds) refuse_fds(max_frame_fds - 1);
    header.fd_count = static_cast<std::uint16_t>(fds_.size() + (buffer_.in_file() ? 1 : 0));
    std::memcpy(buffer_.data(), &header, sizeof header);
    Frame frame;
    if (buffer_.in_file()) {
        frame.bytes.resize(sizeof header);
        std::memcpy(frame.bytes.data(), &header, sizeof header);
        frame.file = buffer_.take_file();
    } else {
        frame.bytes = buffer_.take_heap();
    }
    frame.fds = std::move(fds_);
    items_ = 0;
    return frame;
}

void ItemReader::refuse(const char* what, std::size_t length) {
    if (length == 0) throw SerializationError(std::string("mproc: ") + what);
    throw SerializationError("mproc: an item of " + std::to_string(length) + " bytes " + what);
}

}  // namespace mproc::detail
