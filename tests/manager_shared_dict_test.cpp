// A manager's dict in shared memory, as local processes use it: exact contents under writers
// in several processes, whole entries after writers killed in the middle of a write, growth,
// large values, bounded memory under endless overwriting, updates that run in the caller,
// forks, memory spoilt by a stray write, a killed server, and nothing left behind.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "manager/shared_dict.hpp"
#include "mproc/manager.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::DictProxy;
using mproc::Manager;
using mproc::Process;

void write_range(DictProxy<int, int> d, int first, int last, int tag) {
    for (int k = first; k < last; ++k) d.set(k, tag * 1'000'000 + k);
}

void join_all(std::vector<Process>& processes) {
    for (auto& p : processes) p.start();
    for (auto& p : processes) {
        ASSERT_TRUE(p.join(120s));
        EXPECT_EQ(p.exitcode(), 0);
    }
}

// The allocated bytes of this process's mapped dict memory: the memfd the server sent, found
// by its name among this process's descriptors.
std::optional<std::uint64_t> dict_memory_bytes() {
    std::optional<std::uint64_t> total;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code error;
        const auto target = std::filesystem::read_symlink(entry.path(), error).string();
        if (error || !target.starts_with("/memfd:mproc-manager-dict")) continue;
        struct stat status {};
        if (::stat(entry.path().c_str(), &status) != 0) continue;
        total = total.value_or(0) + static_cast<std::uint64_t>(status.st_blocks) * 512;
    }
    return total;
}

std::size_t mapped_dict_count() {
    std::ifstream maps("/proc/self/maps");
    std::size_t count = 0;
    for (std::string line; std::getline(maps, line);) {
        if (line.find("mproc-manager-dict") != std::string::npos) ++count;
    }
    return count;
}

// ---------------------------------------------------------------------------------------------
// Several writers

TEST(ManagerSharedDict, WritersOfDisjointKeysInSeveralProcessesGiveExactContents) {
    Manager manager;
    auto d = manager.dict<int, int>();
    std::vector<Process> writers;
    for (int w = 0; w < 4; ++w) writers.emplace_back(write_range, d, w * 2000, (w + 1) * 2000, w);
    join_all(writers);
    ASSERT_EQ(d.size(), 8000u);
    for (int k = 0; k < 8000; ++k) ASSERT_EQ(d.at(k), (k / 2000) * 1'000'000 + k) << k;
}

TEST(ManagerSharedDict, WritersOfTheSameKeysLeaveOneWholeValuePerKey) {
    Manager manager;
    auto d = manager.dict<int, int>();
    std::vector<Process> writers;
    for (int w = 1; w <= 4; ++w) writers.emplace_back(write_range, d, 0, 3000, w);
    join_all(writers);
    const auto items = d.items();
    ASSERT_EQ(items.size(), 3000u);
    EXPECT_EQ(d.size(), 3000u);
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto [key, value] = items[i];
        ASSERT_EQ(key, static_cast<int>(i));  // the first writer's order
        ASSERT_EQ(value % 1'000'000, key);
        ASSERT_GE(value / 1'000'000, 1);
        ASSERT_LE(value / 1'000'000, 4);
    }
}

// ---------------------------------------------------------------------------------------------
// Crash safety

// A value that says which key it belongs to: every byte is the key's letter, and its length
// modulo 1024 is the key modulo 8.
std::string value_for(int key, int round) {
    return std::string(1024 * (1 + round % 48) + key % 8, static_cast<char>('a' + key % 26));
}

bool whole(int key, const std::string& value) {
    return !value.empty() && value.size() % 1024 == static_cast<std::size_t>(key % 8) &&
           value.find_first_not_of(static_cast<char>('a' + key % 26)) == std::string::npos;
}

void write_forever(DictProxy<int, std::string> d, int seed) {
    std::mt19937 random(static_cast<unsigned>(seed));
    for (int round = 0;; ++round) {
        const int key = static_cast<int>(random() % 200);
        if (round % 5 == 4) {
            d.erase(key);
        } else {
            d.set(key, value_for(key, round));
        }
        if (round % 97 == 0) d.clear();
    }
}

