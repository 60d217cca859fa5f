// What a pool survives, and what it leaves behind when its own process is ended: signals to the
// pool's process, tasks that end their worker in every way a program can, and pools in pools.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <ranges>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/pool.hpp"
#include "oom_cgroup.hpp"
#include "os/cgroup.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;

constexpr auto kPatience = 30s;
// How long the processes of a pool whose process was ended may take to go.
constexpr auto kEndBound = 10s;

// Waits at most 30 s by default, as kPatience.
using mproc::testing::eventually;

pid_t worker_pid(int) {
    return ::getpid();
}

pid_t pid_after_sleeping(int milliseconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
    return ::getpid();
}

int square(int x) {
    return x * x;
}

// The file a running long_task leaves, so that the test knows the map is under way.
std::string running_file(long long key, pid_t worker) {
    return "/tmp/mproc_robustness_running_" + std::to_string(key) + "_" + std::to_string(worker);
}

// A task far longer than any test waits: its worker must be ended, not finish.
int long_task(long long key) {
    std::ofstream(running_file(key, ::getpid())) << "running";
    std::this_thread::sleep_for(120s);
    return 0;
}

int aborts(int) {
    std::abort();
}

int terminates(int) {
    std::terminate();
}

int exits_with_zero(int) {
    ::_exit(0);
}

int throws_an_int(int) {
    throw 42;
}

// Touches `bytes` of fresh memory, a page at a time, and returns how many pages it touched.
long long touches_memory(long long bytes) {
    const auto size = static_cast<std::size_t>(bytes);
    void* memory =
        ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return -1;
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    long long pages = 0;
    for (std::size_t offset = 0; offset < size; offset += page, ++pages) {
        static_cast<volatile char*>(memory)[offset] = 1;
    }
    ::munmap(memory, size);
    return pages;
}

// A task that runs a pool of its own: the sum of squares below n, and how many children the
// worker still has once that pool is gone (zombies included).
std::pair<long long, long long> sum_of_squares_in_a_nested_pool(int n) {
    long long sum = 0;
    {
        mproc::Pool inner(2);
        const std::vector<int> squares = inner.map(square, std::views::iota(0, n));
        sum = std::accumulate(squares.begin(), squares.end(), 0LL);
    }
    return {sum, static_cast<long long>(mproc::testing::child_pids().size())};
}

// --- The process tree -------------------------------------------------------------------------

// Each live process's parent, from /proc/*/stat; zombies are left out, since a zombie is the
// business of the parent that reaps it (see is_gone).
std::map<pid_t, pid_t> parents_of_live_processes() {
    std::map<pid_t, pid_t> parents;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        const std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream stat(entry.path() / "stat");
        std::string line;
        if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) continue;
        // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
        std::istringstream rest(line.substr(line.rfind(')') + 2));
        char state = '?';
        pid_t parent = 0;
        rest >> state >> parent;
        if (state == 'Z' || state == 'X') continue;
        parents[static_cast<pid_t>(std::stoi(name))] = parent;
    }
    return parents;
}

std::set<pid_t> live_descendants_of(pid_t ancestor) {
    const auto parents = parents_of_live_processes();
    std::set<pid_t> found{ancestor};
    for (bool grew = true; grew;) {
        grew = false;
        for (const auto& [pid, parent] : parents) {
            if (found.count(parent) != 0 && found.insert(pid).second) grew = true;
        }
    }
    found.erase(ancestor);
    return found;
}

bool process_exists(pid_t pid) {
    return std::filesystem::exists("/proc/" + std::to_string(pid));
}

// Whether pid has ended and been reaped. This process reaps it when it has become its child,
// as an orphan does while this process is a subreaper.
bool is_gone(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
    return !process_exists(pid);
}

// While it lives, the orphans of the processes this one starts come to it rather than to init,
// which need not reap them in a container: a zombie left behind can then be told from one that
// init has not got to yet.
class OrphansComeHere {
  public:
    OrphansComeHere() : set_(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0) {}
    OrphansComeHere(const OrphansComeHere&) = delete;
    OrphansComeHere& operator=(const OrphansComeHere&) = delete;
    ~OrphansComeHere() {
        if (set_) ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    }
    bool set() const { return set_; }

  private:
    bool set_;
};

