#include "manager/protocol.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "mproc/errors.hpp"

namespace mproc::detail {

std::span<const std::byte> Request::item(std::size_t i) const {
    if (i >= item_count) {
        throw SerializationError("mproc: a manager request has " + std::to_string(item_count) +
                                 " arguments, too few for its operation");
    }
    return items[i];
}

Request decode_request(std::span<const std::byte> frame) {
    Request request;
    if (frame.size() < sizeof(FrameHeader)) {
        throw SerializationError("mproc: a manager request is shorter than a frame header");
    }
    std::memcpy(&request.header, frame.data(), sizeof request.header);
    check_header(request.header);
    if (request.header.kind != static_cast<std::uint16_t>(FrameKind::request)) {
        throw SerializationError("mproc: a frame sent to a manager is not a request");
    }
    if (request.header.fd_count != 0) {
        throw SerializationError("mproc: a manager request claims descriptors");
    }
    if (request.header.payload_bytes != frame.size() - sizeof(FrameHeader)) {
        throw SerializationError("mproc: a manager request's length does not match its header");
    }
    if (request.header.item_count == 0 || request.header.item_count > max_request_items) {
        throw SerializationError("mproc: a manager request has " +
                                 std::to_string(request.header.item_count) +
                                 " items; a request has 1 to " + std::to_string(max_request_items));
    }
    ItemReader items(frame.subspan(sizeof(FrameHeader)));
    const auto head = items.next();
    if (head.size() != sizeof(RequestHead)) {
        throw SerializationError("mproc: a manager request's head has the wrong size");
    }
    std::memcpy(&request.head, head.data(), sizeof request.head);
    if (request.head.reserved != 0) {
        throw SerializationError("mproc: a manager request's head has unknown flags");
    }
    for (std::uint32_t i = 1; i < request.header.item_count; ++i) {
        request.items[request.item_count++] = items.next();
    }
    if (!items.at_end()) {
        throw SerializationError("mproc: a manager request has bytes after its last item");
    }
    return request;
}

void write_error_reply(std::vector<std::byte>& out, std::uint64_t sequence, ReplyStatus status,
                       std::string_view message) {
    FrameAppender appender(out, FrameKind::response, sequence);
    appender.begin_item();
    out.push_back(static_cast<std::byte>(status));
    const auto* text = reinterpret_cast<const std::byte*>(message.data());
    out.insert(out.end(), text, text + message.size());
    appender.end_item();
    appender.finish();
}

void write_remote_error_reply(std::vector<std::byte>& out, std::uint64_t sequence,
                              const ErrorInfo& error) {
    FrameAppender appender(out, FrameKind::response, sequence);
    appender.begin_item();
    out.push_back(static_cast<std::byte>(ReplyStatus::remote_error));
    encode(out, error);
    appender.end_item();
    appender.finish();
}

std::string describe_container(ContainerKind kind, std::initializer_list<const char*> mangled) {
    std::string text;
    switch (kind) {
        case ContainerKind::dict:
            text = "dict";
            break;
        case ContainerKind::list:
            text = "list";
            break;
        case ContainerKind::value:
            text = "value";
            break;
        case ContainerKind::queue:
            text = "queue";
            break;
        case ContainerKind::lock:
            return "lock";
    }
    text += '<';
    bool first = true;
    for (const char* name : mangled) {
        if (!first) text += ", ";
        first = false;
        int status = 0;
        std::unique_ptr<char, decltype(&std::free)> plain(
            abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
        text += status == 0 && plain ? plain.get() : name;
    }
    text += '>';
    // The demangler spells std::string out in full; say it as a reader would.
    constexpr std::string_view long_string =
        "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
    for (auto at = text.find(long_string); at != std::string::npos; at = text.find(long_string)) {
        text.replace(at, long_string.size(), "std::string");
    }
    return text;
}

}  // namespace mproc::detail
