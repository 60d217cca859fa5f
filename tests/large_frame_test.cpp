// Frames larger than large_frame_bytes travel as a sealed memfd beside their header: through a
// pool in both directions under every start method, refused when forged, and leaving no
// descriptor or mapping behind.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
#include "mproc/resources.hpp"
#include "os/socket.hpp"
#include "process_helpers.hpp"
#include "transport/socket_link.hpp"

namespace {

using mproc::detail::Frame;
using mproc::detail::FrameHeader;
using mproc::detail::FrameKind;
using mproc::detail::FrameWriter;
using mproc::detail::large_frame_bytes;
using mproc::detail::UniqueFd;

std::vector<std::uint8_t> pattern(std::size_t size, std::uint8_t first = 0) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(i * 31 + size);
    if (size > 0) bytes[0] = first;
    return bytes;
}

std::vector<std::uint8_t> echo(const std::vector<std::uint8_t>& bytes) {
    return bytes;
}

std::string text_of(std::size_t size) {
    return std::string(size, 'q') + std::to_string(size);
}

std::size_t die_on_one(const std::vector<std::uint8_t>& bytes) {
    if (bytes.at(0) == 1) ::raise(SIGKILL);
    return bytes.size();
}

// Sizes around the threshold, counted as the encoded argument (8 bytes of size prefix, 4 of
// item length, 48 of header besides).
const std::vector<std::size_t> sizes_around_threshold = {
    large_frame_bytes - 4096, large_frame_bytes - 60,    large_frame_bytes - 59, large_frame_bytes,
    large_frame_bytes + 1,    3 * large_frame_bytes + 7, std::size_t{16} << 20,
};

// This process's mappings of frames' files (their memfd's name shows in /proc/self/maps).
std::size_t frame_mappings() {
    std::ifstream maps("/proc/self/maps");
    std::size_t count = 0;
    for (std::string line; std::getline(maps, line);) {
        if (line.find("mproc-frame") != std::string::npos) ++count;
    }
    return count;
}

class LargeFrameTest : public mproc::testing::StartMethodTest {};

