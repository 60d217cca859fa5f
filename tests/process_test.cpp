// Specifies include/mproc/process.hpp: one child process running one callable, as Python's
// multiprocessing.Process.
//
// Children prove what they did through an mproc::SharedArray<int>, which a forked child shares
// with its parent, or through their exit code. A child that must stay alive while the test looks
// at it waits for the test to set a flag in shared memory, so no test depends on how fast a
// process starts; every such wait ends by itself after a generous limit.

#include "mproc/process.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/start_method.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::Process;
using mproc::ProcessOptions;
using mproc::SharedArray;

// How long any wait of a test may last before the test gives up: far beyond what a loaded
// machine needs, short enough that a broken build fails rather than hangs.
constexpr auto kPatience = 30s;

int load(const SharedArray<int>& cells, std::size_t i) {
    return std::atomic_ref<int>(cells[i]).load();
}
void store(const SharedArray<int>& cells, std::size_t i, int value) {
    std::atomic_ref<int>(cells[i]).store(value);
}

// Polls pred until it holds or timeout passes; returns its last value.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = kPatience) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

// Child body: waits until the parent sets flags[0], for at most a minute.
void wait_for_release(SharedArray<int> flags) {
    eventually([&] { return load(flags, 0) != 0; }, 60s);
}

// Child body: writes a + b to out[0].
void write_sum(SharedArray<int> out, int a, int b) {
    store(out, 0, a + b);
}

struct ParseFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void throw_parse_failure() {
    throw ParseFailure("bad header in record 12");
}

// True when no process, zombie or alive, has this pid.
bool process_is_gone(pid_t pid) {
    return ::kill(pid, 0) == -1 && errno == ESRCH;
}

// Sets flags[0] on destruction, so that a child waiting for release ends even when an
// assertion returns from the test early.
struct Release {
    SharedArray<int> flags;
    ~Release() { store(flags, 0, 1); }
};

// What a child writes to one of its standard descriptors (the child inherits them at fork), in
// a temporary file: a file rather than a pipe, so that a long message cannot block the child
// while the parent waits in join().
class OutputOfChild {
  public:
    explicit OutputOfChild(int fd) : fd_(fd), file_(std::tmpfile()) {}
    ~OutputOfChild() { std::fclose(file_); }

    // Starts p with its descriptor fd pointing at the file; the parent's stays as it was.
    void start(Process& p) {
        std::fflush(nullptr);
        const int saved = ::dup(fd_);
        ::dup2(::fileno(file_), fd_);
        try {
            p.start();
        } catch (...) {
            ::dup2(saved, fd_);
            ::close(saved);
            throw;
        }
        ::dup2(saved, fd_);
        ::close(saved);
    }

    std::string text() {
        std::string out;
        std::rewind(file_);
        char buffer[4096];
        while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, file_)) {
            out.append(buffer, n);
        }
        return out;
    }

  private:
    int fd_;
    std::FILE* file_;
};

// --- Running the callable -----------------------------------------------------------------

TEST(Process, ChildRunsTheFunctionWithItsArguments) {
    SharedArray<int> out(1);
    Process p(&write_sum, out, 3, 4);
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(load(out, 0), 7);
}

TEST(Process, CapturingLambdaRunsUnderFork) {
    SharedArray<int> out(1);
    const int captured = 41;
    Process p([out, captured] { store(out, 0, captured + 1); });
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(load(out, 0), 42);
}

TEST(Process, StringLiteralArgumentReachesTheChild) {
    SharedArray<int> out(1);
    Process p([](SharedArray<int> cells, const char* text) { store(cells, 0, std::strlen(text)); },
              out, "hello");
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(load(out, 0), 5);
}

TEST(Process, OutputBufferedByTheChildIsFlushedWhenItEnds) {
    OutputOfChild out(STDOUT_FILENO);
    Process p([] { std::printf("no newline yet"); });
    out.start(p);
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(out.text(), "no newline yet");
}

// --- exitcode -------------------------------------------------------------------------------

