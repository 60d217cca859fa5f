// The wire's safety contract: every value mproc promises to send comes back equal, and bytes
// that do not decode (truncated, corrupted, lying about sizes, left over) give
// SerializationError, never a crash, a hang, undefined behaviour or a huge allocation. The
// frame layer around the values checks its header and its item lengths the same way.

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/block_codec.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"
#include "mproc/resources.hpp"
#include "mproc/shared_memory.hpp"
#include "pool/chunk.hpp"

namespace {

using mproc::SerializationError;
using mproc::detail::check_header;
using mproc::detail::decode;
using mproc::detail::encode;
using mproc::detail::Frame;
using mproc::detail::FrameHeader;
using mproc::detail::FrameKind;
using mproc::detail::FrameWriter;
using mproc::detail::ItemReader;
using Bytes = std::vector<std::byte>;

template <class T>
T round_trip(const T& value) {
    Bytes bytes;
    encode(bytes, value);
    T back{};
    decode(bytes, back);
    return back;
}

template <class... T>
Bytes encoded(const T&... values) {
    Bytes bytes;
    encode(bytes, values...);
    return bytes;
}

// Decodes bytes as T and reports whether they decoded; SerializationError is the only failure
// allowed, so anything else escapes and fails the test.
template <class T>
bool decodes_as(std::span<const std::byte> bytes) {
    try {
        T value{};
        decode(bytes, value);
        return true;
    } catch (const SerializationError&) {
        return false;
    }
}

enum class Colour : std::uint8_t { red, green, blue };
enum Weekday : int { monday = 1, sunday = 7 };

struct Point {
    double x = 0;
    double y = 0;
    std::string label;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(x, y, label);
    }
    bool operator==(const Point&) const = default;
};

// A value that exercises every promised type at once; the truncation and corruption tests
// decode it.
struct Everything {
    std::int8_t i8 = 0;
    std::uint64_t u64 = 0;
    float f = 0;
    bool flag = false;
    Colour colour = Colour::red;
    std::string text;
    std::vector<std::int32_t> numbers;
    std::vector<std::string> words;
    std::vector<bool> bits;
    std::array<bool, 3> more_bits{};
    std::map<std::string, std::vector<double>> by_name;
    std::unordered_map<int, std::string> by_id;
    std::set<std::int16_t> seen;
    std::pair<int, std::string> pair;
    std::tuple<char, Point, std::optional<int>> tuple;
    std::optional<std::string> maybe;
    std::variant<std::monostate, int, std::string, Point> choice;
    std::chrono::milliseconds timeout{0};

    template <class Archive>
    void serialize(Archive& ar) {
        ar(i8, u64, f, flag, colour, text, numbers, words, bits, more_bits, by_name, by_id, seen,
           pair, tuple, maybe, choice, timeout);
    }
    bool operator==(const Everything&) const = default;
};

Everything sample_everything() {
    Everything e;
    e.i8 = -5;
    e.u64 = 0x0123456789abcdefULL;
    e.f = 2.5F;
    e.flag = true;
    e.colour = Colour::blue;
    e.text = "hello, wire";
    e.numbers = {1, -2, 3, 1 << 30};
    e.words = {"", "one", "two words"};
    e.bits = {true, false, true};
    e.more_bits = {false, true, true};
    e.by_name = {{"a", {1.0, 2.0}}, {"b", {}}};
    e.by_id = {{1, "x"}, {2, "yy"}};
    e.seen = {3, -4, 5};
    e.pair = {9, "nine"};
    e.tuple = {'q', Point{1.5, -2.5, "p"}, 17};
    e.maybe = "present";
    e.choice = Point{0.0, 1.0, "chosen"};
    e.timeout = std::chrono::milliseconds(1234);
    return e;
}

// A type whose own load refuses some values.
struct Picky {
    int value = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(value);
        if (value < 0) throw std::invalid_argument("Picky wants a non-negative value");
    }
};

// A type whose save refuses to run.
struct Unsendable {
    int value = 7;
    template <class Archive>
    void save(Archive& ar) const {
        ar(value);
        throw cereal::Exception("Unsendable refuses");
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(value);
    }
};

// An allocator that remembers the largest block anything asked of it, to show that a lying
// size prefix is refused before a container is sized from it.
inline std::size_t largest_allocation = 0;

