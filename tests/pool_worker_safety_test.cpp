// A worker never runs the caller's code, whatever its task does to its results or to its link
// to the pool; and a value whose own save or load throws is a SerializationError wherever it
// travels.

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "process_helpers.hpp"

namespace app {

// A type whose save refuses, and one whose load refuses: user code that throws while mproc
// encodes or decodes it.
struct NoSave {
    int value = 0;
    template <class Archive>
    void save(Archive&) const {
        throw std::runtime_error("no save");
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(value);
    }
};

struct NoLoad {
    int value = 0;
    template <class Archive>
    void save(Archive& ar) const {
        ar(value);
    }
    template <class Archive>
    void load(Archive&) {
        throw std::runtime_error("no load");
    }
};

}  // namespace app

namespace {

using namespace std::chrono_literals;
using mproc::testing::StartMethodTest;

int square(int x) {
    return x * x;
}

std::vector<mproc::SharedArray<int>> handles(int count) {
    std::vector<mproc::SharedArray<int>> arrays;
    for (int i = 0; i < count; ++i) arrays.emplace_back(1);
    return arrays;
}

// Closes every descriptor but the standard ones, the worker's connection to its pool among
// them. (glibc may lack the close_range wrapper; the system call is there since Linux 5.9.)
int close_every_descriptor(int x) {
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    return x;
}
// The same, with a result that is not a number: it can reach the pool only through the link.
std::string close_every_descriptor_as_text(int x) {
    return std::to_string(close_every_descriptor(x));
}

int read_value(app::NoSave value) {
    return value.value;
}
app::NoLoad make_no_load(int x) {
    return app::NoLoad{x};
}
app::NoSave make_no_save(int x) {
    return app::NoSave{x};
}

// What a scenario run in a child found wrong, one line each.
class Findings {
  public:
    void expect(bool ok, const std::string& what) {
        if (!ok) text_ += what + "\n";
    }
    // Expects call to throw E, whose message then goes to check.
    template <class E>
    void expect_throw(const std::function<void()>& call, const std::string& what,
                      const std::function<void(const std::string&)>& check = {}) {
        try {
            call();
            text_ += what + ": nothing was thrown\n";
        } catch (const E& error) {
            if (check) check(error.what());
        } catch (const std::exception& error) {
            text_ += what + ": the wrong exception: " + error.what() + "\n";
        }
    }
    const std::string& text() const noexcept { return text_; }