TEST(Process, ExitcodeIsNulloptBeforeStart) {
    Process p([] {});
    EXPECT_EQ(p.exitcode(), std::nullopt);
}

TEST(Process, ExitcodeIsNulloptWhileRunning) {
    SharedArray<int> flags(1);
    Process p(&wait_for_release, flags);
    p.start();
    {
        Release release{flags};
        EXPECT_EQ(p.exitcode(), std::nullopt);
    }
    ASSERT_TRUE(p.join(kPatience));
}

TEST(Process, ExitcodeIsZeroWhenTheFunctionReturns) {
    Process p([] {});
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, ExitcodeIsTheValuePassedToStdExit) {
    Process p([] { std::exit(7); });
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), 7);
}

TEST(Process, ExitcodeIsOneWhenTheFunctionThrows) {
    OutputOfChild err(STDERR_FILENO);
    Process p(&throw_parse_failure);
    err.start(p);
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), 1);
}

TEST(Process, ExitcodeIsOneWhenTheFunctionThrowsANonStdException) {
    OutputOfChild err(STDERR_FILENO);
    Process p([] { throw 42; });
    err.start(p);
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), 1);
}

TEST(Process, ExitcodeIsMinusTheSignalThatEndedTheChild) {
    Process p([] { ::raise(SIGUSR1); });
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), -SIGUSR1);
}

TEST(Process, ExceptionThatEndsTheChildIsPrintedToStderr) {
    OutputOfChild err(STDERR_FILENO);
    Process p(ProcessOptions{.name = "parser"}, &throw_parse_failure);
    err.start(p);
    ASSERT_TRUE(p.join(kPatience));
    const std::string text = err.text();
    EXPECT_NE(text.find("ParseFailure"), std::string::npos) << text;
    EXPECT_NE(text.find("bad header in record 12"), std::string::npos) << text;
    EXPECT_NE(text.find("parser"), std::string::npos) << text;
}