template <class T>
struct RecordingAllocator {
    using value_type = T;
    RecordingAllocator() noexcept = default;
    template <class U>
    RecordingAllocator(const RecordingAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        largest_allocation = std::max(largest_allocation, n * sizeof(T));
        return std::allocator<T>{}.allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }
    template <class U>
    bool operator==(const RecordingAllocator<U>&) const noexcept {
        return true;
    }
};

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(WireArchive, IntegersOfEveryWidthRoundTrip) {
    EXPECT_EQ(round_trip(std::int8_t{-128}), -128);
    EXPECT_EQ(round_trip(std::uint8_t{255}), 255);
    EXPECT_EQ(round_trip(std::int16_t{-32768}), -32768);
    EXPECT_EQ(round_trip(std::uint32_t{0xdeadbeef}), 0xdeadbeefU);
    EXPECT_EQ(round_trip(std::numeric_limits<std::int64_t>::min()),
              std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(round_trip(std::numeric_limits<std::uint64_t>::max()),
              std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(round_trip('z'), 'z');
    EXPECT_EQ(round_trip(char32_t{0x1F600}), char32_t{0x1F600});
}

TEST(WireArchive, FloatingPointValuesRoundTripIncludingSpecialValues) {
    EXPECT_EQ(round_trip(3.25), 3.25);
    EXPECT_EQ(round_trip(-1.5F), -1.5F);
    EXPECT_EQ(round_trip(std::numeric_limits<double>::infinity()),
              std::numeric_limits<double>::infinity());
    EXPECT_TRUE(std::signbit(round_trip(-0.0)));
    EXPECT_TRUE(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
}

TEST(WireArchive, BoolsRoundTrip) {
    EXPECT_TRUE(round_trip(true));
    EXPECT_FALSE(round_trip(false));
}

TEST(WireArchive, EnumsWithAFixedUnderlyingTypeRoundTrip) {
    EXPECT_EQ(round_trip(Colour::green), Colour::green);
    EXPECT_EQ(round_trip(sunday), sunday);
}

TEST(WireArchive, StringsRoundTripIncludingTheEmptyStringAndEmbeddedNuls) {
    EXPECT_EQ(round_trip(std::string()), "");
    EXPECT_EQ(round_trip(std::string("a\0b", 3)), std::string("a\0b", 3));
    EXPECT_EQ(round_trip(std::string(10000, 'x')), std::string(10000, 'x'));
}

TEST(WireArchive, VectorsRoundTrip) {
    EXPECT_EQ(round_trip(std::vector<int>{}), std::vector<int>{});
    EXPECT_EQ(round_trip(std::vector<double>{1.0, -2.0, 3.5}),
              (std::vector<double>{1.0, -2.0, 3.5}));
    EXPECT_EQ(round_trip(std::vector<std::byte>{std::byte{0}, std::byte{0xff}}),
              (std::vector<std::byte>{std::byte{0}, std::byte{0xff}}));
    EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "ccc"}),
              (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(round_trip(std::vector<bool>{true, false, true}),
              (std::vector<bool>{true, false, true}));
}

TEST(WireArchive, ArraysRoundTrip) {
    EXPECT_EQ(round_trip(std::array<int, 3>{1, 2, 3}), (std::array<int, 3>{1, 2, 3}));
    EXPECT_EQ(round_trip(std::array<bool, 2>{true, false}), (std::array<bool, 2>{true, false}));
    EXPECT_EQ(round_trip(std::array<std::string, 2>{"x", "y"}),
              (std::array<std::string, 2>{"x", "y"}));
}

TEST(WireArchive, MapsRoundTrip) {
    const std::map<std::string, int> map{{"one", 1}, {"two", 2}};
    EXPECT_EQ(round_trip(map), map);
}

TEST(WireArchive, UnorderedMapsRoundTrip) {
    const std::unordered_map<int, std::string> map{{1, "one"}, {2, "two"}, {3, ""}};
    EXPECT_EQ(round_trip(map), map);
}

TEST(WireArchive, SetsRoundTrip) {
    const std::set<std::string> set{"b", "a", "c"};
    EXPECT_EQ(round_trip(set), set);
    const std::unordered_set<int> unordered{4, 5, 6};
    EXPECT_EQ(round_trip(unordered), unordered);
}

TEST(WireArchive, PairsAndTuplesRoundTrip) {
    const std::pair<int, std::string> pair{7, "seven"};
    EXPECT_EQ(round_trip(pair), pair);
    const std::tuple<int, double, std::string> tuple{1, 2.0, "three"};
    EXPECT_EQ(round_trip(tuple), tuple);
    EXPECT_EQ(round_trip(std::tuple<>{}), std::tuple<>{});
}

TEST(WireArchive, OptionalsRoundTripEmptyAndFull) {
    EXPECT_EQ(round_trip(std::optional<int>{}), std::nullopt);
    EXPECT_EQ(round_trip(std::optional<std::string>{"here"}), "here");
}

TEST(WireArchive, VariantsRoundTripEachAlternative) {
    using V = std::variant<std::monostate, int, std::string>;
    EXPECT_EQ(round_trip(V{}), V{});
    EXPECT_EQ(round_trip(V{42}), V{42});
    EXPECT_EQ(round_trip(V{std::string("s")}), V{std::string("s")});
}

TEST(WireArchive, ChronoDurationsRoundTrip) {
    EXPECT_EQ(round_trip(std::chrono::milliseconds(1500)), std::chrono::milliseconds(1500));
    EXPECT_EQ(round_trip(std::chrono::duration<double>(0.25)), std::chrono::duration<double>(0.25));
}

TEST(WireArchive, NestedContainersRoundTrip) {
    const std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>> nested{
        {"a", {std::nullopt, std::pair{1, std::string("x")}}}, {"b", {}}};
    EXPECT_EQ(round_trip(nested), nested);
}

TEST(WireArchive, AUserStructWithSerializeRoundTrips) {
    const Point point{1.0, -2.0, "origin-ish"};
    EXPECT_EQ(round_trip(point), point);
    EXPECT_EQ(round_trip(sample_everything()), sample_everything());
}

TEST(WireArchive, SeveralValuesRoundTripInOrder) {
    const Bytes bytes = encoded(1, std::string("two"), 3.0);
    int one = 0;
    std::string two;
    double three = 0;
    decode(bytes, one, two, three);
    EXPECT_EQ(one, 1);
    EXPECT_EQ(two, "two");
    EXPECT_EQ(three, 3.0);
}

TEST(WireArchive, EncodeAppendsToWhatTheVectorAlreadyHeld) {
    Bytes bytes{std::byte{0xaa}};
    encode(bytes, std::int32_t{5});
    ASSERT_EQ(bytes.size(), 1 + sizeof(std::int32_t));
    EXPECT_EQ(bytes[0], std::byte{0xaa});
    std::int32_t back = 0;
    decode(std::span(bytes).subspan(1), back);
    EXPECT_EQ(back, 5);
}

// ---------------------------------------------------------------------------------------------
// Bytes that do not decode

TEST(WireArchive, EveryTruncationOfAValidEncodingIsASerializationError) {
    const Bytes bytes = encoded(sample_everything());
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        EXPECT_FALSE(decodes_as<Everything>(std::span(bytes).first(length)))
            << "a prefix of " << length << " of " << bytes.size() << " bytes decoded";
    }
}

TEST(WireArchive, BytesLeftOverAfterTheValuesAreASerializationError) {
    Bytes bytes = encoded(std::string("complete"));
    bytes.push_back(std::byte{0});
    std::string value;
    EXPECT_THROW(decode(bytes, value), SerializationError);
}

TEST(WireArchive, AStringSizePrefixOf2To60IsRefusedBeforeAnyAllocation) {
    using String = std::basic_string<char, std::char_traits<char>, RecordingAllocator<char>>;
    const Bytes bytes = encoded(std::uint64_t{1} << 60, std::array<char, 4>{'a', 'b', 'c', 'd'});
    largest_allocation = 0;
    String value;
    EXPECT_THROW(decode(bytes, value), SerializationError);
    EXPECT_EQ(largest_allocation, 0U);
    // The same with the standard allocator, which under ASan aborts on such a request.
    std::string plain;
    EXPECT_THROW(decode(bytes, plain), SerializationError);
}

TEST(WireArchive, AVectorSizePrefixOf2To60IsRefusedBeforeAnyAllocation) {
    const Bytes bytes = encoded(std::uint64_t{1} << 60, std::int32_t{1}, std::int32_t{2});
    largest_allocation = 0;
    std::vector<std::int32_t, RecordingAllocator<std::int32_t>> numbers;
    EXPECT_THROW(decode(bytes, numbers), SerializationError);
    std::vector<std::string, RecordingAllocator<std::string>> strings;
    EXPECT_THROW(decode(bytes, strings), SerializationError);
    EXPECT_EQ(largest_allocation, 0U);
    std::vector<std::int64_t> plain;
    EXPECT_THROW(decode(bytes, plain), SerializationError);
}

TEST(WireArchive, AVectorOfNumbersWhoseBlockIsMissingIsRefusedBeforeAnyAllocation) {
    // 100 bytes follow the count, enough for it as a count of bytes but not of doubles.
    Bytes bytes = encoded(std::uint64_t{100});
    bytes.resize(bytes.size() + 100);
    largest_allocation = 0;
    std::vector<double, RecordingAllocator<double>> values;
    EXPECT_THROW(decode(bytes, values), SerializationError);
    EXPECT_EQ(largest_allocation, 0U);
}

TEST(WireArchive, AVectorOfLargeElementsAllocatesOnlyForElementsThatArrive) {
    // The count is backed by bytes, but each element needs 4096 of them: the vector must not be
    // sized to 1000 elements of 4096 bytes before the first one fails to arrive.
    using Element = std::array<std::int32_t, 1024>;
    Bytes bytes = encoded(std::uint64_t{1000});
    bytes.resize(bytes.size() + 1000);
    largest_allocation = 0;
    std::vector<Element, RecordingAllocator<Element>> values;
    EXPECT_THROW(decode(bytes, values), SerializationError);
    EXPECT_LE(largest_allocation, 2 * sizeof(Element));
}

TEST(WireArchive, AMapCountLargerThanTheBytesThatFollowIsASerializationError) {
    const Bytes bytes = encoded(std::uint64_t{5}, 1, 2);
    std::map<int, int> map;
    EXPECT_THROW(decode(bytes, map), SerializationError);
}

TEST(WireArchive, AContainerOfEmptyElementsLongerThanTheRestOfTheMessageIsRefused) {
    // The documented price of checking counts against the bytes that remain: these elements
    // take no bytes, so three of them after an 8-byte count are more than the 0 bytes left.
    const Bytes bytes = encoded(std::vector<std::monostate>(3));
    std::vector<std::monostate> back;
    EXPECT_THROW(decode(bytes, back), SerializationError);
}

TEST(WireArchive, AVariantIndexOutOfRangeIsASerializationError) {
    using V = std::variant<int, std::string>;
    EXPECT_FALSE(decodes_as<V>(encoded(std::int32_t{2}, 0)));
    EXPECT_FALSE(decodes_as<V>(encoded(std::int32_t{-1}, 0)));
    EXPECT_FALSE(decodes_as<V>(encoded(std::numeric_limits<std::int32_t>::max(), 0)));
}

TEST(WireArchive, ABoolByteOtherThanZeroOrOneIsASerializationError) {
    const Bytes two = encoded(std::uint8_t{2});
    EXPECT_FALSE(decodes_as<bool>(two));
    EXPECT_FALSE(
        decodes_as<std::optional<std::uint8_t>>(encoded(std::uint8_t{2}, std::uint8_t{0})));
    EXPECT_FALSE(decodes_as<std::vector<bool>>(encoded(std::uint64_t{1}, std::uint8_t{7})));
    EXPECT_FALSE((decodes_as<std::array<bool, 2>>(encoded(std::uint8_t{1}, std::uint8_t{0x80}))));
}

TEST(WireArchive, AnyValueOfAnEnumWithAFixedUnderlyingTypeDecodes) {
    for (int value = 0; value < 256; ++value) {
        Colour colour{};
        decode(encoded(static_cast<std::uint8_t>(value)), colour);
        EXPECT_EQ(static_cast<int>(colour), value);
    }
}

TEST(WireArchive, AnExceptionFromAUserLoadBecomesASerializationError) {
    Picky picky;
    EXPECT_THROW(decode(encoded(-1), picky), SerializationError);
}

// Types whose own save or load throws what a user's code might.
struct SaveThrows {
    template <class Archive>
    void save(Archive&) const {
        throw std::runtime_error("the save said no");
    }
    template <class Archive>
    void load(Archive&) {}
};
struct LoadThrows {
    int value = 0;
    template <class Archive>
    void save(Archive& ar) const {
        ar(value);
    }
    template <class Archive>
    void load(Archive&) {
        throw std::runtime_error("the load said no");
    }
};
struct SaveThrowsAnMprocError {
    template <class Archive>
    void save(Archive&) const {
        throw mproc::StateError("a state error");
    }
    template <class Archive>
    void load(Archive&) {}
};

TEST(WireArchive,
     AnExceptionFromAUserSaveBecomesASerializationErrorNamingTheTypeAndKeepingTheMessage) {
    Bytes bytes;
    try {
        encode(bytes, 1, SaveThrows{});
        FAIL() << "expected a SerializationError";
    } catch (const SerializationError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("the save said no"), std::string::npos) << message;
        EXPECT_NE(message.find("SaveThrows"), std::string::npos) << message;
    }
    EXPECT_TRUE(bytes.empty());
}

