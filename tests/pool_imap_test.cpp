// imap and imap_unordered read their input lazily: a bounded window ahead of the consumer, over
// any input range, endless ones included; and the pool's lifecycle with such a range open.

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <fstream>
#include <functional>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/pool.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;

long twice(long x) {
    return 2 * x;
}
std::string text_of(long x) {
    return std::to_string(x);
}
long sleep_then_twice(long x) {
    std::this_thread::sleep_for(20ms);
    return 2 * x;
}

// The inputs the consumer's thread has read (through the transform below) and the elements it
// has consumed. An imap that reads far past its window fails its test rather than fill
// memory: past this many inputs ahead of the consumer, the input throws.
struct ReadCounter {
    long reads = 0;
    long consumed = 0;
};
ReadCounter counter;
constexpr long runaway_reads = 1'000'000;

struct RanAway : std::runtime_error {
    RanAway() : std::runtime_error("the imap read a million inputs ahead of its consumer") {}
};

long counted(long x) {
    if (++counter.reads - counter.consumed > runaway_reads) throw RanAway();
    return x;
}

// 0, 1, 2, ... for ever, each read counted.
auto endless_input() {
    counter = {};
    return std::views::iota(0L) | std::views::transform(counted);
}
auto counted_input(long n) {
    counter = {};
    return std::views::iota(0L, n) | std::views::transform(counted);
}

// The documented default window of a pool of `workers` (Pool::imap).
std::size_t default_window(std::size_t workers, std::size_t chunksize, bool numbers) {
    const std::size_t chunks = 4 * workers * chunksize;
    return numbers && chunksize == 1 ? std::max<std::size_t>(chunks, 4096 * workers) : chunks;
}

// Runs `scenario` in a forked child, killed past `deadline`: what it returns (or throws) is the
// failure, "" when it passed. The scenarios here would run for ever on an imap that reads its
// whole input first.
std::string in_child(const std::function<std::string()>& scenario,
                     std::chrono::seconds deadline = 60s) {
    int fds[2];
    if (::pipe(fds) != 0) return "pipe failed";
    const pid_t pid = ::fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
        ::close(fds[0]);
        std::string failure;
        try {
            failure = scenario();
        } catch (const std::exception& error) {
            failure = std::string("threw: ") + error.what();
        } catch (...) {
            failure = "threw something";
        }
        [[maybe_unused]] auto written = ::write(fds[1], failure.data(), failure.size());
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string failure;
    const auto end = std::chrono::steady_clock::now() + deadline;
    bool timed_out = false;
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd fd{fds[0], POLLIN, 0};
        if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
        char buffer[512];
        const auto got = ::read(fds[0], buffer, sizeof buffer);
        if (got <= 0) break;
        failure.append(buffer, static_cast<std::size_t>(got));
    }
    ::close(fds[0]);
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (timed_out) return "the scenario did not end within its deadline";
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "the scenario's process crashed";
    return failure;
}

std::size_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t pages = 0;
    std::size_t resident = 0;
    statm >> pages >> resident;
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

class PoolImapTest : public mproc::testing::StartMethodTest {};

TEST_P(PoolImapTest, ImapOverAnEndlessInputReturnsAtOnceAndYieldsItsFirstResultsInOrder) {
    EXPECT_EQ(in_child([&]() -> std::string {
                  mproc::Pool pool(options(2));
                  {
                      auto results = pool.imap(twice, endless_input());
                      long expected = 0;
                      for (auto it = results.begin(); expected < 3000; ++it, ++expected) {
                          if (*it != 2 * expected)
                              return "wrong value at " + std::to_string(expected);
                          ++counter.consumed;
                      }
                  }
                  // The range is gone with most of its input unread: the pool still works.
                  if (pool.map(twice, std::vector<long>{1, 2, 3}) != std::vector<long>{2, 4, 6})
                      return "the pool's map failed after the range was destroyed";
                  return "";
              }),
              "");
}

TEST_P(PoolImapTest, ImapUnorderedOverAnEndlessInputYieldsEachOfItsFirstResultsOnce) {
    EXPECT_EQ(in_child([&]() -> std::string {
                  mproc::Pool pool(options(2));
                  {
                      auto results = pool.imap_unordered(twice, endless_input());
                      std::set<long> seen;
                      auto it = results.begin();
                      for (int read = 0; read < 3000; ++read, ++it) {
                          const long value = *it;
                          ++counter.consumed;
                          if (value % 2 != 0 || value / 2 >= counter.reads)
                              return "a value of no input read: " + std::to_string(value);
                          if (!seen.insert(value).second)
                              return "a value twice: " + std::to_string(value);
                      }
                  }
                  if (pool.apply(twice, 21L) != 42) return "the pool's apply failed afterwards";
                  return "";
              }),
              "");
}

