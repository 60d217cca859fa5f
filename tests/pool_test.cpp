// The Pool contract: Python's multiprocessing.Pool, plus a pool that survives its workers.

#include "mproc/pool.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <list>
#include <map>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/resources.hpp"
#include "mproc/shared_memory.hpp"
#include "process_helpers.hpp"

// Outside the anonymous namespace, so that the function has a name in a backtrace.
namespace app {
struct ParseError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Cold as a whole: an optimised build otherwise moves a hot function's throw into an unnamed
// ".cold" part, whose frame a backtrace can only show as a module offset (for addr2line).
[[gnu::noinline, gnu::cold]] int parse_or_throw(int x) {
    if (x == 2) throw ParseError("cannot parse item " + std::to_string(x));
    return x;
}
}  // namespace app

namespace {

using namespace std::chrono_literals;
using app::parse_or_throw;

int square(int x) {
    return x * x;
}
int add(int a, int b) {
    return a + b;
}
pid_t worker_pid(int) {
    return ::getpid();
}

std::string describe(const std::string& name, int count, double weight) {
    return name + ":" + std::to_string(count) + ":" + std::to_string(static_cast<int>(weight));
}

int kill_self_on_three(int x) {
    if (x == 3) ::raise(SIGKILL);
    return x;
}

int exit_on_three(int x) {
    if (x == 3) std::exit(7);
    return x;
}

int abort_on_ten(int x) {
    if (x == 10) std::abort();
    return x;
}

std::string abort_on_ten_text(const std::string& x) {
    if (x == "10") std::abort();
    return x;
}

template <class T>
T same(T x) {
    return x;
}

double weigh(char kind, long double weight, short count) {
    return static_cast<double>(kind) + static_cast<double>(weight) * count;
}

pid_t pid_after_sleeping(int milliseconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
    return ::getpid();
}

// The file that lets the tasks of test process `pid` go on (see waits_for_go).
std::string go_file(long long pid) {
    return "/tmp/mproc_pool_test_go_" + std::to_string(pid);
}
constexpr long long go_keys_per_test = 16;

// A task of test process key / go_keys_per_test. Task 3 waits (10 s at most) for that test's
// go file and says whether it came; the others take 20 ms, long enough that a worker sends
// each result on its own.
int waits_for_go(long long key) {
    if (key % go_keys_per_test != 3) {
        std::this_thread::sleep_for(20ms);
        return 0;
    }
    const std::string go = go_file(key / go_keys_per_test);
    for (const auto deadline = std::chrono::steady_clock::now() + 10s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(5ms)) {
        if (::access(go.c_str(), F_OK) == 0) return 1;
    }
    return 0;
}

// The log of which tasks of test process `pid` ran (see logs_its_run).
std::string run_log(long long pid) {
    return "/tmp/mproc_pool_test_runs_" + std::to_string(pid);
}
// The file that names the task that killed its worker (see logs_its_run).
std::string killer_file(long long pid) {
    return run_log(pid) + "_killer";
}
constexpr long long run_keys_per_test = 1 << 20;
constexpr int tasks_that_may_kill_from = 1500;

// Task key % run_keys_per_test of test process key / run_keys_per_test: appends its number to
// that test's run log (one write, so that runs in several workers never interleave). The first
// task from tasks_that_may_kill_from on that a worker runs after other tasks writes its number
// to the killer file and kills its worker, once per test: the worker dies holding the results
// of the tasks it ran before.
int logs_its_run(long long key) {
    static int ran_in_this_process = 0;
    ++ran_in_this_process;
    const int task = static_cast<int>(key % run_keys_per_test);
    const std::string log = run_log(key / run_keys_per_test);
    const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, &task, sizeof task) != sizeof task) std::abort();
    ::close(fd);
    if (task >= tasks_that_may_kill_from && ran_in_this_process > 1) {
        const std::string killer = killer_file(key / run_keys_per_test);
        const int once = ::open(killer.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (once >= 0) {
            if (::write(once, &task, sizeof task) != sizeof task) std::abort();
            ::raise(SIGKILL);
        }
    }
    return task;
}

// Keys for logs_its_run: tasks 0 to n - 1 of this test process, whose run log starts empty.
std::vector<long long> logged_tasks(int n) {
    std::remove(run_log(::getpid()).c_str());
    std::remove(killer_file(::getpid()).c_str());
    std::vector<long long> keys;
    for (int task = 0; task < n; ++task) keys.push_back(::getpid() * run_keys_per_test + task);
    return keys;
}

// How many times each of tasks 0 to n - 1 of this test process ran; removes the log.
std::vector<int> runs_logged(int n) {
    std::vector<int> runs(static_cast<std::size_t>(n));
    std::ifstream log(run_log(::getpid()), std::ios::binary);
    for (int task; log.read(reinterpret_cast<char*>(&task), sizeof task);) {
        if (task >= 0 && task < n) ++runs[static_cast<std::size_t>(task)];
    }
    std::remove(run_log(::getpid()).c_str());
    return runs;
}

// The task that killed its worker in this test process, or -1; removes the file.
int killer_logged() {
    int task = -1;
    std::ifstream(killer_file(::getpid()), std::ios::binary)
        .read(reinterpret_cast<char*>(&task), sizeof task);
    std::remove(killer_file(::getpid()).c_str());
    return task;
}

