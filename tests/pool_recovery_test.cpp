// What a worker's death, or its launcher's, costs a pool: the task it was running, and nothing
// else (results already computed are kept, tasks are not run again behind the user's back),
// unless the user asks for retries; and a pool whose launcher died fails at once, never hangs.

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/shared_memory.hpp"
#include "os/memory_usage.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;

// Ends the test program if a test has not finished in time: a pool that hangs must fail the
// suite, not stall it.
class Watchdog {
  public:
    explicit Watchdog(std::chrono::seconds limit)
        : thread_([this, limit] {
              const auto until = std::chrono::steady_clock::now() + limit;
              while (!done_.load() && std::chrono::steady_clock::now() < until) {
                  std::this_thread::sleep_for(10ms);
              }
              if (!done_.load()) {
                  std::fprintf(stderr, "the test hung for %lld s\n",
                               static_cast<long long>(limit.count()));
                  std::_Exit(1);
              }
          }) {}
    ~Watchdog() {
        done_.store(true);
        thread_.join();
    }

  private:
    std::atomic<bool> done_{false};
    std::thread thread_;
};

int square(int x) {
    return x * x;
}

// How many times each task ran, counted by the tasks in a named segment that every worker
// finds through the environment, whatever its start method (a spawned worker has none of the
// test's variables): the tasks' arguments stay numbers, which travel in the block layout.
constexpr const char* runs_variable = "POOL_RECOVERY_TEST_RUN_COUNTS";

int* run_counts() {
    static mproc::SharedMemory memory = mproc::SharedMemory::attach(std::getenv(runs_variable));
    return reinterpret_cast<int*>(memory.data());
}
int count_run(int x) {
    return __atomic_add_fetch(&run_counts()[x], 1, __ATOMIC_SEQ_CST);
}

// Counts its run; its first run kills its worker when x is `die_at`. Long enough that a map's
// tasks spread over both workers.
int count_and_die_once_at(int x, int die_at) {
    if (count_run(x) == 1 && x == die_at) ::raise(SIGKILL);
    const auto until = std::chrono::steady_clock::now() + 20us;
    while (std::chrono::steady_clock::now() < until) {
    }
    return x;
}

// The same, with a result that is not a number.
std::string count_and_die_once_at_as_text(int x, int die_at) {
    return std::to_string(count_and_die_once_at(x, die_at));
}

// Counts its run; task `sleep_at` sleeps for a minute.
int count_and_sleep_at(int x, int sleep_at) {
    count_run(x);
    if (x == sleep_at) std::this_thread::sleep_for(60s);
    return x;
}

// Counts its run; keeps `mib` MiB, touched, for the rest of its worker's life: a leak.
pid_t count_and_leak_mib(int x, int mib) {
    count_run(x);
    static std::vector<std::vector<char>> kept;
    kept.emplace_back(static_cast<std::size_t>(mib) << 20, '\1');
    return ::getpid();
}

// Kills its worker on each of its first `deaths` runs of task 7.
int die_at_seven(int x, int deaths) {
    if (x == 7 && count_run(x) <= deaths) ::raise(SIGKILL);
    return x;
}

pid_t worker_pid(int) {
    return ::getpid();
}

std::size_t resident(int) {
    return mproc::detail::resident_bytes();
}

// Keeps `mib` MiB, touched, for the rest of the worker's life: a leak.
pid_t leak_mib(int mib) {
    static std::vector<std::vector<char>> kept;
    kept.emplace_back(static_cast<std::size_t>(mib) << 20, '\1');
    return ::getpid();
}

class PoolRecoveryTest : public mproc::testing::StartMethodTest {
  protected:
    void SetUp() override {
        const std::string name = "mproc-test-runs-" + std::to_string(::getpid());
        runs_ = mproc::SharedMemory::create(name, 4000 * sizeof(int));
        ::setenv(runs_variable, name.c_str(), 1);
    }
    void TearDown() override {
        runs_.unlink();
        ::unsetenv(runs_variable);
    }
    int runs(int x) const { return reinterpret_cast<const int*>(runs_.data())[x]; }

    // The tasks among the first `tasks` that ran other than once.
    std::vector<int> not_run_once(int tasks) const {
        std::vector<int> odd;
        for (int x = 0; x < tasks; ++x) {
            if (runs(x) != 1) odd.push_back(x);
        }
        return odd;
    }
    // The pairs (x, die_at) of a map's inputs.
    static std::vector<std::pair<int, int>> inputs(int tasks, int die_at) {
        std::vector<std::pair<int, int>> pairs;
        for (int x = 0; x < tasks; ++x) pairs.emplace_back(x, die_at);
        return pairs;
    }