// Reads the pids a child writes, until it writes 0 or the deadline passes.
std::set<pid_t> read_pids(int fd, std::chrono::milliseconds timeout) {
    std::set<pid_t> pids;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left <= 0ms) return pids;
        pollfd readable{.fd = fd, .events = POLLIN, .revents = 0};
        if (::poll(&readable, 1, static_cast<int>(left.count())) <= 0) return pids;
        pid_t pid = 0;
        if (::read(fd, &pid, sizeof pid) != static_cast<ssize_t>(sizeof pid) || pid == 0) {
            return pids;
        }
        pids.insert(pid);
    }
}

// The pool's process of the signal tests: a pool of two workers that writes their pids to
// `out`, a 0 after them, and then waits on a map of long tasks. Never returns.
[[noreturn]] void run_pool_of_long_tasks(mproc::PoolOptions options, int out) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the test's end ends this process
    try {
        mproc::Pool pool(options);
        // Long enough that the two tasks go to two workers, once both have started.
        std::set<pid_t> workers;
        for (int round = 0; round < 10 && workers.size() < 2; ++round) {
            for (const pid_t pid : pool.map(pid_after_sleeping, std::vector<int>{300, 300}, 1)) {
                workers.insert(pid);
            }
        }
        for (const pid_t pid : workers) {
            if (::write(out, &pid, sizeof pid) != static_cast<ssize_t>(sizeof pid)) ::_exit(3);
        }
        const pid_t end = 0;
        if (::write(out, &end, sizeof end) != static_cast<ssize_t>(sizeof end)) ::_exit(3);
        const long long key = ::getpid();
        pool.map(long_task, std::vector<long long>(4, key), 1);
        ::_exit(4);  // the long tasks finished: the test did not end this process
    } catch (...) {
        ::_exit(5);
    }
}

// What the pool's process of the OOM test saw, written to the test through a pipe.
struct OomReport {
    int lost_signal = -1;  // WorkerLost::signal() of the task that ran out of memory
    int lost_exit_code = -1;
    bool lost_out_of_memory = false;  // WorkerLost::out_of_memory(), and its message says so
    std::int64_t kills_before = -1;   // oom_kill_count() before and after that task
    std::int64_t kills_after = -1;
    int square_after = 0;  // a task after it: 49
};