TEST(Process, ExitcodeIsMinusNineAfterKill) {
    SharedArray<int> flags(1);
    Process p(&wait_for_release, flags);
    Release release{flags};  // destroyed before p, whose destructor joins the child
    p.start();
    p.kill();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST(Process, ExitcodeIsMinusFifteenAfterTerminate) {
    SharedArray<int> flags(1);
    Process p(&wait_for_release, flags);
    Release release{flags};  // destroyed before p, whose destructor joins the child
    p.start();
    p.terminate();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST(Process, KillAfterTheChildEndedChangesNothing) {
    Process p([] {});
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    p.kill();
    p.terminate();
    EXPECT_EQ(p.exitcode(), 0);
}

// --- Misuse ---------------------------------------------------------------------------------

TEST(Process, StartingTwiceThrowsStateError) {
    Process p([] {});
    p.start();
    EXPECT_THROW(p.start(), mproc::StateError);
    ASSERT_TRUE(p.join(kPatience));
}

TEST(Process, JoinBeforeStartThrowsStateError) {
    Process p([] {});
    EXPECT_THROW(p.join(), mproc::StateError);
    EXPECT_THROW(p.join(1s), mproc::StateError);
}

TEST(Process, TerminateBeforeStartThrowsStateError) {
    Process p([] {});
    EXPECT_THROW(p.terminate(), mproc::StateError);
}

TEST(Process, KillBeforeStartThrowsStateError) {
    Process p([] {});
    EXPECT_THROW(p.kill(), mproc::StateError);
}

// Current behaviour of this build: only fork is implemented, so naming another start method
// makes start() throw StateError. Change this test when spawn arrives.
TEST(Process, SpawnStartMethodRunsTheFunctionInAFreshRunOfTheProgram) {
    SharedArray<int> out(1);
    Process p(ProcessOptions{.start_method = mproc::StartMethod::spawn}, &write_sum, out, 1, 2);
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_EQ(load(out, 0), 3);
}

TEST(Process, ProgramWideSpawnStartMethodAppliesToAProcessThatNamesNone) {
    struct RestoreFork {
        ~RestoreFork() { mproc::set_start_method(mproc::StartMethod::fork); }
    } restore;
    mproc::set_start_method(mproc::StartMethod::spawn);
    int captured = 0;
    Process capturing([captured] { (void)captured; });
    EXPECT_THROW(capturing.start(), mproc::StateError);  // a capture cannot travel
    EXPECT_EQ(capturing.pid(), 0);
    Process plain([] {});
    plain.start();
    ASSERT_TRUE(plain.join(kPatience));
    EXPECT_EQ(plain.exitcode(), 0);
}

// --- join, is_alive, pid ----------------------------------------------------------------------

TEST(Process, JoinWithTimeoutIsFalseWhileTheChildRuns) {
    SharedArray<int> flags(1);
    Process p(&wait_for_release, flags);
    Release release{flags};  // destroyed before p, whose destructor joins the child
    p.start();
    EXPECT_FALSE(p.join(100ms));
}

TEST(Process, JoinWithTimeoutIsTrueOnceTheChildEnded) {
    SharedArray<int> flags(1);
    Process p(&wait_for_release, flags);
    p.start();
    store(flags, 0, 1);
    EXPECT_TRUE(p.join(kPatience));
    EXPECT_EQ(p.exitcode(), 0);
}

// A timeout too long to add to the clock means "no deadline", as it does for Python's join.
TEST(Process, JoinWithTheLargestTimeoutWaitsForTheEnd) {
    SharedArray<int> out(1);
    Process p([out] {
        std::this_thread::sleep_for(100ms);
        store(out, 0, 1);
    });
    p.start();
    EXPECT_TRUE(p.join(std::chrono::milliseconds::max()));
    EXPECT_EQ(load(out, 0), 1);
}

TEST(Process, JoinWithoutTimeoutWaitsForTheEnd) {
    SharedArray<int> out(1);
    Process p([out] {
        std::this_thread::sleep_for(100ms);
        store(out, 0, 1);
    });
    p.start();
    p.join();
    EXPECT_EQ(load(out, 0), 1);
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, IsAliveIsFalseBeforeStart) {
    Process p([] {});
    EXPECT_FALSE(p.is_alive());
}

TEST(Process, IsAliveIsTrueWhileTheChildRuns) {
    SharedArray<int> flags(1);
    Process p(&wait_for_release, flags);
    p.start();
    {
        Release release{flags};
        EXPECT_TRUE(p.is_alive());
    }
    ASSERT_TRUE(p.join(kPatience));
}

TEST(Process, IsAliveIsFalseAfterTheChildEnded) {
    Process p([] {});
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_FALSE(p.is_alive());
}

TEST(Process, IsAliveTurnsFalseWithoutJoin) {
    Process p([] {});
    p.start();
    EXPECT_TRUE(eventually([&] { return !p.is_alive(); }));
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, PidIsZeroBeforeStart) {
    Process p([] {});
    EXPECT_EQ(p.pid(), 0);
}

TEST(Process, PidIsTheChildsPid) {
    SharedArray<int> out(1);
    Process p([out] { store(out, 0, static_cast<int>(::getpid())); });
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_NE(p.pid(), ::getpid());
    EXPECT_EQ(p.pid(), load(out, 0));
}

// --- Names ----------------------------------------------------------------------------------

TEST(Process, DefaultNamesAreProcessNAndDistinct) {
    Process a([] {});
    Process b([] {});
    const std::regex pattern("Process-[0-9]+");
    EXPECT_TRUE(std::regex_match(a.name(), pattern)) << a.name();
    EXPECT_TRUE(std::regex_match(b.name(), pattern)) << b.name();
    EXPECT_NE(a.name(), b.name());
}

TEST(Process, NameFromOptionsIsKept) {
    Process p(ProcessOptions{.name = "loader"}, [] {});
    EXPECT_EQ(p.name(), "loader");
}

TEST(Process, DaemonFlagFromOptionsIsKept) {
    Process d(ProcessOptions{.daemon = true}, [] {});
    Process n([] {});
    EXPECT_TRUE(d.daemon());
    EXPECT_FALSE(n.daemon());
}

TEST(Process, ChildIsNamedAfterTheProcessForPs) {
    SharedArray<char> comm(16);
    Process p(ProcessOptions{.name = "loader"}, [comm] {
        ::prctl(PR_GET_NAME, comm.data());  // what ps and top show: at most 15 bytes
    });
    p.start();
    ASSERT_TRUE(p.join(kPatience));
    EXPECT_STREQ(comm.data(), "loader");
}

// --- Moving ---------------------------------------------------------------------------------

TEST(Process, MoveConstructedProcessCanBeJoined) {
    SharedArray<int> out(1);
    Process p(&write_sum, out, 20, 3);
    p.start();
    const pid_t pid = p.pid();
    Process moved(std::move(p));
    EXPECT_EQ(moved.pid(), pid);
    ASSERT_TRUE(moved.join(kPatience));
    EXPECT_EQ(moved.exitcode(), 0);
    EXPECT_EQ(load(out, 0), 23);
}

TEST(Process, MoveAssignedProcessCanBeJoined) {
    SharedArray<int> out(1);
    Process p(&write_sum, out, 30, 4);
    p.start();
    const pid_t pid = p.pid();
    Process target([] {});
    target = std::move(p);
    EXPECT_EQ(target.pid(), pid);
    ASSERT_TRUE(target.join(kPatience));
    EXPECT_EQ(target.exitcode(), 0);
    EXPECT_EQ(load(out, 0), 34);
}

// A moved-from Process should be valid but empty, like a moved-from std::thread: it has no
// child, so it answers as one that was never started, and its destructor does nothing.
TEST(Process, MovedFromProcessActsAsNeverStarted) {
    Process p([] {});
    p.start();
    Process moved(std::move(p));
    EXPECT_EQ(p.pid(), 0);  // NOLINT(bugprone-use-after-move): the moved-from state is the test
    EXPECT_FALSE(p.is_alive());
    EXPECT_EQ(p.exitcode(), std::nullopt);
    EXPECT_THROW(p.join(), mproc::StateError);
    ASSERT_TRUE(moved.join(kPatience));
}

// --- Destruction ----------------------------------------------------------------------------

TEST(Process, DestructorJoinsARunningChild) {
    SharedArray<int> out(1);
    pid_t pid = 0;
    {
        Process p([out] {
            std::this_thread::sleep_for(200ms);
            store(out, 0, 1);
        });
        p.start();
        pid = p.pid();
    }
    EXPECT_EQ(load(out, 0), 1) << "the destructor returned before the child ended";
    // Gone altogether: reaped as well as ended, so no zombie is left either.
    EXPECT_TRUE(process_is_gone(pid));
}

TEST(Process, DestructorTerminatesARunningDaemonPromptly) {
    std::optional<Process> p;
    p.emplace(ProcessOptions{.daemon = true}, [] { std::this_thread::sleep_for(60s); });
    p->start();
    const pid_t pid = p->pid();
    const auto before = std::chrono::steady_clock::now();
    p.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - before, 10s);
    EXPECT_TRUE(process_is_gone(pid));
}

TEST(Process, DestructorKillsADaemonThatIgnoresTerminate) {
    SharedArray<int> ready(1);
    std::optional<Process> p;
    p.emplace(ProcessOptions{.daemon = true}, [ready] {
        ::signal(SIGTERM, SIG_IGN);
        store(ready, 0, 1);
        std::this_thread::sleep_for(60s);
    });
    p->start();
    const pid_t pid = p->pid();
    ASSERT_TRUE(eventually([&] { return load(ready, 0) != 0; }));
    const auto before = std::chrono::steady_clock::now();
    p.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - before, 10s);
    EXPECT_TRUE(process_is_gone(pid));
}

