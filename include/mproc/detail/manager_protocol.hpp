#pragma once

// The manager's wire protocol, as both ends see it. After the handshake (src/manager/auth.hpp)
// a connection carries frames (frame.hpp): the client sends one `request` frame and waits for
// its one `response` frame, whose sequence is the request's.
//
//   request:  header (entry and function set for an update), then items:
//             [RequestHead: op, container, type signature] [op's arguments...]
//   response: header, then items: [status byte, + message or ErrorInfo if not ok] [results...]
//             Only a dict_attach response carries descriptors (fd_count in its header); they
//             travel with its first byte (SCM_RIGHTS).
//
// Keys and values are cereal encodings (wire_archive.hpp) made by the client; the server
// stores and compares them as bytes and never decodes them, except inside an update entry.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <typeinfo>
#include <vector>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

enum class ContainerKind : std::uint8_t { dict = 1, list = 2, value = 3, queue = 4, lock = 5 };

enum class ManagerOp : std::uint32_t {
    create = 1,  // container 0; items: CreateSpec [, initial value]; reply: id

    dict_set = 10,       // key, value
    dict_get = 11,       // key; reply: [value] (no item when absent)
    dict_contains = 12,  // key; reply: bool
    dict_erase = 13,     // key; reply: bool
    dict_size = 14,      // reply: u64
    dict_items = 15,     // reply: the encoding of vector<pair<K, V>>
    dict_keys = 16,      // reply: the encoding of vector<K>
    dict_values = 17,    // reply: the encoding of vector<V>
    dict_clear = 18,
    dict_update = 19,  // key, arguments; header: entry, function; reply: the new value
    dict_attach = 20,  // local clients only; reply: no items, and two descriptors: the dict's
                       // shared memory and the server's life block (src/manager/)

    list_append = 30,  // value
    list_at = 31,      // u64 index; reply: value
    list_set = 32,     // u64 index, value
    list_size = 33,    // reply: u64
    list_items = 34,   // reply: the encoding of vector<T>

    value_get = 40,     // reply: value
    value_set = 41,     // value
    value_update = 42,  // arguments; header: entry, function; reply: the new value

    queue_put = 50,    // timeout, item
    queue_get = 51,    // timeout; reply: item
    queue_size = 52,   // reply: u64 size, u64 maxsize
    queue_close = 53,  //

    lock_acquire = 60,  // timeout; reply: bool acquired
    lock_release = 61,
};

enum class ReplyStatus : std::uint8_t {
    ok = 0,
    bad_request = 1,    // malformed, unknown container, undecodable: SerializationError
    type_mismatch = 2,  // the container holds other types: ContainerTypeError
    out_of_range = 3,   // a list index past the end: std::out_of_range
    remote_error = 4,   // an update function threw; an ErrorInfo follows: RemoteError
    empty = 5,          // a queue get that timed out: Empty
    full = 6,           // a queue put that timed out: Full
    closed = 7,         // a closed queue: StateError
    misuse = 8,         // releasing a lock not held, and the like: StateError
};

// The first item of every request.
struct RequestHead {
    std::uint32_t op;
    std::uint32_t reserved;  // zero
    std::uint64_t container;
    std::uint64_t signature;  // the proxy's type signature; 0 for create
};
static_assert(sizeof(RequestHead) == 24);

// What a create request asks for. A named container is made once; asking again for the same
// name returns it, provided kind and signature match.
struct CreateSpec {
    std::uint8_t kind = 0;
    std::uint64_t signature = 0;
    std::string name;           // empty: a new anonymous container
    std::string description;    // "dict<std::string, int>", for error messages
    std::uint64_t maxsize = 0;  // queues

    template <class Archive>
    void serialize(Archive& archive) {
        archive(kind, signature, name, description, maxsize);
    }
};

// A wait as it travels: nanoseconds, negative for no limit, zero for no wait.
using WireTimeout = std::int64_t;
inline constexpr WireTimeout wait_forever = -1;