// Reads `elements` of results, checking after each that the consumer's thread has read no more
// than `window` inputs ahead of what was consumed.
template <class Results>
std::string check_window(Results& results, long elements, std::size_t window) {
    auto it = results.begin();
    for (long read = 0; read < elements && it != results.end(); ++read, ++it) {
        [[maybe_unused]] auto value = *it;
        ++counter.consumed;
        if (counter.reads - counter.consumed > static_cast<long>(window)) {
            return "read " + std::to_string(counter.reads) + " inputs with " +
                   std::to_string(counter.consumed) + " consumed, past a window of " +
                   std::to_string(window);
        }
    }
    if (counter.consumed != elements) return "the range ended early";
    return "";
}

TEST_P(PoolImapTest, ImapReadsNoMoreThanItsDefaultWindowAheadOfTheConsumer) {
    mproc::Pool pool(options(2));
    auto numbers = pool.imap(twice, counted_input(20000));
    EXPECT_EQ(check_window(numbers, 20000, default_window(2, 1, true)), "");
    auto texts = pool.imap(text_of, counted_input(2000), 3);
    EXPECT_EQ(check_window(texts, 2000, default_window(2, 3, false)), "");
}

TEST_P(PoolImapTest, ImapUnorderedReadsNoMoreThanItsDefaultWindowAheadOfTheConsumer) {
    mproc::Pool pool(options(2));
    auto numbers = pool.imap_unordered(twice, counted_input(20000));
    EXPECT_EQ(check_window(numbers, 20000, default_window(2, 1, true)), "");
    auto texts = pool.imap_unordered(text_of, counted_input(2000));
    EXPECT_EQ(check_window(texts, 2000, default_window(2, 1, false)), "");
}

TEST_P(PoolImapTest, ImapReadsNoMoreThanItsBuffersizeAheadOfTheConsumer) {
    mproc::Pool pool(options(2));
    auto numbers = pool.imap(twice, counted_input(5000), 1, 10);
    EXPECT_EQ(check_window(numbers, 5000, 10), "");
    auto chunks = pool.imap_unordered(text_of, counted_input(1000), 4, 9);
    EXPECT_EQ(check_window(chunks, 1000, 9), "");
    // A window smaller than a chunk holds the chunk.
    auto small = pool.imap(text_of, counted_input(100), 8, 3);
    EXPECT_EQ(check_window(small, 100, 8), "");
}

TEST_P(PoolImapTest, ImapOverAnEndlessInputKeepsMemoryFlat) {
    EXPECT_EQ(in_child(
                  [&]() -> std::string {
                      mproc::Pool pool(options(2));
                      auto results = pool.imap(twice, endless_input());
                      auto it = results.begin();
                      std::size_t after_warm_up = 0;
                      for (long read = 0; read < 200000; ++read, ++it) {
                          if (*it != 2 * read) return "wrong value at " + std::to_string(read);
                          ++counter.consumed;
                          if (read == 10000) after_warm_up = resident_bytes();
                      }
                      const std::size_t growth = resident_bytes() - after_warm_up;
                      if (growth > std::size_t{64} << 20) {
                          return "resident memory grew by " + std::to_string(growth >> 20) +
                                 " MiB over 190000 elements";
                      }
                      return "";
                  },
                  120s),
              "");
}

TEST_P(PoolImapTest, ClosedPoolFeedsAnImapOpenedBeforeCloseAsItIsRead) {
    EXPECT_EQ(in_child([&]() -> std::string {
                  mproc::Pool pool(options(2));
                  auto results = pool.imap(twice, endless_input());
                  auto finite = pool.imap_unordered(twice, counted_input(5000));
                  pool.close();
                  long expected = 0;
                  for (auto it = results.begin(); expected < 5000; ++it, ++expected) {
                      if (*it != 2 * expected) return "wrong value at " + std::to_string(expected);
                  }
                  long sum = 0;
                  for (long value : finite) sum += value;
                  if (sum != 4999L * 5000) return "the finite imap's sum is " + std::to_string(sum);
                  try {
                      pool.imap(twice, std::vector<long>{1});
                      return "imap after close() did not throw";
                  } catch (const mproc::StateError&) {
                  }
                  pool.join();
                  return "";
              }),
              "");
}

TEST_P(PoolImapTest, JoinWithAnOpenEndlessImapReturnsAndItsUnreadElementsThrowStateError) {
    EXPECT_EQ(in_child([&]() -> std::string {
                  mproc::Pool pool(options(2));
                  auto results = pool.imap(twice, endless_input());
                  auto it = results.begin();
                  for (long read = 0; read < 100; ++read, ++it) {
                      if (*it != 2 * read) return "wrong value at " + std::to_string(read);
                  }
                  pool.close();
                  // The window's tasks end meanwhile: join() finds the workers idle, kept up
                  // for the range's input.
                  std::this_thread::sleep_for(300ms);
                  pool.join();
                  // What was submitted before join() can still be read, then every element
                  // throws StateError.
                  long position = 100;
                  for (; position < 100 + 10000; ++position, ++it) {
                      try {
                          if (*it != 2 * position)
                              return "wrong value at " + std::to_string(position);
                      } catch (const mproc::StateError&) {
                          break;
                      }
                  }
                  if (position - 100 > static_cast<long>(default_window(2, 1, true)))
                      return "more than a window of elements read after join()";
                  for (int more = 0; more < 3; ++more) {
                      ++it;
                      try {
                          [[maybe_unused]] const long value = *it;
                          return "an element after join() did not throw";
                      } catch (const mproc::StateError&) {
                      }
                  }
                  return "";
              }),
              "");
}

