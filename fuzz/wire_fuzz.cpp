// libFuzzer target for the wire: arbitrary bytes are decoded as several value types and read as
// a frame (check_header, then every item through ItemReader and decode). The only outcome
// allowed besides success is SerializationError; anything else (a crash, a sanitizer report, an
// escaped exception of another type, a huge allocation) is a finding.
//
// Not built by default. With clang:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
//     fuzz/wire_fuzz.cpp src/wire/frame.cpp src/os/unique_fd.cpp \
//     src/os/system_error.cpp src/errors.cpp -o /tmp/wire_fuzz
//   /tmp/wire_fuzz -rss_limit_mb=2048 -max_len=4096

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"

namespace {

using mproc::SerializationError;
using mproc::detail::decode;

enum class Colour : std::uint8_t { red, green, blue };

struct Record {
    std::int64_t id = 0;
    std::string name;
    std::vector<double> values;
    std::optional<std::variant<std::monostate, int, std::string>> extra;
    std::array<bool, 2> flags{};

    template <class Archive>
    void serialize(Archive& ar) {
        ar(id, name, values, extra, flags);
    }
};

template <class T>
void try_decode(std::span<const std::byte> bytes) {
    try {
        T value{};
        decode(bytes, value);
    } catch (const SerializationError&) {
        // The expected answer to bytes that do not decode.
    }
}

void try_values(std::span<const std::byte> bytes) {
    try_decode<std::int32_t>(bytes);
    try_decode<bool>(bytes);
    try_decode<std::string>(bytes);
    try_decode<std::vector<std::int32_t>>(bytes);
    try_decode<std::vector<std::byte>>(bytes);
    try_decode<std::vector<bool>>(bytes);
    try_decode<std::vector<std::string>>(bytes);
    try_decode<std::map<std::string, std::vector<double>>>(bytes);
    try_decode<std::unordered_map<std::int16_t, std::string>>(bytes);
    try_decode<std::tuple<Colour, std::chrono::milliseconds, std::pair<char, std::string>>>(bytes);
    try_decode<std::vector<Record>>(bytes);
}

void try_frame(std::span<const std::byte> bytes) {
    using mproc::detail::FrameHeader;
    if (bytes.size() < sizeof(FrameHeader)) return;
    FrameHeader header;
    std::memcpy(&header, bytes.data(), sizeof header);
    try {
        mproc::detail::check_header(header);
    } catch (const SerializationError&) {
        return;
    }
    // A transport reads exactly payload_bytes after the header; here the input may hold fewer,
    // and the reader must then fail cleanly.
    auto payload = bytes.subspan(sizeof header);
    if (payload.size() > header.payload_bytes) {
        payload = payload.first(static_cast<std::size_t>(header.payload_bytes));
    }
    try {
        mproc::detail::ItemReader reader(payload);
        for (std::uint32_t i = 0; i < header.item_count && !reader.at_end(); ++i) {
            const auto item = reader.next();
            try_decode<Record>(item);
            try_decode<std::tuple<std::int32_t, std::string>>(item);
        }
    } catch (const SerializationError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try_values(bytes);
    try_frame(bytes);
    return 0;
}