INSTANTIATE_TEST_SUITE_P(StartMethods, LargeFrameTest,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

TEST_P(LargeFrameTest, LargeArgumentsAndResultsRoundTripExactly) {
    mproc::Pool pool(options(2));
    std::vector<std::vector<std::uint8_t>> inputs;
    for (std::size_t size : sizes_around_threshold) inputs.push_back(pattern(size));
    const auto outputs = pool.map(echo, inputs, 1);
    ASSERT_EQ(outputs.size(), inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        EXPECT_TRUE(outputs[i] == inputs[i]) << "size " << inputs[i].size();
    }
}

TEST_P(LargeFrameTest, ChunksOfManyTasksThatTogetherPassTheThresholdRoundTrip) {
    mproc::Pool pool(options(2));
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < 64; ++i) sizes.push_back(100'000 + i);
    const auto texts = pool.map(text_of, sizes, 32);  // about 3 MiB of results per chunk
    ASSERT_EQ(texts.size(), sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i) EXPECT_EQ(texts[i], text_of(sizes[i]));
}

TEST_P(LargeFrameTest, ManyLargeTasksLeaveNoDescriptorOrMappingBehind) {
    const auto descriptors = mproc::testing::open_descriptor_count();
    const auto mappings = frame_mappings();
    {
        mproc::Pool pool(options(2));
        const std::vector<std::vector<std::uint8_t>> inputs(40, pattern(2 * large_frame_bytes));
        const auto outputs = pool.map(echo, inputs, 1);
        for (const auto& output : outputs) ASSERT_TRUE(output == inputs[0]);
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
    EXPECT_EQ(frame_mappings(), mappings);
}

TEST_P(LargeFrameTest, WorkerKilledHoldingALargeFrameFailsItsTaskAndLeaksNothing) {
    const auto descriptors = mproc::testing::open_descriptor_count();
    const auto mappings = frame_mappings();
    {
        mproc::Pool pool(options(2));
        std::vector<mproc::AsyncResult<std::size_t>> results;
        for (std::uint8_t first : {0, 0, 1, 0, 0}) {
            results.push_back(pool.apply_async(die_on_one, pattern(3 * large_frame_bytes, first)));
        }
        for (std::size_t i = 0; i < results.size(); ++i) {
            if (i == 2) {
                EXPECT_THROW(results[i].get(), mproc::WorkerLost);
            } else {
                EXPECT_EQ(results[i].get(), 3 * large_frame_bytes);
            }
        }
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
    EXPECT_EQ(frame_mappings(), mappings);
}

std::vector<std::uint8_t> bytes_of(std::size_t size) {
    return pattern(size);
}

TEST_P(LargeFrameTest, AnArgumentOverThePoolsLimitIsRefusedWhenSubmitted) {
    mproc::Pool pool(options(1, {.max_value_bytes = large_frame_bytes}));
    try {
        pool.apply(die_on_one, pattern(2 * large_frame_bytes));
        ADD_FAILURE() << "an argument over the pool's limit was sent";
    } catch (const mproc::SerializationError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("limit of " + std::to_string(large_frame_bytes)), std::string::npos)
            << message;
        EXPECT_NE(message.find("max_value_bytes"), std::string::npos) << message;
    }
    EXPECT_EQ(pool.apply(die_on_one, pattern(large_frame_bytes / 2)), large_frame_bytes / 2);
}

// Under spawn the worker is a fresh program: only the pool's shared memory tells it the limit.
TEST_P(LargeFrameTest, AResultOverThePoolsLimitFailsItsTaskInTheWorker) {
    mproc::Pool pool(options(1, {.max_value_bytes = large_frame_bytes}));
    try {
        pool.apply(bytes_of, 2 * large_frame_bytes);
        ADD_FAILURE() << "a result over the pool's limit was sent";
    } catch (const mproc::SerializationError& error) {
        EXPECT_NE(std::string(error.what()).find("limit of " + std::to_string(large_frame_bytes)),
                  std::string::npos)
            << error.what();
    }
    EXPECT_EQ(pool.apply(bytes_of, large_frame_bytes / 2).size(), large_frame_bytes / 2);
}

TEST(LargeFrame, APoolLimitUnder1MiBIsRefused) {
    EXPECT_THROW(mproc::Pool(mproc::PoolOptions{.processes = 1, .max_value_bytes = (1 << 20) - 1}),
                 mproc::StateError);
}

// The points of a value of `size` bytes that its checksum reads: a few, spread over it.
std::vector<std::size_t> checked_points(std::size_t size) {
    std::vector<std::size_t> points;
    for (std::size_t at = 0; at < size; at += size / 7 + 1) points.push_back(at);
    if (size > 0) points.push_back(size - 1);
    return points;
}

// What a value made by marked() holds at `at`.
char marked_byte(std::size_t size, std::size_t at) {
    return at + 1 == size ? 'z' : static_cast<char>('a' + at % 23);
}

// A value of `size` bytes, zero but at its checked points.
template <class Bytes>
Bytes marked(std::size_t size) {
    Bytes bytes(size, '\0');
    for (std::size_t at : checked_points(size)) bytes[at] = marked_byte(size, at);
    return bytes;
}

using SizeAndChecksum = std::pair<std::size_t, std::uint64_t>;

template <class Bytes>
SizeAndChecksum size_and_checksum(const Bytes& bytes) {
    std::uint64_t sum = 0;
    for (std::size_t at : checked_points(bytes.size())) {
        sum = sum * 31 + static_cast<unsigned char>(bytes[at]);
    }
    return {bytes.size(), sum};
}

// What size_and_checksum says of marked(size), without making it.
SizeAndChecksum marked_size_and_checksum(std::size_t size) {
    std::uint64_t sum = 0;
    for (std::size_t at : checked_points(size)) {
        sum = sum * 31 + static_cast<unsigned char>(marked_byte(size, at));
    }
    return {size, sum};
}

SizeAndChecksum size_and_checksum_of_bytes(const std::vector<char>& bytes) {
    return size_and_checksum(bytes);
}

std::string marked_text(std::size_t size) {
    return marked<std::string>(size);
}

// 2.5 GiB: past 2^31 (int, ssize_t) and the old 1 GiB limit. Each huge test holds at most
// three copies at once (the sender's value, the frame's file, the receiver's value).
constexpr std::size_t huge_value_bytes = std::size_t{5} << 29;

// The tests of huge values run only where three copies fit with room to spare.
bool has_room_for_huge_values() {
    return mproc::memory().available >= std::uint64_t{12} << 30;
}

TEST_P(LargeFrameTest, AnArgumentOf2Point5GiBReachesItsTask) {
    if (!has_room_for_huge_values()) GTEST_SKIP() << "needs 12 GiB of free memory";
    mproc::Pool pool(options(1));
    std::optional<mproc::AsyncResult<SizeAndChecksum>> result;
    {
        const auto bytes = marked<std::vector<char>>(huge_value_bytes);
        result.emplace(pool.apply_async(size_and_checksum_of_bytes, bytes));
    }  // the frame's file holds the argument now: this copy goes before the worker makes its own
    EXPECT_EQ(result->get(), marked_size_and_checksum(huge_value_bytes));
}

TEST_P(LargeFrameTest, AResultOf2Point5GiBReachesItsCaller) {
    if (!has_room_for_huge_values()) GTEST_SKIP() << "needs 12 GiB of free memory";
    mproc::Pool pool(options(1));
    const std::string text = pool.apply(marked_text, huge_value_bytes);
    EXPECT_EQ(size_and_checksum(text), marked_size_and_checksum(huge_value_bytes));
}

TEST(LargeFrame, OnlyAFrameOverTheThresholdTravelsInAFile) {
    FrameWriter small(FrameKind::task, 0);
    small.begin_item();
    small.buffer().resize(small.buffer().size() + 1000);
    small.end_item();
    EXPECT_EQ(small.finish().file, nullptr);

    FrameWriter large(FrameKind::task, 0);
    large.begin_item();
    mproc::detail::encode(large.buffer(), pattern(large_frame_bytes));
    large.end_item();
    const Frame frame = large.finish();
    ASSERT_NE(frame.file, nullptr);
    EXPECT_EQ(frame.bytes.size(), sizeof(FrameHeader));  // the stream carries the header alone
    EXPECT_EQ(frame.header().flags, mproc::detail::payload_in_file);
    EXPECT_EQ(frame.size(), sizeof(FrameHeader) + frame.header().payload_bytes);
    mproc::detail::ItemReader items(frame.payload());
    std::vector<std::uint8_t> decoded;
    mproc::detail::decode(items.next(), decoded);
    EXPECT_TRUE(decoded == pattern(large_frame_bytes));
}

TEST(LargeFrame, APipeCarriesLargeMessagesAndLeavesNothingBehind) {
    const auto descriptors = mproc::testing::open_descriptor_count();
    const auto mappings = frame_mappings();
    {
        auto [a, b] = mproc::pipe<std::vector<std::uint8_t>>();
        // A frame under the threshold fills the socket: the sender needs a reader running.
        std::thread sender([&a] {
            for (std::size_t size : sizes_around_threshold) a.send(pattern(size));
        });
        for (std::size_t size : sizes_around_threshold) {
            EXPECT_TRUE(b.recv() == pattern(size)) << "size " << size;
        }
        sender.join();
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
    EXPECT_EQ(frame_mappings(), mappings);
}

TEST(LargeFrame, AFrameOverItsWritersLimitIsRefusedInAFileToo) {
    FrameWriter writer(FrameKind::task, 0, 0, 0, 2 * large_frame_bytes);
    writer.begin_item();
    // The file is sparse: no page of it is written.
    writer.buffer().resize(writer.buffer().size() + 2 * large_frame_bytes + 1);
    EXPECT_THROW(writer.end_item(), mproc::SerializationError);
}

TEST(LargeFrame, AFrameOverALinksLimitIsRefusedBeforeItIsMapped) {
    FrameWriter writer(FrameKind::task, 0);
    writer.begin_item();
    mproc::detail::encode(writer.buffer(), pattern(2 * large_frame_bytes));
    writer.end_item();
    Frame frame = writer.finish();
    ASSERT_NE(frame.file, nullptr);
    auto [sender_end, receiver_end] = mproc::detail::make_socket_pair(SOCK_STREAM);
    mproc::detail::SocketLink sender(std::move(sender_end));
    ASSERT_TRUE(sender.send(std::move(frame)));
    const auto mappings = frame_mappings();
    mproc::detail::SocketLink receiver(std::move(receiver_end), large_frame_bytes);
    try {
        receiver.receive();
        ADD_FAILURE() << "a frame over the link's limit was taken";
    } catch (const mproc::SerializationError& error) {
        EXPECT_NE(std::string(error.what()).find("limit of " + std::to_string(large_frame_bytes)),
                  std::string::npos)
            << error.what();
    }
    EXPECT_EQ(frame_mappings(), mappings);
}

TEST(LargeFrame, AHeaderThatClaims2To62BytesIsRefusedByALinkAndAPipe) {
    FrameHeader header{};
    header.magic = mproc::detail::frame_magic;
    header.version = mproc::detail::frame_version;
    header.kind = static_cast<std::uint16_t>(FrameKind::task);
    header.item_count = 1;
    header.payload_bytes = std::uint64_t{1} << 62;
    auto [link_sender, link_receiver] = mproc::detail::make_socket_pair(SOCK_STREAM);
    ASSERT_TRUE(mproc::detail::send_packet(link_sender.get(), &header, sizeof header, {}));
    mproc::detail::SocketLink link(std::move(link_receiver));
    EXPECT_THROW(link.receive(), mproc::SerializationError);
    auto [pipe_sender, pipe_receiver] = mproc::detail::make_socket_pair(SOCK_STREAM);
    ASSERT_TRUE(mproc::detail::send_packet(pipe_sender.get(), &header, sizeof header, {}));
    auto end = mproc::detail::ConnectionCore::adopt(std::move(pipe_receiver));
    EXPECT_THROW(end->receive(), mproc::SerializationError);
}

// An item of 4 GiB and more travels behind the long prefix. The frame's file holds it alone:
// the test writes a byte at each end of it, and the move behind the long length touches the
// rest once.
TEST(LargeFrame, AnItemOf4GiBOrMoreTravelsBehindALongLength) {
    if (!has_room_for_huge_values()) GTEST_SKIP() << "needs 12 GiB of free memory";
    const std::uint64_t length = (std::uint64_t{1} << 32) + 5;
    FrameWriter writer(FrameKind::result, 0);
    writer.begin_item();
    auto& buffer = writer.buffer();
    const std::size_t start = buffer.size();
    buffer.resize(start + length);
    buffer.data()[start] = std::byte{0x5a};
    buffer.data()[start + length - 1] = std::byte{0xa5};
    writer.end_item();
    const Frame frame = writer.finish();
    ASSERT_NE(frame.file, nullptr);
    EXPECT_EQ(frame.header().payload_bytes, 12 + length);
    mproc::detail::ItemReader items(frame.payload());
    const auto item = items.next();
    ASSERT_EQ(item.size(), length);
    EXPECT_EQ(item.front(), std::byte{0x5a});
    EXPECT_EQ(item.back(), std::byte{0xa5});
    EXPECT_TRUE(items.at_end());
}

// A frame header as a forger would write it: a payload that claims to be in a file.
FrameHeader header_claiming_a_file(std::uint64_t payload_bytes, std::uint16_t fd_count) {
    FrameHeader header{};
    header.magic = mproc::detail::frame_magic;
    header.version = mproc::detail::frame_version;
    header.kind = static_cast<std::uint16_t>(FrameKind::task);
    header.flags = mproc::detail::payload_in_file;
    header.fd_count = fd_count;
    header.payload_bytes = payload_bytes;
    return header;
}

UniqueFd memfd_of(std::size_t bytes, int seals) {
    UniqueFd fd(::memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    EXPECT_TRUE(fd);
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(bytes)), 0);
    if (seals != 0) {
        EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, seals), 0);
    }
    return fd;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// What a link makes of a header and descriptors sent by hand: the message of the
// SerializationError it throws, or "" when it takes the frame.
std::string receive_forged(const FrameHeader& header, std::vector<int> fds) {
    auto [sender, receiver] = mproc::detail::make_socket_pair(SOCK_STREAM);
    EXPECT_TRUE(mproc::detail::send_packet(sender.get(), &header, sizeof header, fds));
    mproc::detail::SocketLink link(std::move(receiver));
    try {
        link.receive();
        return "";
    } catch (const mproc::SerializationError& error) {
        return error.what();
    }
}

TEST(LargeFrame, AFrameThatClaimsAFileButCarriesNoDescriptorIsRefused) {
    EXPECT_PRED2(contains, receive_forged(header_claiming_a_file(100, 0), {}),
                 "carries no descriptor");
    EXPECT_PRED2(contains, receive_forged(header_claiming_a_file(100, 1), {}), "fewer arrived");
}

TEST(LargeFrame, AFileOfAnotherSizeThanTheHeaderClaimsIsRefused) {
    const auto descriptors = mproc::testing::open_descriptor_count();
    const UniqueFd file = memfd_of(1000, F_SEAL_SHRINK);
    const std::string message =
        receive_forged(header_claiming_a_file(2000 - sizeof(FrameHeader), 1), {file.get()});
    EXPECT_PRED2(contains, message, "holds 1000 bytes but its header claims 2000");
    const std::string larger =
        receive_forged(header_claiming_a_file(500 - sizeof(FrameHeader), 1), {file.get()});
    EXPECT_PRED2(contains, larger, "holds 1000 bytes but its header claims 500");
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors + 1);  // `file` alone
}