TEST(Process, DestructorOfAnUnstartedProcessDoesNothing) {
    const auto children = mproc::testing::child_pids();
    {
        Process p([] {});
    }
    EXPECT_EQ(mproc::testing::child_pids(), children);
}

// --- Nothing left behind --------------------------------------------------------------------

TEST(Process, ChildrenDieWithTheirParent) {
    // Orphans come to this process instead of init, so that it can wait for the grandchild.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct NoLongerSubreaper {
        ~NoLongerSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
    } restore;

    SharedArray<int> pids(1);
    Process a(ProcessOptions{.daemon = true}, [pids] {
        // The grandchild would sleep for two minutes: far longer than the test waits for it.
        Process b([] { std::this_thread::sleep_for(120s); });
        b.start();
        store(pids, 0, b.pid());
        std::this_thread::sleep_for(120s);
        std::_Exit(0);  // not reached in the test: the test kills this process first
    });
    a.start();
    ASSERT_TRUE(eventually([&] { return load(pids, 0) != 0; }));
    const pid_t grandchild = load(pids, 0);

    a.kill();
    ASSERT_TRUE(a.join(kPatience));

    int status = 0;
    const bool reaped =
        eventually([&] { return ::waitpid(grandchild, &status, WNOHANG) == grandchild; }, 10s);
    if (!reaped) {
        ::kill(grandchild, SIGKILL);
        ::waitpid(grandchild, &status, 0);
    }
    ASSERT_TRUE(reaped) << "the grandchild outlived its parent by 10 s";
    EXPECT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