  private:
    mproc::SharedMemory runs_;
};

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolRecoveryTest,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

// In a map of numbers, the task that killed its worker fails and every other task ran exactly
// once, however many the worker had run before it died and whether or not it had sent their
// results yet (they were in shared memory). pool_test.cpp holds a map of chunksize 1 to it.
TEST_P(PoolRecoveryTest, AWorkerDyingInAMapOfTheDefaultChunksizeCostsOnlyTheTaskItWasRunning) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2));
    // 3000 tasks make chunks of 375: task 1600 is in the middle of one.
    EXPECT_THROW(pool.starmap(count_and_die_once_at, inputs(3000, 1600)), mproc::WorkerLost);
    EXPECT_EQ(not_run_once(3000), std::vector<int>{});
}

TEST_P(PoolRecoveryTest, AWorkerDyingInAnImapOfChunksizeOneCostsOnlyTheTaskItWasRunning) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2));
    auto tasks =
        std::views::iota(0, 3000) | std::views::transform([](int x) { return std::pair(x, 1500); });
    // imap takes one argument: a pair, whose elements travel as a record.
    auto results = pool.imap(
        [](std::pair<int, int> task) { return count_and_die_once_at(task.first, task.second); },
        tasks);
    int lost = 0;
    int index = 0;
    for (auto it = results.begin(); it != results.end(); ++it, ++index) {
        try {
            EXPECT_EQ(*it, index);
        } catch (const mproc::WorkerLost&) {
            EXPECT_EQ(index, 1500);
            ++lost;
        }
    }
    EXPECT_EQ(lost, 1);
    EXPECT_EQ(not_run_once(3000), std::vector<int>{});
}

TEST_P(PoolRecoveryTest, TasksOfOtherValuesThatDieWithTheirWorkerRunAgainButNotTheKiller) {
    // Results that are not numbers live in the worker until its chunk ends: the tasks of that
    // chunk that had finished run again. The task that killed it does not, without retries.
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2));
    EXPECT_THROW(pool.starmap(count_and_die_once_at_as_text, inputs(40, 25), 10),
                 mproc::WorkerLost);
    EXPECT_EQ(runs(25), 1) << "the task that killed its worker ran again";
    for (int x = 0; x < 40; ++x) EXPECT_GE(runs(x), 1) << "task " << x << " never ran";
    for (int x = 20; x < 25; ++x) EXPECT_EQ(runs(x), 2) << "task " << x;
}

TEST_P(PoolRecoveryTest, WithRetriesATaskWhoseWorkerDiedRunsAgainAndSucceeds) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2, {.retries = 1}));
    EXPECT_EQ(pool.apply(die_at_seven, 7, 1), 7);
    EXPECT_EQ(runs(7), 2);
}

TEST_P(PoolRecoveryTest, WithRetriesATaskThatKeepsKillingItsWorkerFailsSayingHowOftenItRan) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2, {.retries = 2}));
    try {
        pool.apply(die_at_seven, 7, 100);
        FAIL() << "expected WorkerLost";
    } catch (const mproc::WorkerLost& lost) {
        EXPECT_EQ(lost.runs(), 3u);
        EXPECT_NE(std::string(lost.what()).find("ran 3 times"), std::string::npos) << lost.what();
    }
    EXPECT_EQ(runs(7), 3);
    EXPECT_EQ(pool.apply(square, 5), 25);
}

TEST_P(PoolRecoveryTest, WithRetriesEveryTaskOfAMapSucceedsWhateverItsChunksize) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2, {.retries = 1}));
    int expected_runs = 0;
    for (const std::size_t chunksize : {std::size_t{1}, std::size_t{0}, std::size_t{5}}) {
        // Each map kills a worker once more: task 7 dies on its runs up to `deaths`.
        const int deaths = expected_runs + 1;
        std::vector<std::pair<int, int>> pairs;
        for (int x = 0; x < 300; ++x) pairs.emplace_back(x, deaths);
        const auto values = pool.starmap(die_at_seven, pairs, chunksize);
        ASSERT_EQ(values.size(), 300u);
        for (int x = 0; x < 300; ++x) EXPECT_EQ(values[static_cast<std::size_t>(x)], x);
        expected_runs += 2;
        EXPECT_EQ(runs(7), expected_runs) << "chunksize " << chunksize;
    }
}

