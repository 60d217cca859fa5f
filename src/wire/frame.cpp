#include "mproc/detail/frame.hpp"

#include <algorithm>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/resources.hpp"

namespace mproc::detail {

std::uint64_t default_max_payload_bytes() noexcept {
    static const std::uint64_t bytes = [] {
        try {
            return memory().total;
        } catch (...) {
            // The machine's memory cannot be read (no /proc, no sysinfo): 1 GiB fits anywhere
            // mproc runs.
            return std::uint64_t{1} << 30;
        }
    }();
    return bytes;
}

void refuse_frame_size(std::uint64_t value_bytes, std::uint64_t payload_bytes,
                       std::uint64_t max_payload_bytes) {
    throw SerializationError(
        "mproc: a frame of " + std::to_string(payload_bytes) +
        " bytes (its largest value: " + std::to_string(value_bytes) +
        " bytes) is over the limit of " + std::to_string(max_payload_bytes) +
        " bytes; a Pool takes a larger limit in PoolOptions::max_value_bytes (by default the "
        "machine's memory), and a map's chunk shrinks with a smaller chunksize");
}

std::uint64_t resolve_max_payload_bytes(std::uint64_t configured) {
    if (configured == 0) return default_max_payload_bytes();
    if (configured < min_max_payload_bytes) {
        throw StateError("mproc: max_value_bytes is " + std::to_string(configured) +
                         "; it must be 0 (the machine's memory) or at least " +
                         std::to_string(min_max_payload_bytes) +
                         " (1 MiB), so that errors and batches of small tasks still fit");
    }
    return configured;
}

void check_header(const FrameHeader& header, std::uint64_t max_payload_bytes) {
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

void check_frame_size(const Frame& frame, std::uint64_t max_payload_bytes) {
    const std::uint64_t payload = frame.header().payload_bytes;
    if (payload <= max_payload_bytes) return;
    // The value to name is the largest of the chunk, when its tasks are items.
    std::uint64_t largest = payload;
    if (frame.kind() == FrameKind::task) {
        largest = 0;
        for (ItemReader items(frame.payload()); !items.at_end();) {
            largest = std::max<std::uint64_t>(largest, items.next().size());
        }
    }
    refuse_frame_size(largest, payload, max_payload_bytes);
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
                         std::uint64_t function, std::uint64_t max_payload_bytes)
    : max_payload_bytes_(max_payload_bytes) {
    FrameHeader header{};
    header.magic = frame_magic;
    header.version = frame_version;
    header.kind = static_cast<std::uint16_t>(kind);
    header.sequence = sequence;
    header.entry = entry;
    header.function = function;
    buffer_.append(&header, sizeof header);
}

void FrameWriter::end_long_item(std::size_t length) {
    const std::uint64_t payload =
        buffer_.size() - sizeof(FrameHeader) + item_prefix_bytes(length) - sizeof(ItemLength);
    if (payload > max_payload_bytes_) {
        abandon_item();
        refuse_frame_size(length, payload, max_payload_bytes_);
    }
    write_item_prefix(buffer_, item_start_);
    ++items_;
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
    if (items_ > max_frame_items) {
        throw SerializationError("mproc: a frame would hold " + std::to_string(items_) +
                                 " items, more than its header counts (" +
                                 std::to_string(max_frame_items) + "); use a smaller chunksize");
    }
    FrameHeader header;
    std::memcpy(&header, buffer_.data(), sizeof header);
    header.item_count = static_cast<std::uint32_t>(items_);
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

std::uint64_t ItemReader::long_length() {
    std::uint64_t length = 0;
    if (rest_.size() < sizeof length) refuse("a frame ends inside an item's length", 0);
    std::memcpy(&length, rest_.data(), sizeof length);
    rest_ = rest_.subspan(sizeof length);
    // The long prefix is for long items only: a shorter one is not what a writer makes.
    if (length < long_item) {
        throw SerializationError("mproc: an item of " + std::to_string(length) +
                                 " bytes has the 64-bit length prefix of an item of 4 GiB or more");
    }
    return length;
}

void ItemReader::refuse(const char* what, std::uint64_t length) {
    if (length == 0) throw SerializationError(std::string("mproc: ") + what);
    throw SerializationError("mproc: an item of " + std::to_string(length) + " bytes " + what);
}

}  // namespace mproc::detail