std::int64_t range_width(std::pair<std::int64_t, std::int64_t> range) {
    return range.second - range.first;
}

double norm_squared(std::array<double, 3> v) {
    return v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
}

int fail_when_odd(int x) {
    if (x % 2 != 0) throw std::invalid_argument("odd " + std::to_string(x));
    return x;
}

// A negative x sleeps -x ms; others as fail_when_odd.
int sleep_or_fail_when_odd(int x) {
    if (x < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(-x));
        return x;
    }
    return fail_when_odd(x);
}

int sleep_when_negative(int x) {
    if (x < 0) std::this_thread::sleep_for(60s);
    return x;
}

void mark(mproc::SharedArray<int> marks, int index) {
    marks[static_cast<std::size_t>(index)] = 1;
}

std::size_t length_of(const std::vector<char>& bytes) {
    return bytes.size();
}

void count_initialization(mproc::SharedArray<int> counter, int step) {
    __atomic_fetch_add(&counter[0], step, __ATOMIC_SEQ_CST);
}

void throwing_initializer() {
    throw std::logic_error("no configuration");
}

mproc::SharedArray<int> make_filled(int size, int value) {
    mproc::SharedArray<int> array(static_cast<std::size_t>(size));
    for (auto& element : array) element = value;
    return array;
}

// Every behaviour below holds under each start method.
class PoolTest : public mproc::testing::StartMethodTest {};

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolTest,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

TEST_P(PoolTest, MapReturnsResultsInInputOrder) {
    mproc::Pool pool(options(2));
    EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3, 4, 5}),
              (std::vector<int>{1, 4, 9, 16, 25}));
}

TEST_P(PoolTest, MapAcceptsAnyInputRange) {
    mproc::Pool pool(options(2));
    const auto from_view = pool.map(square, std::views::iota(0, 1000));
    ASSERT_EQ(from_view.size(), 1000u);
    EXPECT_EQ(from_view[999], 999 * 999);
    EXPECT_EQ(pool.map(square, std::list<int>{3, 4}), (std::vector<int>{9, 16}));
    const auto unsized = std::views::iota(0) | std::views::take_while([](int x) { return x < 5; });
    EXPECT_EQ(pool.map(square, unsized), (std::vector<int>{0, 1, 4, 9, 16}));
}

TEST_P(PoolTest, MapOfNoInputsReturnsNoResults) {
    mproc::Pool pool(options(1));
    EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
}

TEST_P(PoolTest, MapOfAVoidFunctionRunsEveryTask) {
    mproc::Pool pool(options(2));
    mproc::SharedArray<int> marks(50);
    std::vector<std::tuple<mproc::SharedArray<int>, int>> tasks;
    for (int i = 0; i < 50; ++i) tasks.emplace_back(marks, i);
    pool.starmap(mark, tasks);
    for (int m : marks) EXPECT_EQ(m, 1);
}

TEST_P(PoolTest, EveryChunksizeGivesTheSameResults) {
    mproc::Pool pool(options(2));
    std::vector<int> expected;
    for (int i = 0; i < 97; ++i) expected.push_back(i * i);
    for (std::size_t chunksize : {1u, 2u, 7u, 96u, 97u, 1000u}) {
        EXPECT_EQ(pool.map(square, std::views::iota(0, 97), chunksize), expected) << chunksize;
    }
}

TEST(Pool, DefaultChunksizeMakesAboutFourChunksPerWorker) {
    EXPECT_EQ(mproc::detail::default_chunksize(1000, 2), 125u);
    EXPECT_EQ(mproc::detail::default_chunksize(1001, 2), 126u);
    EXPECT_EQ(mproc::detail::default_chunksize(3, 2), 1u);
    EXPECT_EQ(mproc::detail::default_chunksize(0, 2), 1u);
}

TEST_P(PoolTest, StarmapCallsTheFunctionWithEachTuplesElements) {
    mproc::Pool pool(options(2));
    const std::vector<std::tuple<std::string, int, double>> rows{{"a", 1, 2.0}, {"b", 3, 4.0}};
    EXPECT_EQ(pool.starmap(describe, rows), (std::vector<std::string>{"a:1:2", "b:3:4"}));
    const std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}};
    EXPECT_EQ(pool.starmap(add, pairs), (std::vector<int>{3, 7}));
}

TEST_P(PoolTest, ContainersAndStringsTravelBothWays) {
    mproc::Pool pool(options(2));
    auto sizes = [](std::map<std::string, std::vector<int>> m) {
        std::map<std::string, std::size_t> out;
        for (const auto& [key, values] : m) out[key] = values.size();
        return out;
    };
    std::map<std::string, std::vector<int>> input{{"three", {1, 2, 3}}, {"none", {}}};
    const auto result = pool.apply(sizes, input);
    EXPECT_EQ(result, (std::map<std::string, std::size_t>{{"none", 0}, {"three", 3}}));
}

TEST_P(PoolTest, CapturelessLambdasAreSendable) {
    mproc::Pool pool(options(2));
    EXPECT_EQ(pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2}),
              (std::vector<int>{2, 3}));
}

