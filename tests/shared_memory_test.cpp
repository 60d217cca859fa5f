#include "mproc/shared_memory.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cereal/archives/binary.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/errors.hpp"

namespace {

using mproc::SharedArray;
using mproc::detail::FdInbox;
using mproc::detail::FdInboxScope;
using mproc::detail::FdOutbox;
using mproc::detail::FdOutboxScope;
using mproc::detail::UniqueFd;

constexpr const char* memfd_name = "mproc-shared-array";

// Lines of /proc/self/maps that are mappings of an mproc memfd.
int count_shared_mappings() {
    std::ifstream maps("/proc/self/maps");
    int count = 0;
    for (std::string line; std::getline(maps, line);) {
        if (line.find(memfd_name) != std::string::npos) ++count;
    }
    return count;
}

// Open descriptors of this process that refer to an mproc memfd.
int count_shared_descriptors() {
    int count = 0;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
        std::error_code link_error;
        auto target = std::filesystem::read_symlink(entry.path(), link_error);
        if (!link_error &&
            target.string().find(std::string("memfd:") + memfd_name) != std::string::npos) {
            ++count;
        }
    }
    return count;
}

std::set<std::string> dev_shm_listing() {
    std::set<std::string> names;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", error)) {
        names.insert(entry.path().filename().string());
    }
    return names;
}

// Waits at most `limit` for pid to exit and returns its wait status; kills it past the limit.
int wait_for_exit(pid_t pid, std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            ADD_FAILURE() << "child " << pid << " did not exit within " << limit.count() << " s";
            return status;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return status;
}

// Encodes value as mproc does for a task argument: descriptors go to outbox, bytes are returned.
template <class T>
std::string encode(const T& value, FdOutbox& outbox) {
    std::stringstream stream;
    FdOutboxScope scope(outbox);
    cereal::BinaryOutputArchive archive(stream);
    archive(value);
    return stream.str();
}

// Decodes bytes as mproc does on the receiving side, with fds as the frame's descriptors.
template <class T>
void decode(const std::string& bytes, std::span<const UniqueFd> fds, T& value) {
    std::stringstream stream(bytes);
    FdInbox inbox(fds);
    FdInboxScope scope(inbox);
    cereal::BinaryInputArchive archive(stream);
    archive(value);
}

TEST(SharedArray, NewArrayIsZeroFilled) {
    SharedArray<std::int64_t> a(10000);
    EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](std::int64_t x) { return x == 0; }));
}

TEST(SharedArray, ElementWrittenThroughIndexReadsBack) {
    SharedArray<int> a(16);
    a[7] = 42;
    EXPECT_EQ(a[7], 42);
    EXPECT_EQ(a[6], 0);
    EXPECT_EQ(a[8], 0);
}

TEST(SharedArray, SpanAndIteratorsCoverExactlyItsElements) {
    SharedArray<double> a(5);
    std::iota(a.begin(), a.end(), 1.0);
    std::span<double> s = a.span();
    ASSERT_EQ(a.size(), 5u);
    EXPECT_EQ(s.size(), 5u);
    EXPECT_EQ(s.data(), a.data());
    EXPECT_EQ(a.end() - a.begin(), 5);
    EXPECT_EQ(s[0], 1.0);
    EXPECT_EQ(s[4], 5.0);
}

TEST(SharedArray, CopiesShareTheSameMemory) {
    SharedArray<int> a(4);
    SharedArray<int> b = a;
    SharedArray<int> c;
    c = b;
    b[2] = 7;
    EXPECT_EQ(a[2], 7);
    EXPECT_EQ(c[2], 7);
    EXPECT_EQ(a.data(), c.data());
}

TEST(SharedArray, ForkedChildWritesAreSeenByTheParent) {
    SharedArray<int> a(1024);
    a[0] = 1;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // The child sees what the parent wrote before fork, and writes for the parent to read.
        if (a[0] != 1) ::_exit(2);
        for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<int>(i) * 3;
        ::_exit(0);
    }
    int status = wait_for_exit(pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(a[0], 0);
    EXPECT_EQ(a[1], 3);
    EXPECT_EQ(a[1023], 1023 * 3);
}

