#pragma once

// The unit that travels between a pool and its workers: a fixed header, a payload of
// length-prefixed items, and the descriptors that handle types (SharedArray, ...) carry.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

enum class FrameKind : std::uint16_t {
    task = 1,         // a chunk of tasks for a worker
    result = 2,       // the results of one chunk, in the chunk's order
    stop = 3,         // the worker is to exit
    init_failed = 4,  // the worker's initializer threw; one error item follows
    request = 5,      // a call on a manager's container
    response = 6,     // its answer
    bootstrap = 7,    // what a process started by spawn needs before it can serve
    // A chunk of tasks as one block of fixed-size records, and its results as one block
    // (block_codec.hpp).
    task_block = 8,
    result_block = 9,
};

struct FrameHeader {
    std::uint32_t magic;
    std::uint16_t version;
    std::uint16_t kind;
    std::uint32_t fd_count;       // descriptors that travel with this frame
    std::uint32_t item_count;     // tasks in a task frame, results in a result frame
    std::uint64_t sequence;       // the chunk this frame belongs to
    std::uint64_t entry;          // code address of the entry that runs the chunk
    std::uint64_t function;       // code address of the user's function, when it is a pointer
    std::uint64_t payload_bytes;  // bytes after the header
};
static_assert(sizeof(FrameHeader) == 48);

inline constexpr std::uint32_t frame_magic = 0x4350524d;  // "MRPC" read as little-endian
inline constexpr std::uint16_t frame_version = 1;
// The kernel passes at most 253 descriptors in one message (SCM_MAX_FD).
inline constexpr std::uint32_t max_frame_fds = 253;
// No frame is larger; a header that says more is rejected before anything is allocated.
inline constexpr std::uint64_t max_payload_bytes = std::uint64_t{1} << 30;
// An item's length prefix.
using ItemLength = std::uint32_t;

// Throws SerializationError unless the header is one this build can read: the right magic and
// version, a known kind, and counts and lengths within the limits above.
void check_header(const FrameHeader& header);

struct Frame {
    std::vector<std::byte> bytes;  // the header, then the payload
    std::vector<UniqueFd> fds;

    FrameHeader header() const noexcept {
        FrameHeader h;
        std::memcpy(&h, bytes.data(), sizeof h);
        return h;
    }
    FrameKind kind() const noexcept { return static_cast<FrameKind>(header().kind); }
    std::span<const std::byte> payload() const noexcept {
        return std::span(bytes).subspan(sizeof(FrameHeader));
    }
};

// A frame with the same bytes and duplicates of its descriptors.
Frame copy_frame(const Frame& frame);

// Builds one frame: the header first, then items appended one by one, each behind its length.
// A writer makes a single frame: after finish() it is spent.
class FrameWriter {
  public:
    FrameWriter(FrameKind kind, std::uint64_t sequence, std::uint64_t entry = 0,
                std::uint64_t function = 0);

    // The buffer an item's encoder appends to, between begin_item() and end_item().
    std::vector<std::byte>& buffer() noexcept { return frame_.bytes; }
    // Makes room for payload_bytes more, so that a frame whose size is known in advance is
    // written without regrowing (each regrowth copies and touches fresh pages).
    void reserve(std::size_t payload_bytes) {
        frame_.bytes.reserve(frame_.bytes.size() + payload_bytes);
    }
    // Inline: these run once per task and per result.
    void begin_item() {
        item_start_ = frame_.bytes.size();
        frame_.bytes.resize(item_start_ + sizeof(ItemLength));
    }
    // Throws SerializationError, having dropped the item, when the item or the frame has grown
    // past its limit.
    void end_item() {
        const std::size_t length = frame_.bytes.size() - item_start_ - sizeof(ItemLength);
        if (length > max_payload_bytes ||
            frame_.bytes.size() - sizeof(FrameHeader) > max_payload_bytes) {
            refuse_item(length);
        }
        const auto prefix = static_cast<ItemLength>(length);
        std::memcpy(frame_.bytes.data() + item_start_, &prefix, sizeof prefix);
        ++items_;
    }
    // Drops what was appended since begin_item(), for an item whose encoding failed.
    void abandon_item() noexcept { frame_.bytes.resize(item_start_); }
    std::size_t item_count() const noexcept { return items_; }
    // Descriptors that travel with the frame (see fd_passing.hpp).
    void add_fds(std::vector<UniqueFd> fds);
    // Completes the header; the writer is empty afterwards.
    Frame finish();

  private:
    [[noreturn]] void refuse_item(std::size_t length);

    Frame frame_;
    std::size_t item_start_ = 0;
    std::uint32_t items_ = 0;
};

// Reads a frame's items in order. A length that runs past the payload is a SerializationError.
class ItemReader {
  public:
    explicit ItemReader(std::span<const std::byte> payload) noexcept : rest_(payload) {}
    bool at_end() const noexcept { return rest_.empty(); }
    // Inline: it runs once per task and per result.
    std::span<const std::byte> next() {
        ItemLength length = 0;
        if (rest_.size() < sizeof length) refuse("a frame ends inside an item's length", 0);
        std::memcpy(&length, rest_.data(), sizeof length);
        rest_ = rest_.subspan(sizeof length);
        if (length > rest_.size()) refuse("runs past the end of its frame", length);
        auto item = rest_.first(length);
        rest_ = rest_.subspan(length);
        return item;
    }

  private:
    // Throws SerializationError: what, about an item of length bytes when length is not 0.
    [[noreturn]] static void refuse(const char* what, std::size_t length);

    std::span<const std::byte> rest_;
};

}  // namespace mproc::detail