TEST(ManagerSharedDict, AWriterKilledInTheMiddleOfWritesLeavesOnlyWholeEntries) {
    Manager manager;
    auto d = manager.dict<int, std::string>();
    std::mt19937 random(11);
    for (int round = 0; round < 12; ++round) {
        Process writer(write_forever, d, round);
        writer.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(100 + random() % 150));
        writer.kill();
        writer.join();

        const auto items = d.items();
        const auto keys = d.keys();
        EXPECT_EQ(d.size(), keys.size());
        EXPECT_EQ(items.size(), keys.size());
        std::set<int> distinct;
        for (const auto& [key, value] : items) {
            EXPECT_TRUE(whole(key, value))
                << "key " << key << " holds " << value.size() << " bytes";
            EXPECT_TRUE(distinct.insert(key).second) << "key " << key << " twice";
            ASSERT_TRUE(d.contains(key));
            EXPECT_TRUE(whole(key, d.at(key)));
        }
        d.set(1000, "still usable");
        EXPECT_EQ(d.at(1000), "still usable");
        EXPECT_TRUE(d.erase(1000));
    }
}

std::vector<std::byte> encoded(const std::string& text) {
    std::vector<std::byte> bytes;
    mproc::detail::encode(bytes, text);
    return bytes;
}

std::string decoded(std::span<const std::byte> bytes) {
    std::string text;
    mproc::detail::decode(bytes, text);
    return text;
}

TEST(ManagerSharedDict, AProcessKilledWhileItHoldsTheLockHandsOnAWholeDict) {
    using mproc::detail::SharedDict;
    auto dict = SharedDict::create(7);
    {
        SharedDict::Access access(*dict);
        access.set(encoded("kept"), encoded("before"));
    }
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        SharedDict::Access access(*dict);
        access.set(encoded("written"), encoded("by the child"));
        ::kill(::getpid(), SIGKILL);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));

    SharedDict::Access access(*dict);
    EXPECT_EQ(access.size(), 2u);
    ASSERT_TRUE(access.find(encoded("kept")).has_value());
    EXPECT_EQ(decoded(*access.find(encoded("kept"))), "before");
    ASSERT_TRUE(access.find(encoded("written")).has_value());
    EXPECT_EQ(decoded(*access.find(encoded("written"))), "by the child");
    access.set(encoded("after"), encoded("the repair"));
    EXPECT_EQ(access.size(), 3u);
}

// The child's wait status, or nullopt (the child killed) when it has not ended within a minute.
std::optional<int> wait_for_child(pid_t child) {
    for (int waited = 0; waited < 600; ++waited) {
        int status = 0;
        if (::waitpid(child, &status, WNOHANG) == child) return status;
        std::this_thread::sleep_for(100ms);
    }
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    return std::nullopt;
}

TEST(ManagerSharedDict, AChildForkedWhileAnotherThreadHoldsTheLockGetsItOnceThatThreadLetsGo) {
    using mproc::detail::SharedDict;
    auto dict = SharedDict::create(7);
    std::promise<void> locked;
    std::promise<void> release;
    std::thread holder([&] {
        SharedDict::Access access(*dict);
        access.set(encoded("by"), encoded("the holder"));
        locked.set_value();
        release.get_future().wait();
    });
    locked.get_future().wait();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        SharedDict::Access access(*dict);
        const auto value = access.find(encoded("by"));
        access.set(encoded("child"), encoded("was here"));
        ::_exit(value && decoded(*value) == "the holder" ? 0 : 1);
    }
    release.set_value();
    holder.join();
    const auto status = wait_for_child(child);
    ASSERT_TRUE(status.has_value()) << "the child never got the lock";
    ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    SharedDict::Access access(*dict);
    ASSERT_TRUE(access.find(encoded("child")).has_value());
    EXPECT_EQ(decoded(*access.find(encoded("child"))), "was here");
}

// A dict's memory spoilt by a process that wrote into it other than through the table (a bug,
// a stray pointer): every operation in a child must fail with SerializationError rather than
// crash on an offset or length it read, or loop forever.
::testing::AssertionResult every_operation_fails_cleanly(mproc::detail::SharedDict& dict) {
    using mproc::detail::SharedDict;
    const pid_t child = ::fork();
    if (child < 0) return ::testing::AssertionFailure() << "fork failed";
    if (child == 0) {
        int clean = 0;
        const auto attempt = [&](auto operation) {
            try {
                SharedDict::Access access(dict);
                operation(access);
            } catch (const mproc::SerializationError&) {
                ++clean;
            } catch (...) {
            }
        };
        attempt([](SharedDict::Access& a) { (void)a.find(encoded("key 17")); });
        attempt([](SharedDict::Access& a) {
            std::vector<std::byte> out;
            a.append_sequence(out, true, true);
        });
        attempt([](SharedDict::Access& a) { a.set(encoded("key 17"), encoded("again")); });
        ::_exit(clean == 3 ? 0 : 1);
    }
    const auto status = wait_for_child(child);
    if (!status) return ::testing::AssertionFailure() << "an operation never returned";
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << (WIFSIGNALED(*status)
                   ? "the child crashed with signal " + std::to_string(WTERMSIG(*status))
                   : "an operation crashed (under a sanitizer) or did not fail "
                     "with SerializationError");
}

