// AsyncResult::cancel: a task not yet started never starts; a running one is stopped by
// killing its worker alone, which is replaced; get() then throws CancelledError; a result
// already ready is not cancelled.

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/shared_memory.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) {
    return x * x;
}

// Marks that task `index` began, with its worker's pid, then sleeps `ms`: its argument is a
// handle, so each call travels as a frame of its own.
int mark_and_sleep(mproc::SharedArray<int> began, int index, int ms) {
    began[static_cast<std::size_t>(index)] = ::getpid();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return index;
}

// A task of numbers that sleeps `ms`: calls of numbers travel in batches.
int sleep_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}

using mproc::testing::eventually;

class PoolCancelTest : public mproc::testing::StartMethodTest {};

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolCancelTest,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

TEST_P(PoolCancelTest, CancellingARunningTaskKillsOnlyItsWorkerAndGetThrowsCancelledError) {
    mproc::Pool pool(options(2));
    mproc::SharedArray<int> began(4);
    auto running = pool.apply_async(mark_and_sleep, began, 0, 60000);
    auto other = pool.apply_async(mark_and_sleep, began, 1, 1500);
    ASSERT_TRUE(eventually([&] { return began[0] != 0 && began[1] != 0; }));
    EXPECT_TRUE(running.cancel());
    EXPECT_THROW(running.get(10s), mproc::CancelledError);
    EXPECT_TRUE(eventually([&] { return ::kill(began[0], 0) != 0; }))
        << "the worker running the cancelled task was not killed";
    EXPECT_EQ(::kill(began[1], 0), 0) << "the other worker was killed";
    EXPECT_EQ(other.get(30s), 1) << "the other worker's task was touched";
    // Its worker was replaced: the pool has two workers again, and goes on.
    std::vector<int> inputs(40, 30);
    EXPECT_EQ(pool.map(sleep_ms, inputs, 1).size(), 40u);
    EXPECT_EQ(pool.apply(square, 6), 36);
}

TEST_P(PoolCancelTest, ATaskCancelledBeforeItStartsNeverStarts) {
    mproc::Pool pool(options(1));
    mproc::SharedArray<int> began(8);
    auto first = pool.apply_async(mark_and_sleep, began, 0, 800);
    // Sent to the worker behind the first (two chunks in flight), or still queued.
    std::vector<mproc::AsyncResult<int>> queued;
    for (int index = 1; index < 6; ++index) {
        queued.push_back(pool.apply_async(mark_and_sleep, began, index, 10));
    }
    ASSERT_TRUE(eventually([&] { return began[0] != 0; }));
    for (std::size_t k = 0; k < queued.size(); k += 2) EXPECT_TRUE(queued[k].cancel());
    EXPECT_EQ(first.get(30s), 0) << "the running task was not cancelled";
    for (std::size_t k = 0; k < queued.size(); ++k) {
        const int index = static_cast<int>(k) + 1;
        if (k % 2 == 0) {
            EXPECT_THROW(queued[k].get(30s), mproc::CancelledError);
        } else {
            EXPECT_EQ(queued[k].get(30s), index);
        }
    }
    EXPECT_EQ(pool.apply(square, 3), 9);  // the queue is drained: every answer came
    for (std::size_t k = 0; k < queued.size(); k += 2) {
        EXPECT_EQ(began[k + 1], 0) << "cancelled task " << k + 1 << " began";
    }
}

TEST_P(PoolCancelTest, CancellingAFinishedResultReturnsFalseAndKeepsItsValue) {
    mproc::Pool pool(options(1));
    auto result = pool.apply_async(square, 7);
    result.wait();
    EXPECT_FALSE(result.cancel());
    EXPECT_EQ(result.get(), 49);
}

TEST_P(PoolCancelTest, CancellingAMapStopsItsTasksAndThePoolGoesOn) {
    mproc::Pool pool(options(2));
    std::vector<int> inputs(400, 50);  // 20 s of work over two workers
    auto mapped = pool.map_async(sleep_ms, inputs, 1);
    std::this_thread::sleep_for(200ms);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(mapped.cancel());
    EXPECT_THROW(mapped.get(10s), mproc::CancelledError);
    // Every task of the map is gone within a few seconds, not after 20 s of work.
    EXPECT_EQ(pool.apply(square, 5), 25);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_P(PoolCancelTest, CancellingABatchedCallOfNumbersLeavesTheOtherCallsOfItsBatch) {
    mproc::Pool pool(options(1));
    auto blocker = pool.apply_async(sleep_ms, 400);
    std::this_thread::sleep_for(50ms);
    // Made while the worker is busy: they gather into one batch.
    std::vector<mproc::AsyncResult<int>> calls;
    for (int ms = 1; ms <= 6; ++ms) calls.push_back(pool.apply_async(sleep_ms, ms));
    EXPECT_TRUE(calls[2].cancel());
    EXPECT_TRUE(calls[4].cancel());
    EXPECT_EQ(blocker.get(30s), 400);
    for (std::size_t k = 0; k < calls.size(); ++k) {
        if (k == 2 || k == 4) {
            EXPECT_THROW(calls[k].get(30s), mproc::CancelledError);
        } else {
            EXPECT_EQ(calls[k].get(30s), static_cast<int>(k) + 1);
        }
    }
}

TEST_P(PoolCancelTest, ACancelledTaskOfAWorkerThatIsKilledReleasesItsOtherChunks) {
    mproc::Pool pool(options(1));
    mproc::SharedArray<int> began(4);
    auto running = pool.apply_async(mark_and_sleep, began, 0, 60000);
    auto behind = pool.apply_async(mark_and_sleep, began, 1, 10);
    ASSERT_TRUE(eventually([&] { return began[0] != 0; }));
    EXPECT_TRUE(running.cancel());
    EXPECT_EQ(behind.get(30s), 1) << "the chunk behind the cancelled one was lost";
}

}  // namespace
