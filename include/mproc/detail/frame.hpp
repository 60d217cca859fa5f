#pragma once

// The unit that travels between a pool and its workers: a fixed header, a payload of
// length-prefixed items, and the descriptors that handle types (SharedArray, ...) carry. A
// frame larger than large_frame_bytes travels as a PayloadFile: the stream carries its header
// alone, and the file, passed beside the handles' descriptors, holds the whole frame.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "mproc/detail/frame_buffer.hpp"
#include "mproc/detail/payload_file.hpp"
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
    // A worker's answer to a chunk it did not run, since the pool cancelled it before it began
    // (WorkerStatus::skipped).
    skipped = 10,
    // A worker over the pool's max_memory_per_child after a chunk: it runs nothing more, and
    // its chunks not begun are the pool's to send elsewhere. It exits after this frame.
    retiring = 11,
};

struct FrameHeader {
    std::uint32_t magic;
    std::uint16_t version;
    std::uint16_t kind;
    std::uint16_t fd_count;       // descriptors that travel with this frame, its file's included
    std::uint16_t flags;          // FrameFlags
    std::uint32_t item_count;     // tasks in a task frame, results in a result frame
    std::uint64_t sequence;       // the chunk this frame belongs to
    std::uint64_t entry;          // code address of the entry that runs the chunk
    std::uint64_t function;       // code address of the user's function, when it is a pointer
    std::uint64_t payload_bytes;  // bytes after the header
};
static_assert(sizeof(FrameHeader) == 48);

inline constexpr std::uint32_t frame_magic = 0x4350524d;  // "MRPC" read as little-endian
inline constexpr std::uint16_t frame_version = 3;

enum FrameFlags : std::uint16_t {
    // The payload is not in the stream: the frame's last descriptor is a PayloadFile that
    // holds the whole frame, header included.
    payload_in_file = 1,
    // A task_block frame cut from a batch of separate tasks: the worker may end it after any
    // task once it has run for a while, and send the results of the tasks it ran; the pool
    // sends the rest again (run_block_chunk, PoolCore::Impl::deliver).
    piece_of_batch = 2,
    // A task_block frame whose tasks the worker takes from its pool's ClaimBoard until none is
    // left (its payload starts with the board's generation), and its result_block: the
    // results of the tasks this worker took, followed by their indices (block_codec.hpp).
    claimed_from_board = 4,
};
// The kernel passes at most 253 descriptors in one message (SCM_MAX_FD).
inline constexpr std::uint32_t max_frame_fds = 253;
// The largest payload a frame may have unless its user sets another limit (a Pool's
// PoolOptions::max_value_bytes): the machine's memory (mproc::memory().total), read once. A
// header that claims more is refused before anything is mapped or allocated.
std::uint64_t default_max_payload_bytes() noexcept;
// A frame holds at most this many items (tasks or results): its header counts them in 32 bits.
inline constexpr std::uint64_t max_frame_items = std::numeric_limits<std::uint32_t>::max();

// An item's length prefix: 4 bytes, or, for an item of long_item bytes or more, long_item
// followed by the length as a std::uint64_t. Tiny tasks keep their 4 bytes, and no item is too
// long to say how long it is.
using ItemLength = std::uint32_t;
inline constexpr ItemLength long_item = std::numeric_limits<std::uint32_t>::max();
// The prefix before an item of `length` bytes.
inline constexpr std::size_t item_prefix_bytes(std::uint64_t length) noexcept {
    return sizeof(ItemLength) + (length >= long_item ? sizeof(std::uint64_t) : 0);
}

// Writes the prefix of the item that starts at `item_start` in `out` (a FrameBuffer or a byte
// vector), whose bytes follow a placeholder of sizeof(ItemLength) bytes. A long item's bytes
// move up to make room for its 64-bit length: a copy, but only of an item of 4 GiB or more,
// next to which its encoding already cost as much.
template <class Buffer>
void write_item_prefix(Buffer& out, std::size_t item_start) {
    const std::uint64_t length = out.size() - item_start - sizeof(ItemLength);
    if (length < long_item) {
        const auto prefix = static_cast<ItemLength>(length);
        std::memcpy(out.data() + item_start, &prefix, sizeof prefix);
        return;
    }
    out.resize(out.size() + sizeof length);
    std::byte* item = out.data() + item_start;
    std::memmove(item + item_prefix_bytes(length), item + sizeof(ItemLength), length);
    std::memcpy(item, &long_item, sizeof long_item);
    std::memcpy(item + sizeof long_item, &length, sizeof length);
}

// Throws SerializationError when a frame of payload_bytes (whose largest value, or chunk of
// tasks, is value_bytes) is over max_payload_bytes: the sender's refusal, which names the
// sizes, the limit and the option that raises it.
[[noreturn]] void refuse_frame_size(std::uint64_t value_bytes, std::uint64_t payload_bytes,
                                    std::uint64_t max_payload_bytes);

// The smallest limit a frame's user may set, so that the frames a pool makes of small values
// still fit: an error and its traceback, a batch of max_default_chunk tasks of numbers.
inline constexpr std::uint64_t min_max_payload_bytes = std::uint64_t{1} << 20;
// A limit as its user configures it: 0 is default_max_payload_bytes(). StateError for one under
// min_max_payload_bytes.
std::uint64_t resolve_max_payload_bytes(std::uint64_t configured);

// Throws SerializationError unless the header is one this build can read: the right magic and
// version, a known kind, known flags, and counts within the limits above and a payload of at
// most max_payload_bytes.
void check_header(const FrameHeader& header,
                  std::uint64_t max_payload_bytes = default_max_payload_bytes());