std::shared_ptr<mproc::detail::SharedDict> dict_of_forty_entries() {
    using mproc::detail::SharedDict;
    auto dict = SharedDict::create(7);
    SharedDict::Access access(*dict);
    for (int k = 0; k < 40; ++k) {
        access.set(encoded("key " + std::to_string(k)), encoded("value " + std::to_string(k)));
    }
    return dict;
}

TEST(ManagerSharedDict, ATableOverwrittenWithGarbageFailsEveryOperationWithoutCrashing) {
    auto dict = dict_of_forty_entries();
    struct stat status {};
    ASSERT_EQ(::fstat(dict->fd().get(), &status), 0);
    const auto page = static_cast<off_t>(::sysconf(_SC_PAGESIZE));
    for (const unsigned char garbage : {0x00, 0x5a, 0xff}) {
        const std::vector<unsigned char> bytes(static_cast<std::size_t>(status.st_size - page),
                                               garbage);
        ASSERT_EQ(::pwrite(dict->fd().get(), bytes.data(), bytes.size(), page),
                  static_cast<ssize_t>(bytes.size()));
        EXPECT_TRUE(every_operation_fails_cleanly(*dict)) << "garbage byte " << int{garbage};
    }
}

TEST(ManagerSharedDict, AnEntryWithAnImpossibleLengthFailsEveryOperationWithoutCrashing) {
    auto dict = dict_of_forty_entries();
    struct stat status {};
    ASSERT_EQ(::fstat(dict->fd().get(), &status), 0);
    std::vector<char> file(static_cast<std::size_t>(status.st_size));
    ASSERT_EQ(::pread(dict->fd().get(), file.data(), file.size(), 0),
              static_cast<ssize_t>(file.size()));
    // An entry is its key's and its value's lengths (u64 each), then their bytes; every copy
    // of the key's entry gets an impossible value length.
    const auto key = encoded("key 17");
    const auto* first = reinterpret_cast<const char*>(key.data());
    const std::uint64_t huge = std::uint64_t{1} << 40;
    int spoilt = 0;
    for (auto at = std::search(file.begin(), file.end(), first, first + key.size());
         at != file.end(); at = std::search(at + 1, file.end(), first, first + key.size())) {
        const auto value_length_at = static_cast<off_t>(at - file.begin()) - 8;
        ASSERT_EQ(::pwrite(dict->fd().get(), &huge, sizeof huge, value_length_at),
                  static_cast<ssize_t>(sizeof huge));
        ++spoilt;
    }
    ASSERT_GT(spoilt, 0);
    EXPECT_TRUE(every_operation_fails_cleanly(*dict));
}

// ---------------------------------------------------------------------------------------------
// Growth and memory

TEST(ManagerSharedDict, GrowsThroughManyResizesKeepingEveryEntryInOrder) {
    Manager manager;
    auto d = manager.dict<std::int64_t, std::string>();
    constexpr std::int64_t count = 100'000;
    for (std::int64_t k = 0; k < count; ++k) d.set(k, std::to_string(k * 7));
    ASSERT_EQ(d.size(), static_cast<std::size_t>(count));
    const auto keys = d.keys();
    ASSERT_EQ(keys.size(), static_cast<std::size_t>(count));
    for (std::int64_t k = 0; k < count; ++k) {
        ASSERT_EQ(keys[static_cast<std::size_t>(k)], k);
        ASSERT_EQ(d.at(k), std::to_string(k * 7));
    }
}

std::size_t size_of_big_value(DictProxy<int, std::string> d, int key) {
    return d.at(key).size();
}

TEST(ManagerSharedDict, ValuesOfSeveralMebibytesRoundTripBetweenProcesses) {
    Manager manager;
    auto d = manager.dict<int, std::string>();
    const std::string six(6 << 20, 's');
    std::string mixed(3 << 20, '\0');
    for (std::size_t i = 0; i < mixed.size(); ++i) mixed[i] = static_cast<char>(i * 31);
    d.set(1, six);
    d.set(2, mixed);
    d.set(1, six + "!");
    EXPECT_EQ(d.at(1), six + "!");
    EXPECT_EQ(d.at(2), mixed);
    mproc::Pool pool(1);
    EXPECT_EQ(pool.apply(size_of_big_value, d, 1), six.size() + 1);
}

