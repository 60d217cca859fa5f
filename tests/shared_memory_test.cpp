#include "mproc/shared_memory.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cereal/archives/binary.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/errors.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "process_helpers.hpp"

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

// ---------------------------------------------------------------------------------------------
// SharedMemory: named shared memory. Every test makes its names unique with the pid, and removes
// what it created even when an assertion fails, through UniqueName.

using mproc::Process;
using mproc::SharedMemory;

// A name no other test or program uses; the object of that name, if any, is unlinked when the
// UniqueName goes.
class UniqueName {
  public:
    UniqueName() {
        static int counter = 0;
        name_ = "mproc-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    }
    ~UniqueName() { ::shm_unlink(("/" + name_).c_str()); }
    UniqueName(const UniqueName&) = delete;
    UniqueName& operator=(const UniqueName&) = delete;

    const std::string& str() const noexcept { return name_; }
    std::filesystem::path file() const { return std::filesystem::path("/dev/shm") / name_; }

  private:
    std::string name_;
};

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const mproc::Error& e) {
        return e.what();
    }
    return "(nothing was thrown)";
}

// Pool task: fills the memory it is given with value.
void fill_shared_memory(SharedMemory memory, int value) {
    std::memset(memory.data(), value, memory.size());
}

// Pool task: the name the memory arrived with.
std::string name_of_shared_memory(SharedMemory memory) {
    return memory.name();
}

TEST(SharedMemory, CreatedMemoryHasTheSizeAskedForAndIsZeroFilled) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 100000);
    ASSERT_EQ(memory.size(), 100000u);
    ASSERT_NE(memory.data(), nullptr);
    EXPECT_EQ(memory.span().size(), 100000u);
    EXPECT_EQ(memory.span().data(), memory.data());
    EXPECT_TRUE(std::all_of(memory.span().begin(), memory.span().end(),
                            [](std::byte b) { return b == std::byte{0}; }));
}

TEST(SharedMemory, AttachedHandleSeesTheCreatorsBytesAndTheCreatorSeesItsWrites) {
    UniqueName name;
    SharedMemory created = SharedMemory::create(name.str(), 4096);
    created.data()[10] = std::byte{42};
    SharedMemory attached = SharedMemory::attach(name.str());
    ASSERT_EQ(attached.size(), 4096u);
    EXPECT_EQ(attached.data()[10], std::byte{42});
    attached.data()[4095] = std::byte{7};
    EXPECT_EQ(created.data()[4095], std::byte{7});
}

TEST(SharedMemory, ChildProcessThatAttachesSeesTheParentsWritesAndTheParentSeesItsWrites) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 64);
    memory.data()[0] = std::byte{1};
    const std::string child_name = name.str();
    Process child([child_name] {
        SharedMemory attached = SharedMemory::attach(child_name);
        if (attached.data()[0] != std::byte{1}) throw std::runtime_error("parent's byte missing");
        attached.data()[1] = std::byte{2};
    });
    child.start();
    ASSERT_TRUE(child.join(std::chrono::seconds(30)));
    EXPECT_EQ(child.exitcode(), 0);
    EXPECT_EQ(memory.data()[1], std::byte{2});
}

TEST(SharedMemory, AttachingAMissingNameThrowsErrorSayingSo) {
    UniqueName name;
    const std::string message = message_of([&] { SharedMemory::attach(name.str()); });
    EXPECT_NE(message.find("no shared memory named"), std::string::npos) << message;
    EXPECT_NE(message.find(name.str()), std::string::npos) << message;
}

TEST(SharedMemory, CreatingANameThatExistsThrowsErrorSayingSo) {
    UniqueName name;
    SharedMemory first = SharedMemory::create(name.str(), 16);
    const std::string message = message_of([&] { SharedMemory::create(name.str(), 16); });
    EXPECT_NE(message.find("already exists"), std::string::npos) << message;
}