// The pool's process of the OOM test: once the test has put it in a small cgroup (a byte on
// `go`), a pool of one worker runs a task that touches far more memory than the cgroup allows.
[[noreturn]] void run_pool_that_runs_out_of_memory(mproc::PoolOptions options, int go, int out) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    OomReport report;
    try {
        pollfd readable{.fd = go, .events = POLLIN, .revents = 0};
        char byte = 0;
        if (::poll(&readable, 1, 30'000) != 1 || ::read(go, &byte, 1) != 1) ::_exit(3);
        mproc::Pool pool(options);
        report.kills_before =
            static_cast<std::int64_t>(mproc::detail::oom_kill_count().value_or(-1));
        try {
            pool.apply(touches_memory, 4LL << 30);
        } catch (const mproc::WorkerLost& lost) {
            report.lost_signal = lost.signal();
            report.lost_exit_code = lost.exit_code();
            report.lost_out_of_memory =
                lost.out_of_memory() &&
                std::string(lost.what()).find("out-of-memory killer") != std::string::npos;
        }
        report.kills_after =
            static_cast<std::int64_t>(mproc::detail::oom_kill_count().value_or(-1));
        report.square_after = pool.apply(square, 7);
    } catch (...) {
        ::_exit(4);
    }
    const bool sent = ::write(out, &report, sizeof report) == static_cast<ssize_t>(sizeof report);
    ::_exit(sent ? 0 : 5);
}

class PoolRobustnessTest : public mproc::testing::StartMethodTest {
  protected:
    // The pool's process gets `signal` while its two workers run long tasks: it must end by
    // that signal, and every process it started (launcher and workers) within kEndBound, with
    // no zombie left among this process's children.
    void expect_signal_to_the_pools_process_ends_every_worker(int signal) {
        const OrphansComeHere orphans;
        ASSERT_TRUE(orphans.set());
        const auto children_before = mproc::testing::child_pids();

        int pipe_ends[2];
        ASSERT_EQ(::pipe2(pipe_ends, O_CLOEXEC), 0);
        const pid_t pool_process = ::fork();
        ASSERT_GE(pool_process, 0);
        if (pool_process == 0) {
            ::close(pipe_ends[0]);
            run_pool_of_long_tasks(options(2), pipe_ends[1]);
        }
        ::close(pipe_ends[1]);
        const std::set<pid_t> reported = read_pids(pipe_ends[0], kPatience);
        ::close(pipe_ends[0]);

        std::set<pid_t> started;
        const bool running = eventually([&] {
            started = live_descendants_of(pool_process);
            for (const pid_t worker : reported) {
                if (!std::filesystem::exists(running_file(pool_process, worker))) return false;
            }
            return !reported.empty();
        });

        ASSERT_EQ(::kill(pool_process, signal), 0);
        int status = 0;
        const bool pool_process_ended = eventually(
            [&] { return ::waitpid(pool_process, &status, WNOHANG) == pool_process; }, kEndBound);
        std::set<pid_t> left;
        const bool all_gone = eventually(
            [&] {
                left.clear();
                for (const pid_t pid : started) {
                    if (!is_gone(pid)) left.insert(pid);
                }
                return left.empty();
            },
            kEndBound);

        // Nothing may outlive the test, whatever failed.
        for (const pid_t pid : left) ::kill(pid, SIGKILL);
        if (!pool_process_ended) {
            ::kill(pool_process, SIGKILL);
            ::waitpid(pool_process, &status, 0);
        }
        eventually([&] {
            for (const pid_t pid : left) is_gone(pid);
            return mproc::testing::child_pids() == children_before;
        });

        for (const pid_t worker : reported) std::remove(running_file(pool_process, worker).c_str());
        ASSERT_EQ(reported.size(), 2u) << "the pool's process did not report its two workers";
        ASSERT_TRUE(running) << "the long tasks did not start";
        for (const pid_t worker : reported) EXPECT_EQ(started.count(worker), 1u) << worker;
        EXPECT_GT(started.size(), reported.size()) << "no launcher among the pool's processes";
        ASSERT_TRUE(pool_process_ended) << "the pool's process outlived " << strsignal(signal);
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == signal)
            << "the pool's process ended with status " << status;
        EXPECT_TRUE(all_gone) << left.size() << " of the pool's " << started.size()
                              << " processes outlived its process by 10 s";
        EXPECT_EQ(mproc::testing::child_pids(), children_before) << "zombies were left";
    }

    // A task of f ends its worker: the call fails with WorkerLost naming that worker with
    // exit_code and signal, and the pool goes on with a new worker.
    void expect_task_that_ends_its_worker_fails_with_worker_lost(int (*f)(int), int exit_code,
                                                                 int signal) {
        mproc::Pool pool(options(1));
        const pid_t worker = pool.apply(worker_pid, 0);
        try {
            pool.apply(f, 0);
            ADD_FAILURE() << "the task's call returned";
        } catch (const mproc::WorkerLost& lost) {
            EXPECT_EQ(lost.pid(), worker);
            EXPECT_EQ(lost.exit_code(), exit_code);
            EXPECT_EQ(lost.signal(), signal);
        } catch (const std::exception& other) {
            ADD_FAILURE() << "expected WorkerLost, got " << typeid(other).name() << ": "
                          << other.what();
        }
        EXPECT_NE(pool.apply(worker_pid, 0), worker) << "no new worker took the dead one's place";
        EXPECT_EQ(pool.map(square, std::views::iota(0, 10)),
                  (std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81}));
    }
};

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolRobustnessTest,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

// --- Signals to the pool's process ------------------------------------------------------------

TEST_P(PoolRobustnessTest, SigintToThePoolsProcessEndsEveryWorkerWithinSeconds) {
    expect_signal_to_the_pools_process_ends_every_worker(SIGINT);
}

TEST_P(PoolRobustnessTest, SigtermToThePoolsProcessEndsEveryWorkerWithinSeconds) {
    expect_signal_to_the_pools_process_ends_every_worker(SIGTERM);
}

TEST_P(PoolRobustnessTest, SigkillToThePoolsProcessEndsEveryWorkerWithinSeconds) {
    expect_signal_to_the_pools_process_ends_every_worker(SIGKILL);
}

// --- Tasks that end their worker ----------------------------------------------------------------

TEST_P(PoolRobustnessTest, TaskThatAbortsFailsWithWorkerLostBySigabrt) {
    expect_task_that_ends_its_worker_fails_with_worker_lost(aborts, 0, SIGABRT);
}

TEST_P(PoolRobustnessTest, TaskThatCallsStdTerminateFailsWithWorkerLostBySigabrt) {
    expect_task_that_ends_its_worker_fails_with_worker_lost(terminates, 0, SIGABRT);
}