TEST(ManagerSharedDict, OverwritingTheSameKeysForeverKeepsItsMemoryBounded) {
    Manager manager;
    auto d = manager.dict<int, std::string>();
    const std::string value(64 << 10, 'v');
    for (int k = 0; k < 8; ++k) d.set(k, value);  // 512 KiB live
    std::uint64_t most = 0;
    for (int round = 0; round < 4000; ++round) {  // 250 MiB written in all
        d.set(round % 8, value);
        if (round % 100 == 0) most = std::max(most, dict_memory_bytes().value_or(0));
    }
    ASSERT_TRUE(dict_memory_bytes().has_value());
    EXPECT_LT(most, std::uint64_t{16} << 20);
    EXPECT_EQ(d.size(), 8u);
    d.clear();
    EXPECT_LT(*dict_memory_bytes(), std::uint64_t{1} << 20);
}

TEST(ManagerSharedDict, ADictOfATcpManagerGrowsAndShrinksInTheServerAlike) {
    Manager server(mproc::ManagerOptions{.address = "127.0.0.1:0", .authkey = "k"});
    Manager client = Manager::connect(server.address(), "k");
    auto d = client.dict<int, std::string>("shared");
    for (int k = 0; k < 3000; ++k) d.set(k, std::to_string(k));
    for (int k = 0; k < 3000; k += 2) EXPECT_TRUE(d.erase(k));
    for (int k = 1; k < 3000; k += 2) d.set(k, std::to_string(-k));  // keeps each key's place
    const std::string big(3 << 20, 'b');
    d.set(5000, big);
    const auto items = server.dict<int, std::string>("shared").items();
    ASSERT_EQ(items.size(), 1501u);
    for (std::size_t i = 0; i + 1 < items.size(); ++i) {
        ASSERT_EQ(items[i].first, static_cast<int>(2 * i + 1));
        ASSERT_EQ(items[i].second, std::to_string(-items[i].first));
    }
    EXPECT_EQ(items.back().second, big);
    d.clear();
    EXPECT_EQ(d.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Updates

int callers_pid(std::optional<int>) {
    return static_cast<int>(::getpid());
}

int use_own_dict(std::optional<int> current, DictProxy<std::string, int> d) {
    return current.value_or(0) + d.at("other");
}

TEST(ManagerSharedDict, AnUpdateOfALocalDictRunsInTheCallingProcess) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    EXPECT_EQ(d.update("pid", callers_pid), static_cast<int>(::getpid()));
    EXPECT_NE(d.at("pid"), manager.pid());
}

TEST(ManagerSharedDict, AnUpdateThatUsesItsOwnDictFailsInsteadOfWaitingForItself) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("other", 1);
    EXPECT_THROW(d.update("n", use_own_dict, d), mproc::RemoteError);
    EXPECT_FALSE(d.contains("n"));
    d.set("n", 2);
    EXPECT_EQ(d.at("n"), 2);
}

// ---------------------------------------------------------------------------------------------
// The server's end

TEST(ManagerSharedDict, AProxyOfAKilledServerFailsOnEveryCallAndItsManagerEndsQuietly) {
    DictProxy<int, int> d;
    {
        Manager manager;
        d = manager.dict<int, int>();
        d.set(1, 1);
        ASSERT_EQ(::kill(manager.pid(), SIGKILL), 0);
        // Until it is a zombie: its descriptors are closed by then, not only its locks freed.
        siginfo_t info{};
        ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(manager.pid()), &info, WEXITED | WNOWAIT), 0);
        EXPECT_THROW(d.get(1), mproc::Error);  // the first to see its robust mutex abandoned
        EXPECT_THROW(d.set(2, 2), mproc::Error);
        EXPECT_THROW(d.size(), mproc::Error);
    }  // ~Manager tells a server that is gone to stop: this process must live on
    EXPECT_THROW(d.get(1), mproc::Error);
}

// ---------------------------------------------------------------------------------------------
// Nothing left behind

void touch_dicts(std::vector<DictProxy<int, int>> dicts) {
    for (auto& d : dicts) d.set(1, 1);
}

TEST(ManagerSharedDict, NoDescriptorOrMappingOutlivesTheManagerAndItsProxies) {
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    const std::size_t mappings = mapped_dict_count();
    {
        Manager manager;
        std::vector<DictProxy<int, int>> dicts;
        for (int i = 0; i < 20; ++i) dicts.push_back(manager.dict<int, int>());
        for (auto& d : dicts) {
            d.set(2, 2);
            for (int k = 0; k < 1000; ++k) d.set(k + 10, k);  // grows, remaps
        }
        Process child(touch_dicts, dicts);
        child.start();
        ASSERT_TRUE(child.join(60s));
        EXPECT_EQ(child.exitcode(), 0);
        EXPECT_EQ(dicts[7].at(1), 1);
        EXPECT_GT(mapped_dict_count(), mappings);
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
    EXPECT_EQ(mapped_dict_count(), mappings);
}

}  // namespace
