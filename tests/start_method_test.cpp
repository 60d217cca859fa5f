// Specifies include/mproc/start_method.hpp: the program-wide default start method.

#include "mproc/start_method.hpp"

#include <gtest/gtest.h>

namespace {

using mproc::StartMethod;

// Puts fork back when a test ends, even when an assertion ended it early, so that the tests do
// not depend on their order.
struct RestoreFork {
    ~RestoreFork() { mproc::set_start_method(StartMethod::fork); }
};

TEST(StartMethod, DefaultIsFork) {
    EXPECT_EQ(mproc::get_start_method(), StartMethod::fork);
}

TEST(StartMethod, SetStartMethodChangesGetStartMethod) {
    RestoreFork restore;
    mproc::set_start_method(StartMethod::spawn);
    EXPECT_EQ(mproc::get_start_method(), StartMethod::spawn);
    mproc::set_start_method(StartMethod::forkserver);
    EXPECT_EQ(mproc::get_start_method(), StartMethod::forkserver);
    mproc::set_start_method(StartMethod::fork);
    EXPECT_EQ(mproc::get_start_method(), StartMethod::fork);
}

}  // namespace

// --- What each start method gives -----------------------------------------------------------

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "library_task.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "process_helpers.hpp"
#include "worker/spawn.hpp"

namespace {

using namespace std::chrono_literals;

int global_set_before_the_pool = 0;
int read_global(int) {
    return global_set_before_the_pool;
}
pid_t worker_parent(int) {
    return ::getppid();
}
void write_at(mproc::SharedArray<int> out, int index, int value) {
    out[static_cast<std::size_t>(index)] = value;
}

mproc::PoolOptions by(StartMethod method, std::size_t processes = 2) {
    return {.processes = processes, .start_method = method};
}

TEST(StartMethods, ForkWorkersSeeTheStateThePoolWasMadeIn) {
    global_set_before_the_pool = 42;
    mproc::Pool pool(by(StartMethod::fork));
    EXPECT_EQ(pool.apply(read_global, 0), 42);
    global_set_before_the_pool = 0;
}

TEST(StartMethods, SpawnedWorkersAreAFreshRunOfTheProgram) {
    global_set_before_the_pool = 42;
    mproc::Pool pool(by(StartMethod::spawn));
    EXPECT_EQ(pool.apply(read_global, 0), 0);
    global_set_before_the_pool = 0;
}

TEST(StartMethods, ForkserverWorkersAreForksOfACleanServer) {
    global_set_before_the_pool = 42;
    mproc::Pool pool(by(StartMethod::forkserver));
    EXPECT_EQ(pool.apply(read_global, 0), 0);
    const auto parents = pool.map(worker_parent, std::vector<int>{0, 1}, 1);
    EXPECT_NE(parents[0], ::getpid());  // their parent is the server, not this process
    global_set_before_the_pool = 0;
}

TEST(StartMethods, TheProgramWideDefaultIsUsedWhenAPoolNamesNone) {
    RestoreFork restore;
    mproc::set_start_method(StartMethod::spawn);
    global_set_before_the_pool = 42;
    mproc::Pool pool(1);
    EXPECT_EQ(pool.apply(read_global, 0), 0);
    global_set_before_the_pool = 0;
}

TEST(StartMethods, SpawnedWorkersFindFunctionsInSharedLibraries) {
    mproc::Pool pool(by(StartMethod::spawn));
    EXPECT_EQ(pool.map(triple_in_library, std::vector<int>{1, 2, 3}), (std::vector<int>{3, 6, 9}));
}

TEST(StartMethods, ASpawnedProcessRunsASendableCallWithItsArguments) {
    mproc::SharedArray<int> out(1);
    mproc::Process process(mproc::ProcessOptions{.start_method = StartMethod::spawn}, write_at, out,
                           0, 7);
    process.start();
    ASSERT_TRUE(process.join(60s));
    EXPECT_EQ(process.exitcode(), 0);
    EXPECT_EQ(out[0], 7);
}

TEST(StartMethods, ASpawnedProcessThatThrowsExitsWithOne) {
    mproc::Process process(
        mproc::ProcessOptions{.start_method = StartMethod::spawn},
        [](int) { throw std::runtime_error("spawned failure"); }, 1);
    process.start();
    ASSERT_TRUE(process.join(60s));
    EXPECT_EQ(process.exitcode(), 1);
}

TEST(StartMethods, ACapturingCallableCannotBeSpawned) {
    int captured = 1;
    mproc::Process process(mproc::ProcessOptions{.start_method = StartMethod::spawn},
                           [captured] { (void)captured; });
    EXPECT_THROW(process.start(), mproc::StateError);
}

TEST(StartMethods, ABootstrapFromAnotherBuildIsRefused) {
    mproc::detail::FrameWriter writer(mproc::detail::FrameKind::bootstrap,
                                      static_cast<std::uint64_t>(mproc::detail::Role::worker));
    writer.begin_item();
    mproc::detail::encode(writer.buffer(), std::string("gnu:another-build"));
    writer.end_item();
    try {
        mproc::detail::check_bootstrap(writer.finish(), mproc::detail::Role::worker);
        FAIL() << "expected an error";
    } catch (const mproc::Error& error) {
        EXPECT_NE(std::string(error.what()).find("another build"), std::string::npos)
            << error.what();
    }
}

TEST(StartMethods, ABootstrapOfTheSameBuildIsAccepted) {
    auto frame = mproc::detail::bootstrap_frame(mproc::detail::Role::process, {}, {});
    EXPECT_NO_THROW(mproc::detail::check_bootstrap(std::move(frame), mproc::detail::Role::process));
}

// Threads that hold a mutex and allocate all the time while pools come and go: a worker forked
// while another thread held a lock must not deadlock on it. Under fork the launcher is forked
// by the thread that makes the pool and the workers run only their tasks; under forkserver the
// workers descend from a fresh run of the program and inherit nothing at all.
int allocate_in_task(int x) {
    std::vector<std::vector<int>> blocks;
    for (int i = 0; i < 100; ++i) blocks.emplace_back(static_cast<std::size_t>(x + i), i);
    return static_cast<int>(blocks.size());
}

class ThreadedProgram : public testing::TestWithParam<StartMethod> {};

TEST_P(ThreadedProgram, PoolsComeAndGoWhileOtherThreadsHoldLocksAndAllocate) {
    std::atomic<bool> stop{false};
    std::mutex busy;
    std::vector<std::thread> hammers;
    for (int t = 0; t < 3; ++t) {
        hammers.emplace_back([&] {
            while (!stop) {
                std::lock_guard lock(busy);
                std::vector<std::string> garbage(64, std::string(100, 'x'));
            }
        });
    }
    for (int round = 0; round < 10; ++round) {
        mproc::Pool pool(by(GetParam()));
        ASSERT_EQ(pool.map(allocate_in_task, std::vector<int>{1, 2, 3, 4}),
                  (std::vector<int>{100, 100, 100, 100}));
    }
    stop = true;
    for (auto& hammer : hammers) hammer.join();
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ThreadedProgram,
                         testing::Values(StartMethod::fork, StartMethod::forkserver),
                         mproc::testing::StartMethodName());

}  // namespace