TEST(WireArchive, AnExceptionFromAUserLoadNamesTheTypeAndKeepsTheMessage) {
    LoadThrows value;
    try {
        decode(encoded(LoadThrows{3}), value);
        FAIL() << "expected a SerializationError";
    } catch (const SerializationError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("the load said no"), std::string::npos) << message;
        EXPECT_NE(message.find("LoadThrows"), std::string::npos) << message;
    }
}

TEST(WireArchive, AnMprocErrorFromAUserSavePassesUnchanged) {
    Bytes bytes;
    EXPECT_THROW(encode(bytes, SaveThrowsAnMprocError{}), mproc::StateError);
}

TEST(WireArchive, EncodeLeavesTheVectorAsItWasWhenAValueCannotBeEncoded) {
    Bytes bytes{std::byte{1}, std::byte{2}};
    EXPECT_THROW(encode(bytes, 3, Unsendable{}), SerializationError);
    EXPECT_EQ(bytes, (Bytes{std::byte{1}, std::byte{2}}));
}

TEST(WireArchive, RandomByteFlipsEitherDecodeOrGiveSerializationError) {
    const Bytes original = encoded(sample_everything());
    for (std::uint32_t seed = 0; seed < 2000; ++seed) {
        std::mt19937 rng(seed);
        Bytes bytes = original;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int i = 0; i < flips; ++i) {
            bytes[rng() % bytes.size()] = static_cast<std::byte>(rng() & 0xff);
        }
        decodes_as<Everything>(bytes);
    }
}

