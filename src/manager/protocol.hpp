#pragma once

// The server's reading of requests and writing of responses. decode_request is the whole of
// the server's trust boundary for request bytes: whatever it returns is well-formed.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "mproc/detail/error_info.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/detail/manager_protocol.hpp"

namespace mproc::detail {

// No request has more items than this (head included).
inline constexpr std::size_t max_request_items = 4;

struct Request {
    FrameHeader header{};
    RequestHead head{};
    // The items after the head.
    std::array<std::span<const std::byte>, max_request_items - 1> items{};
    std::size_t item_count = 0;

    ManagerOp op() const noexcept { return static_cast<ManagerOp>(head.op); }
    // Item i after the head; SerializationError when the request has fewer.
    std::span<const std::byte> item(std::size_t i) const;
};

// Reads one whole request frame (header and payload). Throws SerializationError unless it is
// one: a valid header of kind request, no descriptors, a payload of exactly the size the
// header says, a head item of the right size with a zero reserved field, at most
// max_request_items items, each within the payload.
Request decode_request(std::span<const std::byte> frame);

// Appends one response frame to out.
class ReplyWriter {
  public:
    ReplyWriter(std::vector<std::byte>& out, std::uint64_t sequence)
        : appender_(out, FrameKind::response, sequence) {}

    // Status ok; values follow with add().
    void ok() {
        const auto status = static_cast<std::uint8_t>(ReplyStatus::ok);
        appender_.add_bytes(&status, 1);
    }
    template <class... T>
    void add(const T&... values) {
        appender_.add(values...);
    }
    void add_bytes(std::span<const std::byte> bytes) { appender_.add_bytes(bytes); }
    FrameAppender& appender() noexcept { return appender_; }
    void finish() noexcept { appender_.finish(); }
    // Drops what was written of this response.
    void abandon() noexcept { appender_.abandon(); }

  private:
    FrameAppender appender_;
};

// A complete error response: the status and a message (or, for remote_error, an ErrorInfo).
void write_error_reply(std::vector<std::byte>& out, std::uint64_t sequence, ReplyStatus status,
                       std::string_view message);
void write_remote_error_reply(std::vector<std::byte>& out, std::uint64_t sequence,
                              const ErrorInfo& error);

}  // namespace mproc::detail