TEST_P(PoolTest, ApplyReturnsTheValueOfOneCall) {
    mproc::Pool pool(options(1));
    EXPECT_EQ(pool.apply(add, 2, 40), 42);
    EXPECT_EQ(pool.apply(describe, "x", 2, 3.0), "x:2:3");  // a C string arrives as std::string
}

TEST_P(PoolTest, ApplyAsyncResultsArriveForEveryTask) {
    mproc::Pool pool(options(2));
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 2000; ++i) results.push_back(pool.apply_async(square, i));
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(results[static_cast<std::size_t>(i)].get(30s), i * i);
}

TEST_P(PoolTest, MapAsyncReturnsAResultToWaitOn) {
    mproc::Pool pool(options(2));
    auto result = pool.map_async(square, std::vector<int>{2, 3});
    EXPECT_TRUE(result.wait(30s));
    EXPECT_TRUE(result.successful());
    EXPECT_EQ(result.get(), (std::vector<int>{4, 9}));
    auto starred = pool.starmap_async(add, std::vector<std::pair<int, int>>{{1, 1}});
    EXPECT_EQ(starred.get(30s), (std::vector<int>{2}));
}

TEST_P(PoolTest, ImapYieldsResultsInInputOrder) {
    mproc::Pool pool(options(2));
    std::vector<int> seen;
    for (int value : pool.imap(square, std::views::iota(0, 20))) seen.push_back(value);
    std::vector<int> expected;
    for (int i = 0; i < 20; ++i) expected.push_back(i * i);
    EXPECT_EQ(seen, expected);
}

TEST_P(PoolTest, ImapOfChunksizeOneYieldsItsFirstResultBeforeTheLastTaskHasRun) {
    mproc::Pool pool(options(2));
    const std::string go = go_file(::getpid());
    std::remove(go.c_str());
    std::vector<long long> keys;
    for (long long i = 0; i < 4; ++i) keys.push_back(::getpid() * go_keys_per_test + i);
    auto results = pool.imap(waits_for_go, keys);
    auto it = results.begin();
    EXPECT_EQ(*it, 0);
    std::ofstream(go).put('!');
    std::vector<int> rest;
    for (++it; it != results.end(); ++it) rest.push_back(*it);
    std::remove(go.c_str());
    EXPECT_EQ(rest, (std::vector<int>{0, 0, 1})) << "the last task ran before the first result";
}

TEST_P(PoolTest, LongTasksOfChunksizeOneSpreadOverTheWorkers) {
    mproc::Pool pool(options(2));
    pool.map(square, std::views::iota(0, 100), 1);  // quick tasks, of another function
    const auto pids = pool.map(pid_after_sleeping, std::vector<int>(4, 100), 1);
    EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), 2u);
}

TEST_P(PoolTest, LongTasksOfChunksizeOneSpreadOverTheWorkersAfterQuickTasksOfTheirFunction) {
    mproc::Pool pool(options(2));
    pool.map(pid_after_sleeping, std::vector<int>(200, 0), 1);  // quick: many to a frame
    const auto pids = pool.map(pid_after_sleeping, std::vector<int>(4, 100), 1);
    EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), 2u);
}

TEST_P(PoolTest, LongTasksOfChunksizeOneSpreadOverTheWorkersAfterQuickOnesOfTheSameMap) {
    mproc::Pool pool(options(2));
    // The quick tasks make pieces of many tasks: the long ones must not wait in one of them.
    std::vector<int> sleeps(2000, 0);
    sleeps.insert(sleeps.end(), 4, 100);
    const auto pids = pool.map(pid_after_sleeping, sleeps, 1);
    EXPECT_EQ(std::set<pid_t>(pids.end() - 4, pids.end()).size(), 2u);
}

TEST_P(PoolTest, ImapUnorderedYieldsEveryResultOnce) {
    mproc::Pool pool(options(2));
    std::multiset<int> seen;
    for (int value : pool.imap_unordered(square, std::views::iota(0, 20), 3)) seen.insert(value);
    std::multiset<int> expected;
    for (int i = 0; i < 20; ++i) expected.insert(i * i);
    EXPECT_EQ(seen, expected);
}

TEST_P(PoolTest, ImapThrowsAtTheFailingElementAndTheRestCanStillBeRead) {
    mproc::Pool pool(options(2));
    auto results = pool.imap(parse_or_throw, std::vector<int>{0, 1, 2, 3, 4});
    std::vector<int> values;
    int failures = 0;
    for (auto it = results.begin(); it != results.end(); ++it) {
        try {
            values.push_back(*it);
        } catch (const mproc::RemoteError& error) {
            ++failures;
            EXPECT_EQ(error.type_name(), "app::ParseError");
        }
    }
    EXPECT_EQ(failures, 1);
    EXPECT_EQ(values, (std::vector<int>{0, 1, 3, 4}));
}

TEST_P(PoolTest, TaskExceptionComesBackWithTypeMessageAndTraceback) {
    mproc::Pool pool(options(1));
    try {
        pool.apply(parse_or_throw, 2);
        FAIL() << "expected a RemoteError";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.type_name(), "app::ParseError");
        EXPECT_EQ(error.message(), "cannot parse item 2");
        EXPECT_NE(error.traceback().find("parse_or_throw"), std::string::npos) << error.traceback();
        EXPECT_NE(std::string(error.what()).find("cannot parse item 2"), std::string::npos);
    }
}