// A child whose parent dies while the child is still starting (before PR_SET_PDEATHSIG is set)
// misses the death signal and must find out for itself; it must end just as it would have by the
// signal, so that a subreaper sees one behaviour. Its parent exits the moment the fork returns,
// so many of the twenty grandchildren take that path.
TEST(Process, ChildOrphanedWhileStartingDiesBySigkillToo) {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct NoLongerSubreaper {
        ~NoLongerSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
    } restore;

    constexpr int kGrandchildren = 20;
    SharedArray<int> pids(kGrandchildren);
    for (int i = 0; i < kGrandchildren; ++i) {
        Process a([pids, i] {
            Process b([] { std::this_thread::sleep_for(120s); });
            b.start();
            store(pids, i, b.pid());
            std::_Exit(0);
        });
        a.start();
        ASSERT_TRUE(a.join(kPatience));
        const pid_t grandchild = load(pids, i);
        ASSERT_GT(grandchild, 0);

        int status = 0;
        const bool reaped =
            eventually([&] { return ::waitpid(grandchild, &status, WNOHANG) == grandchild; }, 10s);
        if (!reaped) {
            ::kill(grandchild, SIGKILL);
            ::waitpid(grandchild, &status, 0);
        }
        ASSERT_TRUE(reaped) << "grandchild " << i << " outlived its parent by 10 s";
        ASSERT_TRUE(WIFSIGNALED(status)) << "grandchild " << i << " exited with "
                                         << WEXITSTATUS(status) << " instead of dying by SIGKILL";
        EXPECT_EQ(WTERMSIG(status), SIGKILL);
    }
}

TEST(Process, FiftyProcessesLeaveNoZombiesAndNoDescriptors) {
    SharedArray<int> out(50);
    const auto children = mproc::testing::child_pids();
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    for (int i = 0; i < 50; ++i) {
        Process p([out, i] { store(out, i, i + 1); });
        p.start();
        ASSERT_TRUE(p.join(kPatience));
        ASSERT_EQ(p.exitcode(), 0);
    }
    for (int i = 0; i < 50; ++i) EXPECT_EQ(load(out, i), i + 1);
    EXPECT_EQ(mproc::testing::child_pids(), children);
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
}

TEST(Process, FiftyProcessesDestroyedWithoutJoinLeaveNoZombies) {
    const auto children = mproc::testing::child_pids();
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    for (int i = 0; i < 50; ++i) {
        Process p([] {});
        p.start();
    }
    EXPECT_EQ(mproc::testing::child_pids(), children);
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
}

}  // namespace