TEST_P(PoolRobustnessTest, TaskThatCallsUnderscoreExitZeroFailsWithWorkerLostOfExitCodeZero) {
    // A worker that exits with success while it holds a task has still lost the task.
    expect_task_that_ends_its_worker_fails_with_worker_lost(exits_with_zero, 0, 0);
}

TEST_P(PoolRobustnessTest, TaskThatThrowsANonStdExceptionFailsWithRemoteErrorOfItsTypeName) {
    mproc::Pool pool(options(1));
    const pid_t worker = pool.apply(worker_pid, 0);
    try {
        pool.apply(throws_an_int, 0);
        ADD_FAILURE() << "the task's call returned";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.type_name(), "int");
    } catch (const std::exception& other) {
        ADD_FAILURE() << "expected RemoteError, got " << typeid(other).name() << ": "
                      << other.what();
    }
    // A task's exception costs no worker.
    EXPECT_EQ(pool.apply(worker_pid, 0), worker);
    EXPECT_EQ(pool.apply(square, 7), 49);
}

// --- The OOM killer --------------------------------------------------------------------------

TEST_P(PoolRobustnessTest, WorkerKilledByTheOomKillerFailsItsTaskWithWorkerLostThatSaysSo) {
    if (const auto why_not = mproc::testing::OomCgroup::why_not()) {
        GTEST_SKIP() << "no memory cgroup can be made here: " << *why_not;
    }
    // Room for the pool's process, its launcher and its worker under the sanitizers, and far
    // less than the task touches.
    const mproc::testing::OomCgroup cgroup(512 << 20);
    int go[2];
    int out[2];
    ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    const pid_t pool_process = ::fork();
    ASSERT_GE(pool_process, 0);
    if (pool_process == 0) {
        ::close(go[1]);
        ::close(out[0]);
        run_pool_that_runs_out_of_memory(options(1), go[0], out[1]);
    }
    ::close(go[0]);
    ::close(out[1]);
    const bool moved = cgroup.add(pool_process);
    const char byte = 'g';
    const bool went = moved && ::write(go[1], &byte, 1) == 1;
    ::close(go[1]);

    OomReport report;
    pollfd readable{.fd = out[0], .events = POLLIN, .revents = 0};
    const bool reported =
        went && ::poll(&readable, 1, 60'000) == 1 &&
        ::read(out[0], &report, sizeof report) == static_cast<ssize_t>(sizeof report);
    ::close(out[0]);
    int status = 0;
    if (!eventually([&] { return ::waitpid(pool_process, &status, WNOHANG) == pool_process; })) {
        ::kill(pool_process, SIGKILL);
        ::waitpid(pool_process, &status, 0);
    }

    ASSERT_TRUE(moved) << "could not move the pool's process into the cgroup";
    ASSERT_TRUE(reported) << "the pool's process ended with status " << status << " unreported";
    EXPECT_EQ(report.lost_signal, SIGKILL);
    EXPECT_EQ(report.lost_exit_code, 0);
    EXPECT_TRUE(report.lost_out_of_memory) << "WorkerLost did not say the OOM killer killed it";
    EXPECT_GE(report.kills_before, 0) << "oom_kill_count() could not read the cgroup";
    EXPECT_GT(report.kills_after, report.kills_before);
    EXPECT_EQ(report.square_after, 49) << "the pool did not go on after the OOM kill";
}

// --- A pool in a task ---------------------------------------------------------------------------

TEST_P(PoolRobustnessTest, TaskMayRunAPoolOfItsOwnAndLeavesNoProcessBehind) {
    const auto children_before = mproc::testing::child_pids();
    {
        mproc::Pool pool(options(2));
        const auto [sum, children_left] = pool.apply(sum_of_squares_in_a_nested_pool, 100);
        EXPECT_EQ(sum, 328350);
        EXPECT_EQ(children_left, 0) << "the inner pool left processes in the worker";
        // Both workers at once, each with its own inner pool.
        EXPECT_EQ(pool.map(sum_of_squares_in_a_nested_pool, std::vector<int>{10, 20, 30, 40}, 1),
                  (std::vector<std::pair<long long, long long>>{
                      {285, 0}, {2470, 0}, {8555, 0}, {20540, 0}}));
    }
    EXPECT_TRUE(eventually([&] { return mproc::testing::child_pids() == children_before; }))
        << "the outer pool left processes behind";
}

}  // namespace