TEST_P(PoolRecoveryTest, WithoutRetriesATaskWhoseWorkerDiedFailsAfterOneRun) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2));
    try {
        pool.apply(die_at_seven, 7, 1);
        FAIL() << "expected WorkerLost";
    } catch (const mproc::WorkerLost& lost) {
        EXPECT_EQ(lost.runs(), 1u);
    }
    EXPECT_EQ(runs(7), 1);
}

TEST_P(PoolRecoveryTest, ATaskPastItsTimeoutIsNotRetried) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2, {.task_timeout = 300ms, .retries = 3}));
    // Chunksize 1: the tasks are claimed, and the slow one is not the batch's first.
    EXPECT_THROW(pool.starmap(count_and_sleep_at, inputs(100, 50), 1), mproc::TimeoutError);
    EXPECT_EQ(not_run_once(100), std::vector<int>{});
    EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST_P(PoolRecoveryTest, AfterItsLauncherIsKilledEverySubmissionFailsAtOnce) {
    Watchdog watchdog(120s);
    mproc::Pool pool(options(2));
    EXPECT_EQ(pool.apply(square, 3), 9);
    const std::vector<pid_t> children = mproc::testing::child_pids();
    ASSERT_EQ(children.size(), 1u) << "the pool's launcher";
    auto running = pool.apply_async(
        [](int) {
            std::this_thread::sleep_for(60s);
            return 0;
        },
        0);
    ASSERT_EQ(::kill(children.front(), SIGKILL), 0);
    EXPECT_THROW(running.get(30s), mproc::Error);
    // Later submissions fail, each within the bound, none hangs.
    auto later = pool.apply_async(square, 4);
    ASSERT_TRUE(later.wait(30s));
    try {
        later.get();
        FAIL() << "expected the launcher's error";
    } catch (const mproc::Error& error) {
        EXPECT_NE(std::string(error.what()).find("launcher"), std::string::npos) << error.what();
    }
    auto mapped = pool.map_async(square, std::views::iota(0, 100));
    ASSERT_TRUE(mapped.wait(30s));
    EXPECT_THROW(mapped.get(), mproc::Error);
    auto streamed = pool.imap(square, std::views::iota(0, 100));
    EXPECT_THROW(*streamed.begin(), mproc::Error);
    EXPECT_THROW(pool.map(square, std::vector<int>{1, 2}, 1), mproc::Error);
    pool.close();
    pool.join();
    EXPECT_EQ(mproc::testing::child_pids(), std::vector<pid_t>{}) << "a zombie was left";
}

TEST_P(PoolRecoveryTest, AWorkerOverMaxMemoryPerChildIsReplacedBeforeItsNextTask) {
    Watchdog watchdog(120s);
    // The limit is over what a worker holds at rest (sanitizers make that large), and under
    // what it holds after the leak.
    std::size_t at_rest = 0;
    {
        mproc::Pool probe(options(1));
        at_rest = probe.apply(resident, 0);
    }
    mproc::Pool pool(options(1, {.max_memory_per_child = at_rest + (48u << 20)}));
    const pid_t first = pool.apply(worker_pid, 0);
    EXPECT_EQ(pool.apply(worker_pid, 0), first) << "a worker under the limit stays";
    EXPECT_EQ(pool.apply(leak_mib, 96), first) << "the task that passes the limit runs there";
    const pid_t next = pool.apply(worker_pid, 0);
    EXPECT_NE(next, first) << "the worker over the limit ran another task";
    EXPECT_EQ(pool.apply(worker_pid, 0), next);
    // A map's tasks, some of which leak, each run once: a worker retires between chunks and
    // hands the chunks it had not begun to its replacement, which begins them.
    std::vector<std::pair<int, int>> leaks;
    for (int x = 0; x < 20; ++x) leaks.emplace_back(x, x == 3 || x == 11 ? 96 : 0);
    std::set<pid_t> workers;
    for (pid_t pid : pool.starmap(count_and_leak_mib, leaks, 1)) workers.insert(pid);
    EXPECT_GE(workers.size(), 3u) << "a leaking task's worker served on";
    EXPECT_EQ(not_run_once(20), std::vector<int>{});
}

}  // namespace