TEST_P(PoolTest, MapThrowsTheErrorOfTheFirstFailingTask) {
    mproc::Pool pool(options(2));
    EXPECT_THROW(pool.map(parse_or_throw, std::vector<int>{0, 1, 2, 3}), mproc::RemoteError);
    EXPECT_EQ(pool.map(square, std::vector<int>{3}), (std::vector<int>{9}));  // and goes on
}

// CPU time this process has used, all its threads together.
std::chrono::microseconds cpu_time_used() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const auto total = [](const timeval& t) {
        return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
    };
    return total(usage.ru_utime) + total(usage.ru_stime);
}

TEST_P(PoolTest, WaitsForTheReportOfAWorkersDeathAsleep) {
    mproc::Pool pool(options(1));
    const pid_t worker = pool.apply(worker_pid, 0);
    const std::vector<pid_t> children = mproc::testing::child_pids();
    ASSERT_EQ(children.size(), 1u) << "the pool's launcher";
    // The worker's end of its socket closes at once; the launcher, stopped, cannot report the
    // death yet. Until it does, the pool has nothing to do and must not spin on the socket.
    ASSERT_EQ(::kill(children.front(), SIGSTOP), 0);
    ASSERT_EQ(::kill(worker, SIGKILL), 0);
    const auto before = cpu_time_used();
    std::this_thread::sleep_for(400ms);
    const auto used = cpu_time_used() - before;
    ASSERT_EQ(::kill(children.front(), SIGCONT), 0);
    EXPECT_LT(used, 200ms) << "the pool's collector kept the CPU busy while it waited";
    EXPECT_NE(pool.apply(worker_pid, 0), worker);  // a replacement serves on
}

TEST_P(PoolTest, KilledWorkerFailsItsTaskOnly) {
    mproc::Pool pool(options(2));
    auto results = pool.imap(kill_self_on_three, std::views::iota(0, 8));
    std::vector<int> values;
    for (auto it = results.begin(); it != results.end(); ++it) {
        try {
            values.push_back(*it);
        } catch (const mproc::WorkerLost& lost) {
            EXPECT_EQ(lost.signal(), SIGKILL);
            EXPECT_GT(lost.pid(), 0);
        }
    }
    EXPECT_EQ(values, (std::vector<int>{0, 1, 2, 4, 5, 6, 7}));
}

// The values an imap yields, in order, and how many of its tasks failed with WorkerLost.
template <class Results>
auto values_and_losses(Results& results) {
    std::vector<std::decay_t<decltype(*results.begin())>> values;
    int lost = 0;
    for (auto it = results.begin(); it != results.end(); ++it) {
        try {
            values.push_back(*it);
        } catch (const mproc::WorkerLost&) {
            ++lost;
        }
    }
    return std::pair(std::move(values), lost);
}

TEST_P(PoolTest, KilledWorkerFailsOnlyItsTaskOfManyQuickTasksOfChunksizeOne) {
    mproc::Pool pool(options(2));
    // Quick tasks of the same function first: the later ones then travel many to a frame.
    pool.map(kill_self_on_three, std::views::iota(4, 2000), 1);
    auto results = pool.imap(kill_self_on_three, std::views::iota(-2000, 2000));
    const auto [values, lost] = values_and_losses(results);
    EXPECT_EQ(lost, 1);
    std::vector<int> expected;
    for (int i = -2000; i < 2000; ++i) {
        if (i != 3) expected.push_back(i);
    }
    EXPECT_EQ(values, expected);
}

// A map of chunk size 1 lets free workers take its tasks a few at a time, as the threads of
// a thread pool do, and return their results together: these tests hold it to the contract of
// any other map.
TEST_P(PoolTest, MapOfChunksizeOneOverManyThousandTasksReturnsEveryResultInOrder) {
    mproc::Pool pool(options(2));
    std::vector<int> expected;
    for (int i = 0; i < 10000; ++i) expected.push_back(i * i);
    EXPECT_EQ(pool.map(square, std::views::iota(0, 10000), 1), expected);
}

TEST_P(PoolTest, MapOfChunksizeOneRaisesTheErrorOfItsFirstFailingTaskInInputOrder) {
    mproc::Pool pool(options(2));
    try {
        pool.map(fail_when_odd, std::views::iota(0, 300), 1);
        FAIL() << "expected a RemoteError";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.type_name(), "std::invalid_argument");
        EXPECT_EQ(error.message(), "odd 1");
    }
    EXPECT_EQ(pool.map(square, std::views::iota(0, 3000), 1).back(), 2999 * 2999);
}