  private:
    std::string text_;
};

// Runs scenario in a forked child and returns what it found wrong, or why it did not end well.
// The child has two minutes, then is killed: a broken build that runs the test's code in a
// worker, or hangs, cannot take the test program with it.
std::string run_in_child(const std::function<void(Findings&)>& scenario) {
    int report[2];
    if (::pipe(report) != 0) return "no pipe";
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(report[0]);
        Findings findings;
        try {
            scenario(findings);
        } catch (const std::exception& error) {
            findings.expect(false, std::string("the scenario threw: ") + error.what());
        }
        const std::string& text = findings.text();
        for (std::size_t sent = 0; sent < text.size();) {
            const ssize_t n = ::write(report[1], text.data() + sent, text.size() - sent);
            if (n <= 0) break;
            sent += static_cast<std::size_t>(n);
        }
        ::_exit(0);
    }
    ::close(report[1]);
    std::string found;
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    bool ended = false;
    while (!ended && std::chrono::steady_clock::now() < deadline) {
        pollfd fd{report[0], POLLIN, 0};
        if (::poll(&fd, 1, 100) <= 0) continue;
        char chunk[512];
        const ssize_t n = ::read(report[0], chunk, sizeof chunk);
        if (n > 0) found.append(chunk, static_cast<std::size_t>(n));
        ended = n == 0;
    }
    ::close(report[0]);
    if (!ended) {
        ::kill(child, SIGKILL);
        found += "the child did not end within two minutes\n";
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    if (ended && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        found += "the child ended with wait status " + std::to_string(status) + "\n";
    }
    return found;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// The message of the SerializationError that call throws, or a failure.
std::string serialization_error_of(const std::function<void()>& call) {
    try {
        call();
    } catch (const mproc::SerializationError& error) {
        return error.what();
    } catch (const std::exception& error) {
        ADD_FAILURE() << "expected a SerializationError, got: " << error.what();
        return {};
    }
    ADD_FAILURE() << "expected a SerializationError, nothing was thrown";
    return {};
}

class PoolWorkerSafetyTest : public StartMethodTest {};

// The scenarios below break a worker's result or its link: each runs in a child, since a build
// with the fault would go on with the test program's code inside the worker.

TEST_P(PoolWorkerSafetyTest, AResultWithMoreHandlesThanAFrameCarriesFailsThatTaskAlone) {
    EXPECT_EQ(run_in_child([&](Findings& findings) {
                  mproc::Pool pool(options(2));
                  auto too_many = pool.apply_async(handles, 300);
                  auto few = pool.apply_async(handles, 3);
                  findings.expect_throw<mproc::SerializationError>(
                      [&] { too_many.get(); }, "300 handles",
                      [&](const std::string& message) {
                          findings.expect(
                              contains(message, "300") && contains(message, "253") &&
                                  contains(message, "one SharedArray"),
                              "the message says the count, the limit and what to do: " + message);
                      });
                  findings.expect(few.get().size() == 3, "3 handles come back");
                  findings.expect(pool.map(square, std::vector{1, 2, 3}) == std::vector{1, 4, 9},
                                  "a later map runs");
              }),
              "");
}

TEST_P(PoolWorkerSafetyTest, TheTasksOfAChunkWhoseHandlesTogetherPassTheLimitFailFromThere) {
    EXPECT_EQ(
        run_in_child([&](Findings& findings) {
            mproc::Pool pool(options(1));
            auto results = pool.imap(handles, std::vector{100, 100, 100, 1}, 4);
            std::vector<std::size_t> sizes;
            int failures = 0;
            for (auto it = results.begin(); it != results.end(); ++it) {
                try {
                    sizes.push_back((*it).size());
                } catch (const mproc::SerializationError&) {
                    ++failures;
                }
            }
            findings.expect(failures == 1, "one task fails");
            findings.expect(sizes == std::vector<std::size_t>{100, 100, 1}, "the others come back");
            findings.expect(pool.map(square, std::vector{1, 2, 3}) == std::vector{1, 4, 9},
                            "a later map runs");
        }),
        "");
}

// The worker ends (its link is broken) rather than unwind. A value that is a number still
// arrives: the pool reads it from the worker's ResultArea. Another value is lost with the
// link, and the task, which ran to its end each time, fails once workers have died of it
// three times (the pool cannot tell its death from a death between tasks).
TEST_P(PoolWorkerSafetyTest,
       ATaskThatClosesItsWorkersConnectionFailsWithWorkerLostAndThePoolGoesOn) {
    EXPECT_EQ(
        run_in_child([&](Findings& findings) {
            mproc::Pool pool(options(2));
            findings.expect(pool.apply(close_every_descriptor, 1) == 1, "a number still arrives");
            findings.expect_throw<mproc::WorkerLost>(
                [&] { pool.apply(close_every_descriptor_as_text, 1); }, "closing every descriptor");
            findings.expect(pool.map(square, std::vector{1, 2, 3}) == std::vector{1, 4, 9},
                            "a later map runs");
            findings.expect(pool.apply(square, 5) == 25, "a later apply runs");
        }),
        "");
}

// The code after the pool's scope counts how often it runs: once, in the child, and never in a
// worker that unwound through its copy of the child's stack.
TEST_P(PoolWorkerSafetyTest, NoCodeOfTheCallerRunsInAWorkerWhoseResultCannotBeSent) {
    mproc::SharedArray<int> runs(1);
    EXPECT_EQ(run_in_child([&](Findings&) {
                  try {
                      mproc::Pool pool(options(2));
                      try {
                          pool.apply(handles, 300);
                      } catch (const std::exception&) {
                      }
                      try {
                          pool.apply(close_every_descriptor_as_text, 1);
                      } catch (const std::exception&) {
                      }
                  } catch (const std::exception&) {
                  }
                  std::atomic_ref<int>(runs[0]).fetch_add(1);
              }),
              "");
    EXPECT_EQ(std::atomic_ref<int>(runs[0]).load(), 1);
}

TEST_P(PoolWorkerSafetyTest, AnArgumentWhoseSaveThrowsIsASerializationErrorThatKeepsItsMessage) {
    mproc::Pool pool(options(1));
    const std::string applied =
        serialization_error_of([&] { pool.apply_async(read_value, app::NoSave{}); });
    EXPECT_TRUE(contains(applied, "no save")) << applied;
    EXPECT_TRUE(contains(applied, "app::NoSave")) << applied;
    const std::string mapped =
        serialization_error_of([&] { pool.map(read_value, std::vector<app::NoSave>(3)); });
    EXPECT_TRUE(contains(mapped, "no save")) << mapped;
    EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST_P(PoolWorkerSafetyTest, AResultWhoseSaveThrowsFailsItsTaskWithASerializationError) {
    mproc::Pool pool(options(1));
    const std::string message = serialization_error_of([&] { pool.apply(make_no_save, 2); });
    EXPECT_TRUE(contains(message, "no save")) << message;
    EXPECT_TRUE(contains(message, "app::NoSave")) << message;
    EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST_P(PoolWorkerSafetyTest, AResultWhoseLoadThrowsIsASerializationErrorThatKeepsItsMessage) {
    mproc::Pool pool(options(1));
    const std::string message = serialization_error_of([&] { pool.apply(make_no_load, 2); });
    EXPECT_TRUE(contains(message, "no load")) << message;
    EXPECT_TRUE(contains(message, "app::NoLoad")) << message;
    EXPECT_EQ(pool.apply(square, 4), 16);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolWorkerSafetyTest,
                         ::testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                           mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

TEST(QueueSerialization, AnItemWhoseSaveThrowsIsASerializationErrorThatKeepsItsMessage) {
    mproc::Queue<app::NoSave> queue;
    const std::string message = serialization_error_of([&] { queue.put(app::NoSave{}); });
    EXPECT_TRUE(contains(message, "no save")) << message;
    EXPECT_TRUE(contains(message, "app::NoSave")) << message;
}

TEST(QueueSerialization, AnItemWhoseLoadThrowsIsASerializationErrorThatKeepsItsMessage) {
    mproc::Queue<app::NoLoad> queue;
    queue.put(app::NoLoad{1});
    const std::string message = serialization_error_of([&] { queue.get(); });
    EXPECT_TRUE(contains(message, "no load")) << message;
    EXPECT_TRUE(contains(message, "app::NoLoad")) << message;
}

}  // namespace
