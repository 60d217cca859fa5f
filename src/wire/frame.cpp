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
        header.kind > static_cast<std::uint16_t>(FrameKind::result_block)) {
        throw SerializationError("mproc: a frame has the unknown kind " +
                                 std::to_string(header.kind));
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

Frame copy_frame(const Frame& frame) {
    Frame copy;
    copy.bytes = frame.bytes;
    for (const auto& fd : frame.fds) copy.fds.push_back(fd.duplicate());
    return copy;
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
    frame_.bytes.resize(sizeof header);
    std::memcpy(frame_.bytes.data(), &header, sizeof header);
}

void FrameWriter::refuse_item(std::size_t length) {
    abandon_item();
    throw SerializationError("mproc: a value of " + std::to_string(length) +
                             " bytes makes a frame larger than the limit of " +
                             std::to_string(max_payload_bytes) + " bytes");
}

void FrameWriter::add_fds(std::vector<UniqueFd> fds) {
    for (auto& fd : fds) frame_.fds.push_back(std::move(fd));
    if (frame_.fds.size() > max_frame_fds) {
        throw SerializationError("mproc: a frame would carry more than " +
                                 std::to_string(max_frame_fds) + " shared handles");
    }
}

Frame FrameWriter::finish() {
    FrameHeader header = frame_.header();
    header.item_count = items_;
    header.fd_count = static_cast<std::uint32_t>(frame_.fds.size());
    header.payload_bytes = frame_.bytes.size() - sizeof header;
    std::memcpy(frame_.bytes.data(), &header, sizeof header);
    items_ = 0;
    return std::move(frame_);
}

void ItemReader::refuse(const char* what, std::size_t length) {
    if (length == 0) throw SerializationError(std::string("mproc: ") + what);
    throw SerializationError("mproc: an item of " + std::to_string(length) + " bytes " + what);
}

}  // namespace mproc::detail