TEST(SharedMemory, FailedCreateOfAnExistingNameLeavesTheExistingMemoryAlone) {
    UniqueName name;
    SharedMemory first = SharedMemory::create(name.str(), 16);
    first.data()[3] = std::byte{9};
    EXPECT_THROW(SharedMemory::create(name.str(), 32), mproc::Error);
    SharedMemory attached = SharedMemory::attach(name.str());
    EXPECT_EQ(attached.size(), 16u);
    EXPECT_EQ(attached.data()[3], std::byte{9});
}

TEST(SharedMemory, FailedCreateLeavesNoNameAndNoDescriptorBehind) {
    UniqueName name;
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    EXPECT_THROW(SharedMemory::create(name.str(), 0), mproc::Error);
    EXPECT_THROW(SharedMemory::create(name.str(), std::size_t{1} << 50), mproc::Error);
    EXPECT_THROW(SharedMemory::create(name.str(), SIZE_MAX), mproc::Error);
    EXPECT_FALSE(std::filesystem::exists(name.file()));
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
}

TEST(SharedMemory, CreateLargerThanDevShmHasRoomForThrowsErrorAndLeavesNoName) {
    // A size the machine could hold but /dev/shm cannot: refused after the name was made.
    struct statvfs room {};
    struct sysinfo machine {};
    ASSERT_EQ(::statvfs("/dev/shm", &room), 0);
    ASSERT_EQ(::sysinfo(&machine), 0);
    const unsigned long long free = static_cast<unsigned long long>(room.f_bavail) * room.f_frsize;
    const unsigned long long memory =
        (static_cast<unsigned long long>(machine.totalram) + machine.totalswap) * machine.mem_unit;
    if (free + (1 << 20) > memory) GTEST_SKIP() << "/dev/shm may hold all of this machine's memory";
    UniqueName name;
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    const std::string message =
        message_of([&] { SharedMemory::create(name.str(), free + (1 << 20)); });
    EXPECT_NE(message.find("does not fit in /dev/shm"), std::string::npos) << message;
    EXPECT_FALSE(std::filesystem::exists(name.file()));
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
}

TEST(SharedMemory, UnlinkRemovesTheNameFromDevShm) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 16);
    ASSERT_TRUE(std::filesystem::exists(name.file()));
    memory.unlink();
    EXPECT_FALSE(std::filesystem::exists(name.file()));
}

TEST(SharedMemory, AttachAfterUnlinkThrowsError) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 16);
    memory.unlink();
    EXPECT_THROW(SharedMemory::attach(name.str()), mproc::Error);
}

TEST(SharedMemory, MemoryStaysUsableAfterUnlinkWhileHandlesRemain) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 16);
    SharedMemory attached = SharedMemory::attach(name.str());
    memory.unlink();
    memory.data()[5] = std::byte{55};
    EXPECT_EQ(attached.data()[5], std::byte{55});
}

TEST(SharedMemory, UnlinkingTwiceDoesNothing) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 16);
    SharedMemory attached = SharedMemory::attach(name.str());
    memory.unlink();
    EXPECT_NO_THROW(memory.unlink());
    EXPECT_NO_THROW(attached.unlink());
}

TEST(SharedMemory, UnlinkLeavesANameThatWasGivenToOtherMemory) {
    UniqueName name;
    SharedMemory old_memory = SharedMemory::create(name.str(), 16);
    old_memory.unlink();
    SharedMemory new_memory = SharedMemory::create(name.str(), 16);
    old_memory.unlink();
    EXPECT_TRUE(std::filesystem::exists(name.file()));
    EXPECT_NO_THROW(SharedMemory::attach(name.str()));
}

TEST(SharedMemory, NameWithOrWithoutALeadingSlashNamesTheSameMemory) {
    UniqueName name;
    SharedMemory created = SharedMemory::create("/" + name.str(), 16);
    EXPECT_EQ(created.name(), name.str());
    created.data()[0] = std::byte{1};
    SharedMemory attached = SharedMemory::attach(name.str());
    EXPECT_EQ(attached.data()[0], std::byte{1});
    EXPECT_TRUE(std::filesystem::exists(name.file()));
}