TEST_P(PoolImapTest, PoolDestroyedWhileAnImapIsOpenLeavesItsRangeSafeToRead) {
    EXPECT_EQ(in_child([&]() -> std::string {
                  std::optional<mproc::Pool> pool(std::in_place, options(2));
                  auto ordered = pool->imap(sleep_then_twice, endless_input(), 1, 16);
                  auto unordered = pool->imap_unordered(
                      twice, std::views::iota(0L) | std::views::transform(counted));
                  auto it = ordered.begin();
                  if (*it != 0) return "wrong first value";
                  pool.reset();
                  int values = 0;
                  int refused = 0;
                  for (int read = 0; read < 1000; ++read) {
                      ++it;
                      try {
                          [[maybe_unused]] const long value = *it;
                          ++values;
                      } catch (const mproc::StateError&) {
                          ++refused;
                      }
                  }
                  if (refused == 0) return "no element failed after the pool was destroyed";
                  int unordered_values = 0;
                  // Past its window, every element throws.
                  const int bound = static_cast<int>(default_window(2, 1, true)) + 2000;
                  for (auto u = unordered.begin(); unordered_values < bound; ++u) {
                      try {
                          [[maybe_unused]] const long value = *u;
                          ++unordered_values;
                      } catch (const mproc::StateError&) {
                          break;
                      }
                  }
                  if (unordered_values == bound) return "the unordered range read on for ever";
                  return "";
              }),
              "");
}

TEST_P(PoolImapTest, ImapDestroyedWithTasksRunningLetsThePoolEndWithoutItsInput) {
    EXPECT_EQ(in_child([&]() -> std::string {
                  const auto start = std::chrono::steady_clock::now();
                  {
                      mproc::Pool pool(options(2));
                      auto results = pool.imap(sleep_then_twice, endless_input(), 1, 4);
                      if (*results.begin() != 0) return "wrong first value";
                  }
                  // The pool ran the window's tasks, not the endless input.
                  if (std::chrono::steady_clock::now() - start > 30s) return "the pool took long";
                  return "";
              }),
              "");
}

struct InputBroke : std::runtime_error {
    InputBroke() : std::runtime_error("the input broke") {}
};
// Past the first window (read by imap itself), so that a step of the range reads it.
constexpr long breaking_input = 20000;
long breaks_at_20000(long x) {
    if (x == breaking_input) throw InputBroke();
    return x;
}

TEST_P(PoolImapTest, InputThatThrowsThrowsFromTheStepThatReadItAndEndsTheRange) {
    mproc::Pool pool(options(2));
    auto results = pool.imap(twice, std::views::iota(0L) | std::views::transform(breaks_at_20000));
    std::vector<long> values;
    int broke = 0;
    for (auto it = results.begin();;) {
        try {
            if (it == results.end()) break;
            values.push_back(*it);
            ++it;
        } catch (const InputBroke&) {
            ++broke;
        }
    }
    EXPECT_EQ(broke, 1);
    std::vector<long> expected;
    for (long x = 0; x < breaking_input; ++x) expected.push_back(2 * x);
    EXPECT_EQ(values, expected);
}

TEST_P(PoolImapTest, ImapHasASizeOnlyWhenItsInputHasOne) {
    mproc::Pool pool(options(2));
    const std::vector<long> inputs{1, 2, 3};
    auto sized = pool.imap(twice, inputs);
    static_assert(std::ranges::sized_range<decltype(sized)>);
    static_assert(!std::ranges::sized_range<decltype(pool.imap(twice, std::views::iota(0L)))>);
    static_assert(std::ranges::input_range<decltype(pool.imap_unordered(twice, inputs))>);
    EXPECT_EQ(sized.size(), 3u);
    std::vector<long> values;
    for (long value : sized) values.push_back(value);
    EXPECT_EQ(values, (std::vector<long>{2, 4, 6}));
}

TEST_P(PoolImapTest, ImapOfAnRvalueContainerOwnsIt) {
    mproc::Pool pool(options(2));
    auto results = pool.imap(text_of, std::vector<long>(3000, 7), 5);
    std::size_t read = 0;
    for (const std::string& value : results) {
        EXPECT_EQ(value, "7");
        ++read;
    }
    EXPECT_EQ(read, 3000u);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolImapTest,
                         ::testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                           mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName{});

}  // namespace