// A FNV-1a hash: the type signature of a container, from the mangled names and sizes of its
// types. Equal in every process of one build, and across builds on one ABI.
inline std::uint64_t fnv1a(std::uint64_t hash, const void* data, std::size_t size) noexcept {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3;
    return hash;
}

template <class... T>
std::uint64_t container_signature(ContainerKind kind) noexcept {
    static const std::uint64_t signature = [kind] {
        std::uint64_t hash = fnv1a(0xcbf29ce484222325, &kind, sizeof kind);
        [[maybe_unused]] auto add = [&hash](const std::type_info& type, std::uint64_t size) {
            const char* name = type.name();
            hash = fnv1a(hash, name, std::strlen(name) + 1);
            hash = fnv1a(hash, &size, sizeof size);
        };
        (add(typeid(T), sizeof(T)), ...);
        // 0 means "no signature" in a create request's head.
        return hash == 0 ? 1 : hash;
    }();
    return signature;
}

// "dict<std::string, int>": the kind and the demangled types, for error messages.
std::string describe_container(ContainerKind kind, std::initializer_list<const char*> mangled);

// Appends one frame to a byte vector that may already hold others, item by item; finish()
// completes its header. Unlike FrameWriter it owns no buffer, so a connection can reuse one
// vector for every frame it sends.
class FrameAppender {
  public:
    FrameAppender(std::vector<std::byte>& out, FrameKind kind, std::uint64_t sequence,
                  std::uint64_t entry = 0, std::uint64_t function = 0)
        : out_(out), start_(out.size()) {
        FrameHeader header{};
        header.magic = frame_magic;
        header.version = frame_version;
        header.kind = static_cast<std::uint16_t>(kind);
        header.sequence = sequence;
        header.entry = entry;
        header.function = function;
        out_.resize(start_ + sizeof header);
        std::memcpy(out_.data() + start_, &header, sizeof header);
    }

    // One item holding the encodings of values, in order. Throws SerializationError, with
    // the item dropped, when a value cannot be encoded or the frame grows past its limit.
    template <class... T>
    void add(const T&... values) {
        begin_item();
        try {
            if constexpr (sizeof...(T) > 0) encode(out_, values...);
        } catch (...) {
            out_.resize(item_start_);
            throw;
        }
        end_item();
    }
    // One item holding these bytes as they are.
    void add_bytes(const void* data, std::size_t size) {
        begin_item();
        const auto* first = static_cast<const std::byte*>(data);
        out_.insert(out_.end(), first, first + size);
        end_item();
    }
    void add_bytes(std::span<const std::byte> bytes) { add_bytes(bytes.data(), bytes.size()); }

    // For an item written straight into buffer().
    void begin_item() {
        item_start_ = out_.size();
        out_.resize(item_start_ + sizeof(ItemLength));
    }
    void end_item() {
        const std::size_t length = out_.size() - item_start_ - sizeof(ItemLength);
        const std::uint64_t payload = out_.size() - start_ - sizeof(FrameHeader) +
                                      item_prefix_bytes(length) - sizeof(ItemLength);
        if (payload > default_max_payload_bytes()) {
            out_.resize(item_start_);
            refuse_frame_size(length, payload, default_max_payload_bytes());
        }
        write_item_prefix(out_, item_start_);
        ++items_;
    }
    std::vector<std::byte>& buffer() noexcept { return out_; }

    // Completes the header; the frame is then the bytes from where it began to out's end.
    void finish() noexcept {
        FrameHeader header;
        std::memcpy(&header, out_.data() + start_, sizeof header);
        header.item_count = items_;
        header.payload_bytes = out_.size() - start_ - sizeof header;
        std::memcpy(out_.data() + start_, &header, sizeof header);
    }
    // Removes the frame from out.
    void abandon() noexcept { out_.resize(start_); }

  private:
    std::vector<std::byte>& out_;
    std::size_t start_;
    std::size_t item_start_ = 0;
    std::uint32_t items_ = 0;
};

}  // namespace mproc::detail