TEST(LargeFrame, AFileWhoseSizeIsNotSealedIsRefused) {
    const UniqueFd file = memfd_of(1000, 0);
    EXPECT_PRED2(
        contains,
        receive_forged(header_claiming_a_file(1000 - sizeof(FrameHeader), 1), {file.get()}),
        "does not have its size sealed");
}

TEST(LargeFrame, ADescriptorThatIsNotAMemfdIsRefused) {
    int ends[2];
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    const UniqueFd read_end(ends[0]);
    const UniqueFd write_end(ends[1]);
    EXPECT_PRED2(contains, receive_forged(header_claiming_a_file(100, 1), {read_end.get()}),
                 "is not a memfd");
}

TEST(LargeFrame, UnknownFlagsAreRefused) {
    FrameHeader header = header_claiming_a_file(100, 1);
    header.flags = 0x40;
    EXPECT_THROW(mproc::detail::check_header(header), mproc::SerializationError);
}

TEST(LargeFrame, AnHonestFileIsTakenWhole) {
    const std::vector<std::uint8_t> payload = pattern(3000);
    FrameHeader header = header_claiming_a_file(payload.size(), 1);
    const UniqueFd file = memfd_of(sizeof header + payload.size(), 0);
    ASSERT_EQ(::pwrite(file.get(), payload.data(), payload.size(), sizeof header),
              static_cast<ssize_t>(payload.size()));
    ASSERT_EQ(::fcntl(file.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
    auto [sender, receiver] = mproc::detail::make_socket_pair(SOCK_STREAM);
    const int fds[] = {file.get()};
    ASSERT_TRUE(mproc::detail::send_packet(sender.get(), &header, sizeof header, fds));
    mproc::detail::SocketLink link(std::move(receiver));
    const auto frame = link.receive();
    ASSERT_TRUE(frame.has_value());
    ASSERT_EQ(frame->payload().size(), payload.size());
    EXPECT_EQ(std::memcmp(frame->payload().data(), payload.data(), payload.size()), 0);
    EXPECT_TRUE(frame->fds.empty());  // the file is the payload, not a handle
}

}  // namespace