TEST_P(PoolTest,
       MapOfChunksizeOneWhoseTaskKillsItsWorkerFailsWithWorkerLostAndRunsEveryOtherTaskOnce) {
    mproc::Pool pool(options(2));
    constexpr int tasks = 3000;
    try {
        pool.map(logs_its_run, logged_tasks(tasks), 1);
        FAIL() << "expected WorkerLost";
    } catch (const mproc::WorkerLost& lost) {
        EXPECT_EQ(lost.signal(), SIGKILL);
    }
    const auto runs = runs_logged(tasks);
    const int killer = killer_logged();
    ASSERT_GE(killer, tasks_that_may_kill_from);
    EXPECT_EQ(runs[static_cast<std::size_t>(killer)], 1)
        << "the task that killed its worker ran again";
    int ran_again = 0;
    for (int task = 0; task < tasks; ++task) {
        if (task == killer) continue;
        EXPECT_GE(runs[static_cast<std::size_t>(task)], 1) << "task " << task << " never ran";
        if (runs[static_cast<std::size_t>(task)] > 1) ++ran_again;
    }
    // The values the dead worker had computed and not yet sent were in shared memory (its
    // ResultArea): none of its tasks ran again.
    EXPECT_EQ(ran_again, 0);
    EXPECT_EQ(pool.map(square, std::views::iota(0, 3000), 1).back(), 2999 * 2999);
}

TEST_P(PoolTest, PairsAndArraysOfNumbersAreArgumentsOfMapsAndApplyAsync) {
    mproc::Pool pool(options(2));
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
    for (std::int64_t i = 0; i < 1000; ++i) ranges.emplace_back(i, 3 * i);
    const auto widths = pool.map(range_width, ranges, 1);
    ASSERT_EQ(widths.size(), 1000u);
    for (std::int64_t i = 0; i < 1000; ++i) EXPECT_EQ(widths[static_cast<std::size_t>(i)], 2 * i);
    EXPECT_EQ(pool.apply_async(range_width, std::pair<std::int64_t, std::int64_t>{5, 12}).get(30s),
              7);
    EXPECT_EQ(pool.map(norm_squared, std::vector<std::array<double, 3>>{{1, 2, 2}, {0, 3, 4}}, 1),
              (std::vector<double>{9, 25}));
}

TEST_P(PoolTest, MapOfChunksizeOneWhoseTaskRunsPastTheTimeoutFailsWithTimeoutError) {
    mproc::Pool pool(options(2, {.task_timeout = 300ms}));
    std::vector<int> values(2000);
    std::iota(values.begin(), values.end(), 0);
    values[1500] = -1;
    EXPECT_THROW(pool.map(sleep_when_negative, values, 1), mproc::TimeoutError);
    EXPECT_EQ(pool.map(square, std::views::iota(0, 3000), 1).back(), 2999 * 2999);
}

TEST_P(PoolTest, MapsOfChunksizeOneFromSeveralThreadsAtOnceAmongOtherCalls) {
    mproc::Pool pool(options(2));
    std::vector<std::thread> threads;
    std::vector<long long> sums(4);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            long long sum = 0;
            if (t % 2 == 0) {
                for (int value : pool.map(square, std::views::iota(0, 5000), 1)) sum += value;
            } else {
                for (int value : pool.imap(square, std::views::iota(0, 5000), 7)) sum += value;
            }
            sums[static_cast<std::size_t>(t)] = sum;
        });
    }
    for (auto& thread : threads) thread.join();
    for (long long sum : sums) EXPECT_EQ(sum, 41654167500LL);
}

TEST_P(PoolTest, WorkerThatCallsExitFailsItsTaskWithTheExitCode) {
    mproc::Pool pool(options(1));
    try {
        pool.apply(exit_on_three, 3);
        FAIL() << "expected WorkerLost";
    } catch (const mproc::WorkerLost& lost) {
        EXPECT_EQ(lost.exit_code(), 7);
        EXPECT_EQ(lost.signal(), 0);
    }
    EXPECT_EQ(pool.apply(exit_on_three, 4), 4);  // a new worker took its place
}

TEST_P(PoolTest, WorkerDeathInTheMiddleOfMapFailsOnlyTheTaskItHeld) {
    mproc::Pool pool(options(2));
    // Chunks of 4: the worker dies inside a chunk with tasks before and after the culprit.
    auto results = pool.imap(abort_on_ten, std::views::iota(0, 20), 4);
    std::vector<int> values;
    std::vector<int> lost_signals;
    for (auto it = results.begin(); it != results.end(); ++it) {
        try {
            values.push_back(*it);
        } catch (const mproc::WorkerLost& lost) {
            lost_signals.push_back(lost.signal());
        }
    }
    EXPECT_EQ(lost_signals, (std::vector<int>{SIGABRT}));
    std::vector<int> expected;
    for (int i = 0; i < 20; ++i) {
        if (i != 10) expected.push_back(i);
    }
    EXPECT_EQ(values, expected);
    EXPECT_THROW(pool.map(abort_on_ten, std::views::iota(0, 20)), mproc::WorkerLost);
}

TEST_P(PoolTest, WorkerDeathInTheMiddleOfAChunkOfItemsFailsOnlyTheTaskItHeld) {
    mproc::Pool pool(options(2));
    // Strings travel as length-prefixed items, not as a block of numbers.
    std::vector<std::string> inputs;
    for (int i = 0; i < 20; ++i) inputs.push_back(std::to_string(i));
    auto results = pool.imap(abort_on_ten_text, inputs, 4);
    const auto [values, lost] = values_and_losses(results);
    EXPECT_EQ(lost, 1);
    inputs.erase(inputs.begin() + 10);
    EXPECT_EQ(values, inputs);
}

