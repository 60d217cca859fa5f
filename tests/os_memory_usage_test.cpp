// resident_bytes(): the figure a worker checks against PoolOptions::max_memory_per_child.

#include "os/memory_usage.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>

#include "process_helpers.hpp"

namespace {

using mproc::detail::resident_bytes;

constexpr std::size_t kMiB = std::size_t{1} << 20;

// Anonymous memory of its own mapping, so that no allocator's cache can hide or lend pages.
class Mapping {
  public:
    explicit Mapping(std::size_t bytes) : bytes_(bytes) {
        void* address =
            ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        address_ = address == MAP_FAILED ? nullptr : static_cast<char*>(address);
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() {
        if (address_ != nullptr) ::munmap(address_, bytes_);
    }
    char* data() const { return address_; }
    void touch() const { std::memset(address_, 1, bytes_); }

  private:
    std::size_t bytes_;
    char* address_ = nullptr;
};

// The child's answer: 0 when its figure followed its own touches, 1 when it did not.
int child_sees_its_own_growth(std::size_t bytes) {
    const std::size_t before = resident_bytes();
    Mapping memory(bytes);
    if (memory.data() == nullptr) return 2;
    memory.touch();
    const std::size_t after = resident_bytes();
    return after >= before + bytes - bytes / 8 ? 0 : 1;
}

TEST(ResidentBytes, IsPositiveForTheRunningProcess) {
    EXPECT_GT(resident_bytes(), 0u);
}

TEST(ResidentBytes, GrowsByAboutTheBytesTouched) {
    constexpr std::size_t bytes = 64 * kMiB;
    Mapping memory(bytes);
    ASSERT_NE(memory.data(), nullptr);
    const std::size_t before = resident_bytes();
    memory.touch();
    const std::size_t after = resident_bytes();
    // Other threads of the test program (sanitizer ones) may allocate a little meanwhile.
    EXPECT_GE(after, before + bytes - bytes / 8);
    EXPECT_LE(after, before + bytes + bytes / 8);
}

TEST(ResidentBytes, ShrinksWhenTouchedMemoryIsReturned) {
    constexpr std::size_t bytes = 64 * kMiB;
    std::size_t touched = 0;
    {
        Mapping memory(bytes);
        ASSERT_NE(memory.data(), nullptr);
        memory.touch();
        touched = resident_bytes();
    }
    EXPECT_LE(resident_bytes(), touched - bytes + bytes / 8);
}

TEST(ResidentBytes, ForkedChildReadsItsOwnFigureNotItsParents) {
    // The parent's descriptor is open before the fork: the child must not read through it.
    ASSERT_GT(resident_bytes(), 0u);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) ::_exit(child_sees_its_own_growth(64 * kMiB));
    int status = 0;
    bool ended = false;
    for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(std::chrono::milliseconds(10))) {
        if (::waitpid(child, &status, WNOHANG) == child) {
            ended = true;
            break;
        }
    }
    if (!ended) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
    }
    ASSERT_TRUE(ended) << "the child did not end within 30 s";
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the child's figure did not follow its own touches";
}

// The descriptor number resident_bytes() reads through in this thread, or -1.
int statm_descriptor() {
    const std::string statm = "/proc/" + std::to_string(::getpid()) + "/statm";
    for (int fd = 0; fd < 1024; ++fd) {
        char target[256];
        const std::string link = "/proc/self/fd/" + std::to_string(fd);
        const ssize_t length = ::readlink(link.c_str(), target, sizeof target - 1);
        if (length > 0 && std::string(target, static_cast<std::size_t>(length)) == statm) {
            return fd;
        }
    }
    return -1;
}

TEST(ResidentBytes, ForkedChildKeepsItsOwnDescriptorThatReusedTheInheritedNumber) {
    ASSERT_GT(resident_bytes(), 0u);
    const int inherited = statm_descriptor();
    ASSERT_GE(inherited, 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // A child that closes what it inherited, as a daemon might, and whose own pipe then
        // takes the number of the inherited statm descriptor.
        int pipe_ends[2];
        if (::pipe(pipe_ends) != 0) ::_exit(2);
        if (::dup2(pipe_ends[1], inherited) != inherited) ::_exit(2);
        if (resident_bytes() == 0) ::_exit(3);
        const char byte = 'x';
        ::_exit(::write(inherited, &byte, 1) == 1 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: resident_bytes closed the child's own pipe";
}

TEST(ResidentBytes, ReadingOftenOpensOneDescriptorOnly) {
    resident_bytes();
    const std::size_t open = mproc::testing::open_descriptor_count();
    for (int i = 0; i < 1000; ++i) resident_bytes();
    EXPECT_EQ(mproc::testing::open_descriptor_count(), open);
}

}  // namespace
