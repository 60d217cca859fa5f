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
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
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

TEST(LargeFrame, AFrameOverTheSizeLimitIsRefusedInAFileToo) {
    FrameWriter writer(FrameKind::task, 0);
    writer.begin_item();
    // The file is sparse: no page of it is written.
    writer.buffer().resize(writer.buffer().size() + mproc::detail::max_payload_bytes + 1);
    EXPECT_THROW(writer.end_item(), mproc::SerializationError);
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