template <class... T>
void expect_each_type_round_trips(mproc::Pool& pool) {
    auto check = [&]<class U>(U) {
        using limits = std::numeric_limits<U>;
        const std::vector<U> inputs{U{0}, U{1}, limits::lowest(), limits::max(), limits::min()};
        EXPECT_EQ(pool.map(same<U>, inputs, 2), inputs) << typeid(U).name();
        EXPECT_EQ(pool.apply(same<U>, limits::max()), limits::max()) << typeid(U).name();
    };
    (check(T{}), ...);
}

TEST_P(PoolTest, ABlockOfEachArithmeticTypeComesBackEqual) {
    mproc::Pool pool(options(2));
    expect_each_type_round_trips<char, signed char, unsigned char, wchar_t, char8_t, char16_t,
                                 char32_t, short, unsigned short, int, unsigned, long,
                                 unsigned long, long long, unsigned long long, float, double,
                                 long double>(pool);
    EXPECT_TRUE(pool.apply(same<bool>, true));  // a bool is checked: it travels as an item
}

TEST_P(PoolTest, StarmapOfMixedNumbersCallsWithEachElement) {
    mproc::Pool pool(options(2));
    const std::vector<std::tuple<char, long double, short>> inputs{
        {'a', 0.5L, 2}, {'b', -1.25L, 4}, {'\0', 3.0L, -3}};
    EXPECT_EQ(pool.starmap(weigh, inputs), (std::vector<double>{98.0, 93.0, -9.0}));
}

TEST_P(PoolTest, ABlockWithSeveralFailedTasksKeepsEachErrorAtItsTask) {
    mproc::Pool pool(options(2));
    auto results = pool.imap(fail_when_odd, std::views::iota(0, 12), 6);
    int position = 0;
    for (auto it = results.begin(); it != results.end(); ++it, ++position) {
        if (position % 2 == 0) {
            EXPECT_EQ(*it, position);
        } else {
            try {
                static_cast<void>(*it);
                ADD_FAILURE() << "task " << position << " should have failed";
            } catch (const mproc::RemoteError& error) {
                EXPECT_EQ(error.message(), "odd " + std::to_string(position));
            }
        }
    }
    EXPECT_EQ(position, 12);
    try {
        pool.map(fail_when_odd, std::vector<int>{0, 2, 5, 7}, 4);
        FAIL() << "expected a RemoteError";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.message(), "odd 5");  // the first failure by position
    }
}

TEST_P(PoolTest, PiecesEndedEarlyKeepEachValueAndErrorAtItsTask) {
    mproc::Pool pool(options(2));
    // Quick tasks make pieces of many tasks; a piece ends early after a long task, with a
    // failed task and values before it.
    std::vector<int> inputs;
    for (int i = 0; i < 2000; ++i) inputs.push_back(2 * i);
    for (int i = 0; i < 6; ++i) {
        for (int x : {2 * i, 2 * i + 1, -30, 2 * i + 2, 2 * i + 4}) inputs.push_back(x);
    }
    auto results = pool.imap(sleep_or_fail_when_odd, inputs);
    std::size_t position = 0;
    for (auto it = results.begin(); it != results.end(); ++it, ++position) {
        const int input = inputs[position];
        if (input < 0 || input % 2 == 0) {
            EXPECT_EQ(*it, input);
            continue;
        }
        try {
            static_cast<void>(*it);
            ADD_FAILURE() << "task " << position << " should have failed";
        } catch (const mproc::RemoteError& error) {
            EXPECT_EQ(error.message(), "odd " + std::to_string(input));
        }
    }
    EXPECT_EQ(position, inputs.size());
}

TEST_P(PoolTest, AMixedBatchOfNumberAndItemTasksGivesEachItsResult) {
    mproc::Pool pool(options(2));
    std::vector<mproc::AsyncResult<int>> numbers;
    std::vector<mproc::AsyncResult<std::string>> texts;
    std::vector<mproc::AsyncResult<int>> failures;
    for (int i = 0; i < 200; ++i) {
        numbers.push_back(pool.apply_async(square, i));
        texts.push_back(pool.apply_async(describe, "n", i, 1.0));
        if (i % 50 == 0) failures.push_back(pool.apply_async(fail_when_odd, i + 1));
    }
    auto mapped = pool.map_async(square, std::views::iota(0, 300), 7);
    for (int i = 0; i < 200; ++i) {
        EXPECT_EQ(numbers[static_cast<std::size_t>(i)].get(30s), i * i);
        EXPECT_EQ(texts[static_cast<std::size_t>(i)].get(30s), "n:" + std::to_string(i) + ":1");
    }
    for (auto& failure : failures) EXPECT_THROW(failure.get(30s), mproc::RemoteError);
    const auto squares = mapped.get(30s);
    for (int i = 0; i < 300; ++i) EXPECT_EQ(squares[static_cast<std::size_t>(i)], i * i);
}