TEST(WireArchive, RandomBytesEitherDecodeOrGiveSerializationError) {
    for (std::uint32_t seed = 0; seed < 2000; ++seed) {
        std::mt19937 rng(seed);
        Bytes bytes(rng() % 64);
        for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xff);
        // Small counts are likelier to pass the size check, so the element paths get exercised.
        if (bytes.size() >= 8 && rng() % 2 == 0) {
            const std::uint64_t count = rng() % 8;
            std::memcpy(bytes.data(), &count, sizeof count);
        }
        decodes_as<std::string>(bytes);
        decodes_as<std::vector<std::int16_t>>(bytes);
        decodes_as<std::vector<std::string>>(bytes);
        decodes_as<std::map<std::uint8_t, std::string>>(bytes);
        decodes_as<std::optional<std::variant<int, std::string, std::monostate>>>(bytes);
        decodes_as<std::tuple<bool, Colour, std::chrono::milliseconds>>(bytes);
        decodes_as<Everything>(bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

FrameHeader valid_header() {
    FrameWriter writer(FrameKind::result, 1);
    writer.begin_item();
    encode(writer.buffer(), 42);
    writer.end_item();
    return writer.finish().header();
}

TEST(Frame, CheckHeaderAcceptsTheHeaderAFrameWriterProduces) {
    EXPECT_NO_THROW(check_header(valid_header()));
}

TEST(Frame, CheckHeaderRejectsABadMagic) {
    FrameHeader header = valid_header();
    header.magic ^= 1;
    EXPECT_THROW(check_header(header), SerializationError);
}

TEST(Frame, CheckHeaderRejectsAnotherWireVersion) {
    FrameHeader header = valid_header();
    header.version = mproc::detail::frame_version + 1;
    EXPECT_THROW(check_header(header), SerializationError);
}

TEST(Frame, CheckHeaderRejectsAnUnknownKind) {
    FrameHeader header = valid_header();
    header.kind = 0;
    EXPECT_THROW(check_header(header), SerializationError);
    header.kind = static_cast<std::uint16_t>(FrameKind::retiring) + 1;
    EXPECT_THROW(check_header(header), SerializationError);
}

TEST(Frame, CheckHeaderRejectsMoreDescriptorsThanOneMessageCarries) {
    FrameHeader header = valid_header();
    header.fd_count = mproc::detail::max_frame_fds;
    EXPECT_NO_THROW(check_header(header));
    header.fd_count = mproc::detail::max_frame_fds + 1;
    EXPECT_THROW(check_header(header), SerializationError);
}

TEST(Frame, CheckHeaderRejectsAPayloadOverTheLimit) {
    FrameHeader header = valid_header();
    header.payload_bytes = mproc::detail::default_max_payload_bytes() + 1;
    EXPECT_THROW(check_header(header), SerializationError);
    header.payload_bytes = std::uint64_t{1} << 62;
    EXPECT_THROW(check_header(header), SerializationError);
    header.payload_bytes = std::numeric_limits<std::uint64_t>::max();
    EXPECT_THROW(check_header(header), SerializationError);
}

TEST(Frame, TheDefaultLimitIsTheMachinesMemory) {
    EXPECT_EQ(mproc::detail::default_max_payload_bytes(), mproc::memory().total);
}

TEST(Frame, CheckHeaderTakesTheLimitItIsGiven) {
    FrameHeader header = valid_header();
    header.payload_bytes = std::uint64_t{1} << 20;
    EXPECT_NO_THROW(check_header(header, header.payload_bytes));
    EXPECT_THROW(check_header(header, header.payload_bytes - 1), SerializationError);
}

TEST(Frame, CheckHeaderRejectsMoreItemsThanThePayloadCanHold) {
    FrameHeader header = valid_header();
    header.payload_bytes = 2 * sizeof(mproc::detail::ItemLength);
    header.item_count = 2;
    EXPECT_NO_THROW(check_header(header));
    header.item_count = 3;
    EXPECT_THROW(check_header(header), SerializationError);
}

TEST(Frame, CheckHeaderAllowsABlockOneByteATask) {
    FrameHeader header = valid_header();
    header.kind = static_cast<std::uint16_t>(FrameKind::task_block);
    header.payload_bytes = 3;
    header.item_count = 3;
    EXPECT_NO_THROW(check_header(header));
    header.item_count = 4;
    EXPECT_THROW(check_header(header), SerializationError);
    header.kind = static_cast<std::uint16_t>(FrameKind::result);
    header.item_count = 3;
    EXPECT_THROW(check_header(header), SerializationError);  // items have a length prefix
}

TEST(Frame, FrameWriterAndItemReaderRoundTripEncodedItems) {
    FrameWriter writer(FrameKind::task, 7, 11, 13);
    writer.begin_item();
    encode(writer.buffer(), 42, std::string("first"));
    writer.end_item();
    writer.begin_item();
    writer.end_item();
    writer.begin_item();
    encode(writer.buffer(), std::vector<int>{1, 2, 3});
    writer.end_item();
    const Frame frame = writer.finish();

    const FrameHeader header = frame.header();
    EXPECT_NO_THROW(check_header(header));
    EXPECT_EQ(frame.kind(), FrameKind::task);
    EXPECT_EQ(header.item_count, 3U);
    EXPECT_EQ(header.sequence, 7U);
    EXPECT_EQ(header.entry, 11U);
    EXPECT_EQ(header.function, 13U);
    EXPECT_EQ(header.fd_count, 0U);
    EXPECT_EQ(header.payload_bytes, frame.bytes.size() - sizeof(FrameHeader));

    ItemReader reader(frame.payload());
    int number = 0;
    std::string text;
    decode(reader.next(), number, text);
    EXPECT_EQ(number, 42);
    EXPECT_EQ(text, "first");
    EXPECT_TRUE(reader.next().empty());
    std::vector<int> numbers;
    decode(reader.next(), numbers);
    EXPECT_EQ(numbers, (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(reader.at_end());
}

TEST(Frame, ItemReaderRejectsAnItemLengthThatRunsPastTheEnd) {
    const Bytes payload = encoded(mproc::detail::ItemLength{5}, std::uint32_t{0});
    ItemReader reader(payload);
    EXPECT_THROW(reader.next(), SerializationError);
}

TEST(Frame, ItemReaderRejectsATruncatedLengthPrefix) {
    const Bytes payload{std::byte{1}, std::byte{0}, std::byte{0}};
    ItemReader reader(payload);
    EXPECT_THROW(reader.next(), SerializationError);
}

TEST(Frame, AnItemUnder4GiBKeepsItsFourByteLength) {
    FrameWriter writer(FrameKind::task, 0);
    writer.begin_item();
    encode(writer.buffer(), std::uint8_t{7});
    writer.end_item();
    const Frame frame = writer.finish();
    EXPECT_EQ(frame.payload().size(), sizeof(mproc::detail::ItemLength) + 1);
    EXPECT_EQ(mproc::detail::item_prefix_bytes(mproc::detail::long_item - 1), 4U);
    EXPECT_EQ(mproc::detail::item_prefix_bytes(mproc::detail::long_item), 12U);
}

// A payload of one item of `length` bytes behind the long prefix, in pages that are reserved
// but never touched: 4 GiB of it costs no memory.
class SparsePayload {
  public:
    explicit SparsePayload(std::uint64_t length) : bytes_(12 + length) {
        void* at = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (at == MAP_FAILED) throw std::runtime_error("mmap of a sparse payload failed");
        data_ = static_cast<std::byte*>(at);
        std::memcpy(data_, &mproc::detail::long_item, 4);
        std::memcpy(data_ + 4, &length, 8);
    }
    ~SparsePayload() { ::munmap(data_, bytes_); }
    SparsePayload(const SparsePayload&) = delete;
    SparsePayload& operator=(const SparsePayload&) = delete;
    std::span<const std::byte> bytes() const { return {data_, bytes_}; }

  private:
    std::size_t bytes_;
    std::byte* data_;
};

TEST(Frame, ItemReaderReadsTheLongLengthOfAnItemOf4GiBOrMore) {
    const std::uint64_t length = (std::uint64_t{1} << 32) + 3;
    const SparsePayload payload(length);
    ItemReader reader(payload.bytes());
    const auto item = reader.next();
    EXPECT_EQ(item.size(), length);
    EXPECT_EQ(item.data(), payload.bytes().data() + 12);
    EXPECT_TRUE(reader.at_end());
}

TEST(Frame, ItemReaderRefusesALongLengthThatRunsPastTheEnd) {
    const Bytes payload = encoded(mproc::detail::long_item, std::uint64_t{1} << 62, 1, 2, 3);
    ItemReader reader(payload);
    EXPECT_THROW(reader.next(), SerializationError);
}

TEST(Frame, ItemReaderRefusesAFrameThatEndsInsideALongLength) {
    Bytes payload = encoded(mproc::detail::long_item, std::uint64_t{1} << 32);
    payload.resize(payload.size() - 1);
    ItemReader reader(payload);
    EXPECT_THROW(reader.next(), SerializationError);
}

TEST(Frame, ItemReaderRefusesTheLongPrefixOnAShortItem) {
    const Bytes payload = encoded(mproc::detail::long_item, std::uint64_t{4}, 1);
    ItemReader reader(payload);
    EXPECT_THROW(reader.next(), SerializationError);
}

TEST(Frame, FrameWriterRefusesAnItemOverItsLimitAndKeepsTheOthers) {
    constexpr std::uint64_t limit = 100'000;
    FrameWriter writer(FrameKind::result, 0, 0, 0, limit);
    writer.begin_item();
    encode(writer.buffer(), 1);
    writer.end_item();
    writer.begin_item();
    encode(writer.buffer(), std::string(limit, 'x'));
    try {
        writer.end_item();
        ADD_FAILURE() << "an item over the limit was taken";
    } catch (const SerializationError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find(std::to_string(limit) + " bytes"), std::string::npos) << message;
        EXPECT_NE(message.find("PoolOptions::max_value_bytes"), std::string::npos) << message;
    }
    writer.begin_item();
    encode(writer.buffer(), 2);
    writer.end_item();
    const Frame frame = writer.finish();
    EXPECT_EQ(frame.header().item_count, 2U);
    ItemReader reader(frame.payload());
    int first = 0;
    int second = 0;
    decode(reader.next(), first);
    decode(reader.next(), second);
    EXPECT_EQ(first + second, 3);
    EXPECT_TRUE(reader.at_end());
}

TEST(Frame, AValueThatClaims2To62BytesIsRefusedBeforeAllocating) {
    const Bytes bytes = encoded(std::uint64_t{1} << 62, std::uint64_t{0});
    EXPECT_FALSE(decodes_as<std::string>(bytes));
    EXPECT_FALSE(decodes_as<std::vector<char>>(bytes));
    EXPECT_FALSE(decodes_as<std::vector<std::uint64_t>>(bytes));
}

TEST(Frame, EveryTruncationOfAPayloadFailsWithSerializationError) {
    FrameWriter writer(FrameKind::result, 2);
    for (int i = 0; i < 3; ++i) {
        writer.begin_item();
        encode(writer.buffer(), Point{1.0 * i, 2.0, "item"});
        writer.end_item();
    }
    const Frame frame = writer.finish();
    const auto payload = frame.payload();
    for (std::size_t length = 0; length < payload.size(); ++length) {
        ItemReader reader(payload.first(length));
        auto read_all = [&] {
            for (int i = 0; i < 3; ++i) {
                Point point;
                decode(reader.next(), point);
            }
        };
        EXPECT_THROW(read_all(), SerializationError) << "a payload cut to " << length << " bytes";
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks: chunks of tasks whose arguments and result are numbers

using mproc::detail::BlockTaskEncoder;
using mproc::detail::ResultBlock;
using mproc::detail::ResultWriter;

double scale(int value, short factor) {
    if (factor == 0) throw std::domain_error("no factor for " + std::to_string(value));
    return value * 0.5 * factor;
}
using Scale = double (*)(int, short);
using ScaleArgs = std::tuple<int, short>;

// Encodes the calls, runs them as a worker does, and returns the result frame.
Frame run_block(const std::vector<ScaleArgs>& calls) {
    BlockTaskEncoder<Scale, ScaleArgs> encoder(scale, calls.size());
    for (const auto& call : calls) encoder.add(call);
    const Frame tasks = encoder.finish();
    EXPECT_EQ(tasks.kind(), FrameKind::task_block);
    EXPECT_EQ(tasks.header().item_count, calls.size());
    EXPECT_EQ(tasks.payload().size(), calls.size() * (sizeof(int) + sizeof(short)));
    EXPECT_NO_THROW(check_header(tasks.header()));
    ResultWriter out(5, nullptr);
    mproc::detail::run_block_chunk<Scale, ScaleArgs>(tasks, out);
    return out.finish();
}

struct Outcomes {
    std::vector<double> values;
    std::vector<std::string> errors;  // by task; empty for a value
};

Outcomes read_block(std::uint32_t tasks, std::span<const std::byte> payload) {
    Outcomes outcomes{std::vector<double>(tasks), std::vector<std::string>(tasks)};
    ResultBlock<double>(tasks, payload)
        .for_each([&](std::uint32_t task, double value) { outcomes.values[task] = value; },
                  [&](std::uint32_t task, std::exception_ptr error) {
                      try {
                          std::rethrow_exception(error);
                      } catch (const mproc::RemoteError& remote) {
                          outcomes.errors[task] = remote.message();
                      }
                  });
    return outcomes;
}

TEST(Block, TasksOfNumbersRunIntoABlockOfResults) {
    const Frame results = run_block({{1, 2}, {3, 4}, {-5, 1}});
    EXPECT_EQ(results.kind(), FrameKind::result_block);
    EXPECT_EQ(results.header().item_count, 3U);
    EXPECT_EQ(results.header().sequence, 5U);
    EXPECT_NO_THROW(check_header(results.header()));
    EXPECT_EQ(results.payload().size(), 3 * (1 + sizeof(double)));  // no error items
    const Outcomes outcomes = read_block(3, results.payload());
    EXPECT_EQ(outcomes.values, (std::vector<double>{1.0, 6.0, -2.5}));
    EXPECT_EQ(outcomes.errors, std::vector<std::string>(3));
}

TEST(Block, PairsTuplesAndArraysOfNumbersTravelAsTheirNumbersBackToBack) {
    using Range = std::pair<std::int64_t, std::int64_t>;
    using Weights = std::array<std::tuple<char, double>, 2>;
    auto weigh = [](Range range, Weights weights) {
        double total = static_cast<double>(range.second - range.first);
        for (const auto& [kind, weight] : weights) total += kind * weight;
        return total;
    };
    using Weigh = decltype(weigh);
    using Args = std::tuple<Range, Weights>;
    BlockTaskEncoder<Weigh, Args> encoder(weigh, 2);
    encoder.add(Args{{10, 30}, {{{1, 0.5}, {2, 0.25}}}});
    encoder.add(Args{{-4, 4}, {{{3, 1.0}, {0, 9.0}}}});
    const Frame tasks = encoder.finish();
    EXPECT_EQ(tasks.kind(), FrameKind::task_block);
    // The numbers only: no padding after a char, no tuple or array machinery.
    EXPECT_EQ(tasks.payload().size(), 2 * (2 * sizeof(std::int64_t) + 2 * (1 + sizeof(double))));
    ResultWriter out(1, nullptr);
    mproc::detail::run_block_chunk<Weigh, Args>(tasks, out);
    const Frame results = out.finish();
    std::vector<double> values;
    ResultBlock<double>(2, results.payload())
        .for_each([&](std::uint32_t, double value) { values.push_back(value); },
                  [](std::uint32_t, std::exception_ptr) { ADD_FAILURE() << "a task failed"; });
    EXPECT_EQ(values, (std::vector<double>{21.0, 11.0}));
}

// A claim (claimed_from_board): the batch's tasks, run as a worker takes them from the board.
using mproc::detail::ClaimBoard;

Frame claim_of(const std::vector<ScaleArgs>& calls, std::uint64_t generation) {
    BlockTaskEncoder<Scale, ScaleArgs> encoder(scale, calls.size());
    for (const auto& call : calls) encoder.add(call);
    mproc::detail::Chunk batch;
    batch.frame = std::make_shared<Frame>(encoder.finish());
    return std::move(*mproc::detail::claim_chunk(batch, generation).frame);
}

Frame run_claim(const Frame& claim, ClaimBoard& board) {
    ResultWriter out(3, nullptr, &board);
    mproc::detail::run_block_chunk<Scale, ScaleArgs>(claim, out);
    return out.finish();
}

TEST(Block, AClaimRunsTheTasksLeftOnTheBoardAndNamesThemAfterTheirResults) {
    ClaimBoard board;
    board.generation = 7;
    board.next = 1;  // another worker took task 0
    const Frame results = run_claim(claim_of({{1, 2}, {3, 4}, {-5, 1}, {2, 0}}, 7), board);
    EXPECT_EQ(results.kind(), FrameKind::result_block);
    EXPECT_NE(results.header().flags & mproc::detail::claimed_from_board, 0);
    EXPECT_NO_THROW(check_header(results.header()));
    ASSERT_EQ(results.header().item_count, 3U);
    const auto payload = results.payload();
    std::array<std::uint32_t, 3> tasks{};
    const std::size_t trailer = sizeof tasks;
    std::memcpy(tasks.data(), payload.data() + payload.size() - trailer, trailer);
    EXPECT_EQ(tasks, (std::array<std::uint32_t, 3>{1, 2, 3}));
    const Outcomes outcomes = read_block(3, payload.first(payload.size() - trailer));
    EXPECT_EQ(outcomes.values, (std::vector<double>{6.0, -2.5, 0.0}));
    EXPECT_EQ(outcomes.errors, (std::vector<std::string>{"", "", "no factor for 2"}));
    EXPECT_GE(board.next.load(), 4U);
}

TEST(Block, AClaimTakesNothingFromABoardOfAnotherBatchOrWhenItNamesNone) {
    ClaimBoard board;
    board.generation = 8;
    EXPECT_EQ(run_claim(claim_of({{1, 2}, {3, 4}}, 7), board).header().item_count, 0U);
    EXPECT_EQ(board.next.load(), 0U);
    // A corrupt claim too short to name its batch: the board is not touched either.
    board.generation = 0;
    Frame cut = claim_of({{1, 2}}, 7);
    cut.bytes.resize(sizeof(FrameHeader) + 4);
    FrameHeader header = cut.header();
    header.payload_bytes = 4;
    std::memcpy(cut.bytes.data(), &header, sizeof header);
    EXPECT_EQ(run_claim(cut, board).header().item_count, 0U);
    EXPECT_EQ(board.next.load(), 0U);
}

TEST(Block, EachFailedTaskKeepsItsOwnError) {
    const Frame results = run_block({{1, 0}, {2, 2}, {3, 0}, {4, 2}});
    const Outcomes outcomes = read_block(4, results.payload());
    EXPECT_EQ(outcomes.values, (std::vector<double>{0.0, 2.0, 0.0, 4.0}));
    EXPECT_EQ(outcomes.errors,
              (std::vector<std::string>{"no factor for 1", "", "no factor for 3", ""}));
}

TEST(Block, ABlockOfTasksShorterThanItsCountFailsEveryTask) {
    BlockTaskEncoder<Scale, ScaleArgs> encoder(scale);
    encoder.add(ScaleArgs{1, 2});
    encoder.add(ScaleArgs{3, 4});
    Frame tasks = encoder.finish();
    tasks.bytes.pop_back();
    FrameHeader header = tasks.header();
    header.payload_bytes -= 1;
    std::memcpy(tasks.bytes.data(), &header, sizeof header);
    ResultWriter out(1, nullptr);
    mproc::detail::run_block_chunk<Scale, ScaleArgs>(tasks, out);
    const Frame results = out.finish();
    EXPECT_EQ(out.errors(), 2U);
    int failures = 0;
    ResultBlock<double>(2, results.payload())
        .for_each([](std::uint32_t, double) { ADD_FAILURE() << "a task ran on corrupt bytes"; },
                  [&](std::uint32_t, std::exception_ptr error) {
                      ++failures;
                      EXPECT_THROW(std::rethrow_exception(error), mproc::RemoteError);
                  });
    EXPECT_EQ(failures, 2);
}

TEST(Block, EveryTruncationOfABlockOfResultsIsRefusedWhole) {
    const Frame results = run_block({{1, 0}, {2, 2}, {3, 0}});
    const auto payload = results.payload();
    for (std::size_t length = 0; length < payload.size(); ++length) {
        EXPECT_THROW(ResultBlock<double>(3, payload.first(length)), SerializationError)
            << "a block cut to " << length << " bytes";
    }
}

TEST(Block, AnUnknownStatusOrBytesAfterTheErrorsAreRefused) {
    const Frame results = run_block({{1, 2}, {2, 0}});
    Bytes payload(results.payload().begin(), results.payload().end());
    EXPECT_NO_THROW(ResultBlock<double>(2, payload));
    Bytes unknown = payload;
    unknown[0] = std::byte{7};
    EXPECT_THROW(ResultBlock<double>(2, unknown), SerializationError);
    Bytes longer = payload;
    longer.push_back(std::byte{0});
    EXPECT_THROW(ResultBlock<double>(2, longer), SerializationError);
    Bytes no_error = payload;
    no_error[1] = no_error[0];  // says ok, but its error item follows
    EXPECT_THROW(ResultBlock<double>(2, no_error), SerializationError);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Results that cannot be sent

TEST(Results, AResultWhoseHandlesWouldPassTheFrameLimitFailsAndTheOthersKeepTheirs) {
    using Arrays = std::vector<mproc::SharedArray<int>>;
    const Arrays hundred(100, mproc::SharedArray<int>(1));
    ResultWriter out(7, nullptr);
    for (std::uint32_t task = 0; task < 3; ++task) {
        out.begin_item(task);
        out.ok(hundred);
        out.end_item();
    }
    out.begin_item(3);
    out.ok(Arrays(1, mproc::SharedArray<int>(1)));
    out.end_item();
    const Frame results = out.finish();
    EXPECT_EQ(results.header().item_count, 4U);
    EXPECT_EQ(results.fds.size(), 201U);
    EXPECT_EQ(out.errors(), 1U);
    mproc::detail::FdInbox inbox(results.fds);
    mproc::detail::FdInboxScope scope(inbox);
    ItemReader items(results.payload());
    EXPECT_EQ(mproc::detail::decode_result<Arrays>(items.next()).size(), 100U);
    EXPECT_EQ(mproc::detail::decode_result<Arrays>(items.next()).size(), 100U);
    try {
        mproc::detail::decode_result<Arrays>(items.next());
        FAIL() << "expected a SerializationError";
    } catch (const SerializationError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("holds 100 shared handles"), std::string::npos) << message;
        EXPECT_NE(message.find("the 200 that"), std::string::npos) << message;
    }
    EXPECT_EQ(mproc::detail::decode_result<Arrays>(items.next()).size(), 1U);
}