TEST(SharedArray, NothingIsCreatedInDevShm) {
    auto before = dev_shm_listing();
    {
        SharedArray<int> a(1 << 16);
        SharedArray<int> b = a;
        a[0] = 1;
        EXPECT_EQ(dev_shm_listing(), before);
    }
    EXPECT_EQ(dev_shm_listing(), before);
}

TEST(SharedArray, MemoryIsReleasedWhenTheLastHandleGoes) {
    int mappings = count_shared_mappings();
    int descriptors = count_shared_descriptors();
    {
        SharedArray<int> a(1000);
        {
            SharedArray<int> b = a;
            EXPECT_EQ(count_shared_mappings(), mappings + 1);
            EXPECT_EQ(count_shared_descriptors(), descriptors + 1);
        }
        // One handle is still alive, so the memory must be too.
        EXPECT_EQ(count_shared_mappings(), mappings + 1);
        EXPECT_EQ(count_shared_descriptors(), descriptors + 1);
    }
    EXPECT_EQ(count_shared_mappings(), mappings);
    EXPECT_EQ(count_shared_descriptors(), descriptors);
}

TEST(SharedArray, SaveAndLoadGiveAHandleToTheSameMemory) {
    SharedArray<int> sent(256);
    sent[10] = 11;
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    SharedArray<int> received;
    decode(bytes, fds, received);

    ASSERT_EQ(received.size(), sent.size());
    // A second mapping of the same memory, not the same pointer handed back.
    EXPECT_NE(received.data(), sent.data());
    EXPECT_EQ(received[10], 11);
    received[20] = 21;
    EXPECT_EQ(sent[20], 21);
}

TEST(SharedArray, SavingWritesAHandleNotTheElements) {
    SharedArray<char> sent(1 << 20);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    EXPECT_LE(bytes.size(), 16u);
    EXPECT_EQ(outbox.take().size(), 1u);
}

TEST(SharedArray, ReceivedHandleKeepsTheMemoryAfterTheSenderLetsGo) {
    int descriptors = count_shared_descriptors();
    SharedArray<int> received;
    {
        SharedArray<int> sent(8);
        sent[3] = 33;
        FdOutbox outbox;
        std::string bytes = encode(sent, outbox);
        std::vector<UniqueFd> fds = outbox.take();
        decode(bytes, fds, received);
    }
    EXPECT_EQ(received[3], 33);
    EXPECT_EQ(count_shared_descriptors(), descriptors + 1);
}

TEST(SharedArray, NoHolderCanResizeTheMemory) {
    // A block shrunk under another process's mapping would crash it (SIGBUS) when touched.
    SharedArray<int> sent(1024);
    FdOutbox outbox;
    encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    ASSERT_EQ(fds.size(), 1u);
    EXPECT_NE(::ftruncate(fds[0].get(), 0), 0);
    EXPECT_NE(::ftruncate(fds[0].get(), 1 << 20), 0);
    sent[1023] = 1;
    EXPECT_EQ(sent[1023], 1);
}

TEST(SharedArray, SavingOutsideAnOutboxThrowsSerializationError) {
    SharedArray<int> a(4);
    std::stringstream stream;
    cereal::BinaryOutputArchive archive(stream);
    EXPECT_THROW(archive(a), mproc::SerializationError);
}

TEST(SharedArray, LoadingOutsideAnInboxThrowsSerializationError) {
    SharedArray<int> sent(4);
    FdOutbox outbox;
    std::stringstream stream(encode(sent, outbox));
    cereal::BinaryInputArchive archive(stream);
    SharedArray<int> received;
    EXPECT_THROW(archive(received), mproc::SerializationError);
}