TEST_P(PoolTest, ApplyAsyncCallsMadeTogetherEachGetTheirOwnResultOrError) {
    mproc::Pool pool(options(2));
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 1000; ++i) results.push_back(pool.apply_async(fail_when_odd, i));
    for (int i = 0; i < 1000; ++i) {
        auto& result = results[static_cast<std::size_t>(i)];
        if (i % 2 == 0) {
            EXPECT_EQ(result.get(30s), i);
        } else {
            EXPECT_THROW(result.get(30s), mproc::RemoteError);
            EXPECT_FALSE(result.successful());
        }
    }
}

TEST_P(PoolTest, LongApplyAsyncCallsMadeTogetherRunOnDifferentWorkers) {
    mproc::Pool pool(options(2));
    pool.map(square, std::views::iota(0, 100));  // quick chunks first: the workers look fast
    auto first = pool.apply_async(pid_after_sleeping, 300);
    auto second = pool.apply_async(pid_after_sleeping, 300);
    EXPECT_NE(first.get(30s), second.get(30s));
}

TEST_P(PoolTest, LongApplyAsyncCallsSpreadOverTheWorkersBeforeTheirPaceIsKnown) {
    mproc::Pool pool(options(2));
    std::vector<mproc::AsyncResult<pid_t>> results;
    for (int i = 0; i < 4; ++i) results.push_back(pool.apply_async(pid_after_sleeping, 200));
    std::set<pid_t> pids;
    for (auto& result : results) pids.insert(result.get(30s));
    EXPECT_EQ(pids.size(), 2u);
}

// Result i of calls made with inputs 0, 1, 2, ... is i, but for the call at `failing`, which
// throws Error.
template <class Error>
void expect_inputs_back_but(std::vector<mproc::AsyncResult<int>>& results, std::size_t failing) {
    for (std::size_t i = 0; i < results.size(); ++i) {
        if (i == failing) {
            EXPECT_THROW(results[i].get(30s), Error);
        } else {
            EXPECT_EQ(results[i].get(30s), static_cast<int>(i));
        }
    }
}

TEST_P(PoolTest, KilledWorkerFailsOnlyItsCallOfTheApplyAsyncCallsMadeTogether) {
    mproc::Pool pool(options(2));
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 8; ++i) results.push_back(pool.apply_async(kill_self_on_three, i));
    expect_inputs_back_but<mproc::WorkerLost>(results, 3);
}

TEST_P(PoolTest, ApplyAsyncCallPastItsTimeoutFailsAloneAmongTheCallsMadeWithIt) {
    mproc::Pool pool(options(2, {.task_timeout = 300ms}));
    pool.map(square, std::views::iota(0, 100));  // quick tasks: calls may go out in batches
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 20; ++i) {
        results.push_back(pool.apply_async(sleep_when_negative, i == 7 ? -1 : i));
    }
    expect_inputs_back_but<mproc::TimeoutError>(results, 7);
}

TEST_P(PoolTest, SeveralThreadsMayApplyAsyncAtOnce) {
    mproc::Pool pool(options(2));
    std::vector<std::thread> threads;
    std::vector<long> sums(4);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::vector<mproc::AsyncResult<int>> results;
            for (int i = 0; i < 500; ++i) results.push_back(pool.apply_async(square, i));
            long sum = 0;
            for (auto& result : results) sum += result.get(30s);
            sums[static_cast<std::size_t>(t)] = sum;
        });
    }
    for (auto& thread : threads) thread.join();
    for (long sum : sums) EXPECT_EQ(sum, 41541750);
}

TEST_P(PoolTest, TaskPastItsTimeoutFailsWithTimeoutErrorAndThePoolGoesOn) {
    mproc::Pool pool(options(2, {.task_timeout = 300ms}));
    auto slow = pool.apply_async(sleep_when_negative, -1);
    auto fast = pool.map(sleep_when_negative, std::vector<int>{1, 2, 3});
    EXPECT_EQ(fast, (std::vector<int>{1, 2, 3}));
    EXPECT_THROW(slow.get(30s), mproc::TimeoutError);
    EXPECT_EQ(pool.apply(sleep_when_negative, 5), 5);
}

TEST_P(PoolTest, SubmittingAfterCloseIsAStateError) {
    mproc::Pool pool(options(1));
    pool.close();
    EXPECT_THROW(pool.map(square, std::vector<int>{1}), mproc::StateError);
    EXPECT_THROW(pool.apply_async(square, 1), mproc::StateError);
    pool.join();
}

TEST_P(PoolTest, JoinBeforeCloseIsAStateError) {
    mproc::Pool pool(options(1));
    EXPECT_THROW(pool.join(), mproc::StateError);
}

TEST_P(PoolTest, CloseThenJoinFinishesTheSubmittedWork) {
    mproc::Pool pool(options(2));
    auto result = pool.map_async(square, std::views::iota(0, 100));
    pool.close();
    pool.join();
    ASSERT_TRUE(result.ready());
    EXPECT_EQ(result.get().back(), 99 * 99);
}

TEST_P(PoolTest, TerminateReturnsPromptlyWithLongTasksRunningAndFailsThem) {
    mproc::Pool pool(options(2));
    auto long_tasks = pool.map_async(sleep_when_negative, std::vector<int>{-1, -1, -1, -1}, 1);
    std::this_thread::sleep_for(200ms);  // let the workers start their tasks
    const auto start = std::chrono::steady_clock::now();
    pool.terminate();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_THROW(long_tasks.get(10s), mproc::StateError);
    EXPECT_TRUE(mproc::testing::child_pids().empty());
}