// The bytes of the frame that travel in the stream: the header, and the payload unless the
// payload travels in a file.
inline std::size_t stream_bytes(const FrameHeader& header) noexcept {
    return sizeof header + ((header.flags & payload_in_file) != 0 ? 0 : header.payload_bytes);
}

struct Frame {
    std::vector<std::byte> bytes;             // the header, then the payload unless `file` holds it
    std::shared_ptr<const PayloadFile> file;  // the whole frame, for a large one; else nullptr
    std::vector<UniqueFd> fds;                // the handles' descriptors

    FrameHeader header() const noexcept {
        FrameHeader h;
        std::memcpy(&h, bytes.data(), sizeof h);
        return h;
    }
    FrameKind kind() const noexcept { return static_cast<FrameKind>(header().kind); }
    std::span<const std::byte> payload() const noexcept {
        if (file) return std::span(file->data(), file->size()).subspan(sizeof(FrameHeader));
        return std::span(bytes).subspan(sizeof(FrameHeader));
    }
    // The header and the payload, wherever the payload travels.
    std::size_t size() const noexcept { return file ? file->size() : bytes.size(); }
    // Whether descriptors travel with the frame's first byte.
    bool has_fds() const noexcept { return !fds.empty() || file; }
    // Appends the descriptors to send with the frame: the handles', then the file's.
    void append_fds(std::vector<int>& out) const;
};

// The sender's check of a frame built without a limit: refuse_frame_size unless its payload is
// at most max_payload_bytes.
void check_frame_size(const Frame& frame, std::uint64_t max_payload_bytes);

// A frame with the same bytes and duplicates of its descriptors; the file, which nobody
// writes while a frame holds it, is shared.
Frame copy_frame(const Frame& frame);

// Completes a frame whose stream bytes and descriptors (all header.fd_count of them) arrived:
// when its payload travels in a file, the last descriptor becomes its file. Throws
// SerializationError when that descriptor is not such a file or not of the size the header
// claims.
void adopt_payload_file(Frame& frame);

// Builds one frame: the header first, then items appended one by one, each behind its length.
// A writer makes a single frame: after finish() it is spent.
class FrameWriter {
  public:
    // max_payload_bytes: the largest payload end_item lets the frame reach.
    FrameWriter(FrameKind kind, std::uint64_t sequence, std::uint64_t entry = 0,
                std::uint64_t function = 0,
                std::uint64_t max_payload_bytes = default_max_payload_bytes());

    // The buffer an item's encoder appends to, between begin_item() and end_item().
    FrameBuffer& buffer() noexcept { return buffer_; }
    // Makes room for payload_bytes more, so that a frame whose size is known in advance is
    // written without regrowing (each regrowth copies and touches fresh pages).
    void reserve(std::size_t payload_bytes) { buffer_.reserve(buffer_.size() + payload_bytes); }
    // Inline: these run once per task and per result.
    void begin_item() {
        item_start_ = buffer_.size();
        buffer_.resize(item_start_ + sizeof(ItemLength));
    }
    // Throws SerializationError, having dropped the item, when the frame has grown past its
    // limit.
    void end_item() {
        const std::size_t length = buffer_.size() - item_start_ - sizeof(ItemLength);
        // The same two tests as before items could be long: a tiny task's length fits 4 bytes.
        if (length >= long_item || buffer_.size() - sizeof(FrameHeader) > max_payload_bytes_) {
            return end_long_item(length);
        }
        const auto prefix = static_cast<ItemLength>(length);
        std::memcpy(buffer_.data() + item_start_, &prefix, sizeof prefix);
        ++items_;
    }
    // Drops what was appended since begin_item(), for an item whose encoding failed.
    void abandon_item() noexcept { buffer_.resize(item_start_); }
    std::size_t item_count() const noexcept { return items_; }
    // Descriptors that travel with the frame (see fd_passing.hpp).
    void add_fds(std::vector<UniqueFd> fds);
    // Completes the header; the writer is empty afterwards. Throws SerializationError when it
    // holds more than max_frame_items items.
    Frame finish();

  private:
    // end_item for an item that needs the long prefix or is refused.
    void end_long_item(std::size_t length);
    [[noreturn]] static void refuse_fds(std::size_t limit);

    FrameBuffer buffer_;
    std::vector<UniqueFd> fds_;
    std::size_t item_start_ = 0;
    std::size_t items_ = 0;
    std::uint64_t max_payload_bytes_;
};

// Reads a frame's items in order. A length that runs past the payload is a SerializationError.
class ItemReader {
  public:
    explicit ItemReader(std::span<const std::byte> payload) noexcept : rest_(payload) {}
    bool at_end() const noexcept { return rest_.empty(); }
    // Inline: it runs once per task and per result.
    std::span<const std::byte> next() {
        ItemLength short_length = 0;
        if (rest_.size() < sizeof short_length) refuse("a frame ends inside an item's length", 0);
        std::memcpy(&short_length, rest_.data(), sizeof short_length);
        rest_ = rest_.subspan(sizeof short_length);
        const std::uint64_t length = short_length == long_item ? long_length() : short_length;
        if (length > rest_.size()) refuse("runs past the end of its frame", length);
        auto item = rest_.first(length);
        rest_ = rest_.subspan(length);
        return item;
    }

  private:
    // The 64-bit length that follows long_item.
    std::uint64_t long_length();
    // Throws SerializationError: what, about an item of length bytes when length is not 0.
    [[noreturn]] static void refuse(const char* what, std::uint64_t length);

    std::span<const std::byte> rest_;
};

}  // namespace mproc::detail