TEST(SharedArray, LoadingAsAnotherElementSizeThrowsSerializationError) {
    SharedArray<std::int32_t> sent(4);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    SharedArray<std::int64_t> received;
    EXPECT_THROW(decode(bytes, fds, received), mproc::SerializationError);
}

TEST(SharedArray, LoadingWithoutTheNamedDescriptorThrowsSerializationError) {
    SharedArray<int> sent(4);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> none;
    SharedArray<int> received;
    EXPECT_THROW(decode(bytes, none, received), mproc::SerializationError);
}

TEST(SharedArray, LoadingADescriptorThatIsNotASharedBlockThrowsError) {
    SharedArray<int> sent(4);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    int ends[2];
    ASSERT_EQ(::pipe(ends), 0);
    std::vector<UniqueFd> fds;
    fds.emplace_back(ends[0]);
    UniqueFd write_end(ends[1]);
    SharedArray<int> received;
    EXPECT_THROW(decode(bytes, fds, received), mproc::Error);
}

TEST(SharedArray, LoadingAMemfdWhoseSizeIsNotSealedThrowsError) {
    SharedArray<int> sent(4);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    UniqueFd unsealed(::memfd_create("not-mproc", MFD_CLOEXEC));
    ASSERT_TRUE(unsealed);
    ASSERT_EQ(::ftruncate(unsealed.get(), 4 * sizeof(int)), 0);
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(unsealed));
    SharedArray<int> received;
    EXPECT_THROW(decode(bytes, fds, received), mproc::Error);
}

TEST(SharedArray, FailedLoadLeavesTheTargetUnchanged) {
    SharedArray<std::int32_t> sent(4);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    SharedArray<std::int64_t> target(2);
    target[1] = 5;
    EXPECT_THROW(decode(bytes, fds, target), mproc::SerializationError);
    ASSERT_EQ(target.size(), 2u);
    EXPECT_EQ(target[1], 5);
}

TEST(SharedArray, DefaultConstructedArrayIsEmpty) {
    SharedArray<int> a;
    EXPECT_EQ(a.size(), 0u);
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(a.data(), nullptr);
}

TEST(SharedArray, MovedFromArrayIsEmpty) {
    SharedArray<int> a(4);
    SharedArray<int> b = std::move(a);
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    EXPECT_EQ(b.size(), 4u);
}

TEST(SharedArray, ZeroElementArrayIsEmptyAndUsable) {
    SharedArray<int> a(0);
    EXPECT_EQ(a.size(), 0u);
    EXPECT_TRUE(a.span().empty());
    EXPECT_EQ(a.begin(), a.end());
    SharedArray<int> copy = a;
    EXPECT_TRUE(copy.empty());
}

TEST(SharedArray, ZeroElementArrayAllocatesNothing) {
    int mappings = count_shared_mappings();
    int descriptors = count_shared_descriptors();
    SharedArray<int> a(0);
    EXPECT_EQ(count_shared_mappings(), mappings);
    EXPECT_EQ(count_shared_descriptors(), descriptors);
}

TEST(SharedArray, ZeroElementArrayTravelsWithoutADescriptor) {
    SharedArray<int> sent(0);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    EXPECT_TRUE(fds.empty());
    SharedArray<int> received(3);
    decode(bytes, fds, received);
    EXPECT_TRUE(received.empty());
}

TEST(SharedArray, SizeThatOverflowsThrowsError) {
    EXPECT_THROW(SharedArray<int>(SIZE_MAX / 2), mproc::Error);
}

TEST(SharedArray, SizeBeyondTheMachinesMemoryThrowsErrorAndLeaksNothing) {
    int mappings = count_shared_mappings();
    int descriptors = count_shared_descriptors();
    EXPECT_THROW(SharedArray<char>(SIZE_MAX / 2), mproc::Error);
    EXPECT_THROW(SharedArray<char>(std::size_t{1} << 50), mproc::Error);
    EXPECT_EQ(count_shared_mappings(), mappings);
    EXPECT_EQ(count_shared_descriptors(), descriptors);
}

}  // namespace