TEST_P(PoolTest, DestructorFinishesTheSubmittedWork) {
    mproc::SharedArray<int> marks(40);
    {
        mproc::Pool pool(options(2));
        for (int i = 0; i < 40; ++i) pool.apply_async(mark, marks, i);
    }
    for (int m : marks) EXPECT_EQ(m, 1);
}

TEST_P(PoolTest, InitializerRunsOnceInEachWorkerWithItsArguments) {
    mproc::SharedArray<int> counter(1);
    {
        mproc::Pool pool(
            options(2, {.initializer = mproc::bind(count_initialization, counter, 10)}));
        pool.map(square, std::views::iota(0, 100));
    }
    EXPECT_EQ(counter[0], 20);
}

TEST_P(PoolTest, FailingInitializerFailsEveryTaskWithItsError) {
    mproc::Pool pool(options(1, {.initializer = mproc::bind(throwing_initializer)}));
    try {
        pool.apply(square, 2);
        FAIL() << "expected the initializer's error";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.type_name(), "std::logic_error");
        EXPECT_EQ(error.message(), "no configuration");
    }
}

TEST_P(PoolTest, MaxtasksperchildReplacesAWorkerAfterItsTasks) {
    mproc::Pool pool(options(1, {.maxtasksperchild = 2}));
    const auto pids = pool.map(worker_pid, std::views::iota(0, 6), 1);
    EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), 3u);
}

TEST_P(PoolTest, MaxtasksperchildCountsEachTaskOfChunksizeOne) {
    mproc::Pool pool(options(1, {.maxtasksperchild = 100}));
    const auto pids = pool.map(worker_pid, std::views::iota(0, 1000), 1);
    std::map<pid_t, int> tasks;
    for (pid_t pid : pids) ++tasks[pid];
    for (const auto& [pid, count] : tasks) EXPECT_LE(count, 100);
}

TEST_P(PoolTest, MaxtasksperchildCountsEachApplyAsyncCall) {
    mproc::Pool pool(options(1, {.maxtasksperchild = 100}));
    pool.map(square, std::views::iota(0, 50));  // quick tasks: calls may go out in batches
    std::vector<mproc::AsyncResult<pid_t>> results;
    for (int i = 0; i < 1000; ++i) results.push_back(pool.apply_async(worker_pid, i));
    std::map<pid_t, int> calls;
    for (auto& result : results) ++calls[result.get(30s)];
    for (const auto& [pid, count] : calls) {
        EXPECT_LT(count, 200) << "a worker ran more than maxtasksperchild and a chunk";
    }
}

TEST_P(PoolTest, SharedArrayArgumentIsSharedNotCopied) {
    mproc::Pool pool(options(2));
    mproc::SharedArray<int> marks(8);  // made after the workers: it travels as a descriptor
    std::vector<std::tuple<mproc::SharedArray<int>, int>> tasks;
    for (int i = 0; i < 8; ++i) tasks.emplace_back(marks, i);
    pool.starmap(mark, tasks, 3);
    for (int m : marks) EXPECT_EQ(m, 1);
}

TEST_P(PoolTest, SharedArrayMadeByAWorkerComesBackToTheParent) {
    mproc::Pool pool(options(1));
    const auto array = pool.apply(make_filled, 1000, 7);
    ASSERT_EQ(array.size(), 1000u);
    EXPECT_EQ(array[0], 7);
    EXPECT_EQ(array[999], 7);
}

TEST_P(PoolTest, LargeArgumentsTravel) {
    mproc::Pool pool(options(2));
    const std::vector<char> sixteen_mib(16u << 20, 'x');
    const auto sizes = pool.map(length_of, std::vector<std::vector<char>>(3, sixteen_mib), 1);
    EXPECT_EQ(sizes, (std::vector<std::size_t>(3, 16u << 20)));
}

TEST_P(PoolTest, SeveralThreadsMaySubmitAtOnce) {
    mproc::Pool pool(options(2));
    std::vector<std::thread> threads;
    std::vector<int> sums(4);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            int sum = 0;
            for (int value : pool.map(square, std::views::iota(0, 100))) sum += value;
            sums[static_cast<std::size_t>(t)] = sum;
        });
    }
    for (auto& thread : threads) thread.join();
    for (int sum : sums) EXPECT_EQ(sum, 328350);
}

TEST(Pool, DefaultSizeIsTheProcessCpuCount) {
    mproc::Pool pool;
    EXPECT_EQ(pool.processes(), mproc::process_cpu_count());
}

TEST_P(PoolTest, FiftyPoolsLeaveNoZombiesAndNoDescriptors) {
    const auto descriptors_before = mproc::testing::open_descriptor_count();
    for (int i = 0; i < 50; ++i) {
        mproc::Pool pool(options(2));
        ASSERT_EQ(pool.apply(square, i), i * i);
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors_before);
    EXPECT_TRUE(mproc::testing::child_pids().empty());
}

}  // namespace