TEST(SharedMemory, NameWithASlashInsideThrowsErrorSayingSo) {
    const std::string message = message_of([] { SharedMemory::create("mproc-test/inner", 16); });
    EXPECT_NE(message.find("'/'"), std::string::npos) << message;
    EXPECT_THROW(SharedMemory::attach("/dir/name"), mproc::Error);
}

TEST(SharedMemory, EmptyOrDotNamesThrowError) {
    EXPECT_THROW(SharedMemory::create("", 16), mproc::Error);
    EXPECT_THROW(SharedMemory::create("/", 16), mproc::Error);
    EXPECT_THROW(SharedMemory::create("..", 16), mproc::Error);
    EXPECT_THROW(SharedMemory::create(std::string(300, 'n'), 16), mproc::Error);
}

TEST(SharedMemory, CopiesShareOneMapping) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 16);
    SharedMemory copy = memory;
    EXPECT_EQ(copy.data(), memory.data());
    EXPECT_EQ(copy.name(), memory.name());
}

TEST(SharedMemory, DefaultConstructedHandleIsEmptyAndCannotUnlink) {
    SharedMemory memory;
    EXPECT_EQ(memory.data(), nullptr);
    EXPECT_EQ(memory.size(), 0u);
    EXPECT_TRUE(memory.name().empty());
    EXPECT_THROW(memory.unlink(), mproc::StateError);
}

TEST(SharedMemory, SaveAndLoadGiveAHandleToTheSameMemoryUnderTheSameName) {
    UniqueName name;
    SharedMemory sent = SharedMemory::create(name.str(), 64);
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    ASSERT_EQ(fds.size(), 1u);
    SharedMemory received;
    decode(bytes, fds, received);
    EXPECT_EQ(received.name(), name.str());
    ASSERT_EQ(received.size(), 64u);
    received.data()[63] = std::byte{63};
    EXPECT_EQ(sent.data()[63], std::byte{63});
}

TEST(SharedMemory, HandleTravelsEvenAfterItsNameWasUnlinked) {
    UniqueName name;
    SharedMemory sent = SharedMemory::create(name.str(), 64);
    sent.unlink();
    FdOutbox outbox;
    std::string bytes = encode(sent, outbox);
    std::vector<UniqueFd> fds = outbox.take();
    SharedMemory received;
    decode(bytes, fds, received);
    received.data()[0] = std::byte{1};
    EXPECT_EQ(sent.data()[0], std::byte{1});
}

TEST(SharedMemory, SavingOutsideAnOutboxThrowsSerializationError) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 16);
    std::stringstream stream;
    cereal::BinaryOutputArchive archive(stream);
    EXPECT_THROW(archive(memory), mproc::SerializationError);
}

TEST(SharedMemory, PoolTaskGivenTheMemoryWritesBytesTheCallerReads) {
    UniqueName name;
    SharedMemory memory = SharedMemory::create(name.str(), 1000);
    mproc::Pool pool(1);
    pool.apply(fill_shared_memory, memory, 0x5a);
    EXPECT_TRUE(std::all_of(memory.span().begin(), memory.span().end(),
                            [](std::byte b) { return b == std::byte{0x5a}; }));
    EXPECT_EQ(pool.apply(name_of_shared_memory, memory), name.str());
}

TEST(SharedMemory, MappingAndDescriptorGoWithTheLastHandleButTheNameStays) {
    UniqueName name;
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    {
        SharedMemory memory = SharedMemory::create(name.str(), 16);
        SharedMemory attached = SharedMemory::attach(name.str());
        SharedMemory copy = attached;
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
    EXPECT_TRUE(std::filesystem::exists(name.file()));
}

}  // namespace
