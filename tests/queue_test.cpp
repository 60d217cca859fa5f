// Queue and JoinableQueue: any number of processes put and get; nothing is lost or delivered
// twice, whatever the size of the items and whoever dies.

#include "mproc/queue.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/queue_core.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::JoinableQueue;
using mproc::Process;
using mproc::Queue;

std::vector<char> block_of(std::size_t size, char fill) {
    return std::vector<char>(size, fill);
}

int drain_into_sum(Queue<int> queue, int count) {
    int sum = 0;
    for (int i = 0; i < count; ++i) sum += queue.get(30s);
    return sum;
}

TEST(Queue, ItemsComeOutInTheOrderTheyWentIn) {
    Queue<std::string> queue;
    for (const char* word : {"one", "two", "three"}) queue.put(word);
    EXPECT_EQ(queue.get(), "one");
    EXPECT_EQ(queue.get(), "two");
    EXPECT_EQ(queue.get(), "three");
}

TEST(Queue, GetWithATimeoutOnAnEmptyQueueThrowsEmpty) {
    Queue<int> queue;
    EXPECT_THROW(queue.get(50ms), mproc::Empty);
}

TEST(Queue, PutWithATimeoutOnAFullQueueThrowsFull) {
    Queue<int> queue(2);
    queue.put(1);
    queue.put(2);
    EXPECT_TRUE(queue.full());
    EXPECT_THROW(queue.put(3, 50ms), mproc::Full);
    EXPECT_EQ(queue.get(), 1);
    queue.put(3, 50ms);
    EXPECT_EQ(queue.qsize(), 2u);
}

TEST(Queue, TryGetAndTryPutNeverWait) {
    Queue<int> queue(1);
    EXPECT_EQ(queue.try_get(), std::nullopt);
    EXPECT_TRUE(queue.try_put(7));
    EXPECT_FALSE(queue.try_put(8));
    EXPECT_EQ(queue.try_get(), 7);
}

TEST(Queue, QsizeAndEmptyFollowPutsAndGets) {
    Queue<int> queue;
    EXPECT_TRUE(queue.empty());
    queue.put(1);
    queue.put(2);
    EXPECT_EQ(queue.qsize(), 2u);
    queue.get();
    EXPECT_EQ(queue.qsize(), 1u);
    EXPECT_EQ(queue.maxsize(), 0u);
}

TEST(Queue, CloseWakesABlockedGetterWithStateError) {
    Queue<int> queue;
    std::thread closer([queue]() mutable {
        std::this_thread::sleep_for(100ms);
        queue.close();
    });
    EXPECT_THROW(queue.get(30s), mproc::StateError);
    closer.join();
}

TEST(Queue, ItemsLeftWhenClosedCanStillBeTakenButNoneAdded) {
    Queue<int> queue;
    queue.put(1);
    queue.close();
    EXPECT_THROW(queue.put(2), mproc::StateError);
    EXPECT_EQ(queue.get(), 1);
    EXPECT_THROW(queue.get(), mproc::StateError);
}

TEST(Queue, ASixtyFourMibItemTravelsWhole) {
    Queue<std::vector<char>> queue;
    Process producer([queue]() mutable { queue.put(block_of(64u << 20, 'q')); });
    producer.start();
    const auto item = queue.get(60s);
    producer.join();
    ASSERT_EQ(item.size(), 64u << 20);
    EXPECT_EQ(item.front(), 'q');
    EXPECT_EQ(item.back(), 'q');
}

TEST(Queue, ItemsOfMixedSizesSurviveTheRingGrowingAndWrapping) {
    Queue<std::vector<char>> queue;
    std::size_t put = 0;
    std::size_t taken = 0;
    for (int round = 0; round < 200; ++round) {
        const std::size_t size = static_cast<std::size_t>((round * 7919) % 100'000);
        queue.put(block_of(size, static_cast<char>('a' + round % 26)));
        ++put;
        if (round % 3 != 0) {
            const auto item = queue.get();
            const int expected_round = static_cast<int>(taken++);
            ASSERT_EQ(item.size(), static_cast<std::size_t>((expected_round * 7919) % 100'000));
            if (!item.empty()) {
                ASSERT_EQ(item[0], static_cast<char>('a' + expected_round % 26));
            }
        }
    }
    EXPECT_EQ(queue.qsize(), put - taken);
}

TEST(Queue, ManyProducersAndConsumersLoseNothingAndDuplicateNothing) {
    Queue<int> work;
    Queue<int> results;
    constexpr int producers = 3;
    constexpr int per_producer = 2000;
    std::vector<Process> processes;
    for (int p = 0; p < producers; ++p) {
        processes.emplace_back([work, p]() mutable {
            for (int i = 0; i < per_producer; ++i) work.put(p * 100'000 + i);
        });
    }
    for (int c = 0; c < 2; ++c) {
        processes.emplace_back([work, results]() mutable {
            while (true) {
                const int item = work.get();
                if (item < 0) return;
                results.put(item);
            }
        });
    }
    for (auto& process : processes) process.start();
    std::multiset<int> seen;
    for (int i = 0; i < producers * per_producer; ++i) seen.insert(results.get(60s));
    work.put(-1);
    work.put(-1);
    for (auto& process : processes) ASSERT_TRUE(process.join(60s));
    std::multiset<int> expected;
    for (int p = 0; p < producers; ++p) {
        for (int i = 0; i < per_producer; ++i) expected.insert(p * 100'000 + i);
    }
    EXPECT_EQ(seen, expected);
}

TEST(Queue, AQueueIsAValidPoolTaskArgument) {
    mproc::Pool pool(2);
    Queue<int> queue;  // made after the workers: it reaches them as descriptors
    for (int i = 1; i <= 100; ++i) queue.put(i);
    const auto sums = pool.starmap(
        drain_into_sum, std::vector<std::pair<Queue<int>, int>>{{queue, 50}, {queue, 50}});
    EXPECT_EQ(sums[0] + sums[1], 5050);
    EXPECT_TRUE(queue.empty());
}

TEST(Queue, AProducerThatDiesAfterItsPutsLosesNothing) {
    Queue<int> queue;
    Process producer([queue]() mutable {
        for (int i = 0; i < 100; ++i) queue.put(i);
        ::raise(SIGKILL);
    });
    producer.start();
    ASSERT_TRUE(producer.join(30s));
    EXPECT_EQ(producer.exitcode(), -SIGKILL);
    int sum = 0;
    for (int i = 0; i < 100; ++i) sum += queue.get(5s);
    EXPECT_EQ(sum, 4950);
}

TEST(Queue, AProducerKilledInTheMiddleOfPutsLeavesOnlyWholeItems) {
    Queue<std::vector<char>> queue;
    for (int attempt = 0; attempt < 5; ++attempt) {
        Process producer([queue]() mutable {
            for (int i = 0;; ++i) queue.put(block_of(1u << 20, static_cast<char>('a' + i % 26)));
        });
        producer.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + 15 * attempt));
        producer.kill();
        ASSERT_TRUE(producer.join(30s));
        while (auto item = queue.try_get()) {
            ASSERT_EQ(item->size(), 1u << 20);
            ASSERT_EQ(item->front(), item->back());
        }
    }
    queue.put(block_of(10, 'z'));  // and the queue still works
    EXPECT_EQ(queue.get(5s), block_of(10, 'z'));
}

TEST(Queue, AGetterThatDiesWhileWaitingLeavesTheQueueToTheOthers) {
    Queue<int> queue;
    Process getter([queue]() mutable { queue.get(); });
    getter.start();
    std::this_thread::sleep_for(100ms);
    getter.kill();
    ASSERT_TRUE(getter.join(30s));
    queue.put(5);
    EXPECT_EQ(queue.get(5s), 5);
}

// Forwards items from one queue to another until it takes a negative one.
void forward(Queue<int> from, Queue<int> to) {
    for (int item = from.get(); item >= 0; item = from.get()) to.put(item);
}

// Reports the size of each block it takes, until it takes an empty one.
void report_sizes(Queue<std::vector<char>> from, Queue<int> sizes) {
    for (auto item = from.get(); !item.empty(); item = from.get()) {
        sizes.put(static_cast<int>(item.size()));
    }
}

// Waits for `size` among the sizes reported, skipping those of blocks put before it.
void wait_for_size(Queue<int>& sizes, int size) {
    int reported = sizes.get(30s);
    while (reported != size) reported = sizes.get(30s);
}

// --- A sleeper that dies once a wake-up has reached it, before it takes a lock again -------

// Ends the process where a sleep on a queue has just ended.
void die_when_woken() noexcept {
    ::_exit(0);
}

// Waits until the process sleeps in a futex (/proc/<pid>/syscall names syscall 202).
void wait_until_asleep(const Process& process) {
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    std::string syscall;
    while (std::chrono::steady_clock::now() < give_up) {
        std::ifstream("/proc/" + std::to_string(process.pid()) + "/syscall") >> syscall;
        if (syscall == "202") return;
        std::this_thread::sleep_for(5ms);
    }
    FAIL() << "process " << process.pid() << " never went to sleep";
}

// The next item, or nullopt when none comes within the timeout.
std::optional<int> get_within(Queue<int>& queue, std::chrono::seconds timeout) {
    try {
        return queue.get(timeout);
    } catch (const mproc::Empty&) {
        return std::nullopt;
    }
}

TEST(Queue, APutterWokenForRoomThatDiesBeforeTakingItLeavesNoOtherPutterAsleepBesideTheRoom) {
    Queue<int> queue(1);
    queue.put(0);
    Process doomed([queue]() mutable {
        mproc::detail::queue_sleeper_woken_hook = die_when_woken;
        queue.put(1);
    });
    doomed.start();
    wait_until_asleep(doomed);
    Process survivor([queue]() mutable { queue.put(2); });
    survivor.start();
    wait_until_asleep(survivor);
    // Wakes the doomed putter, asleep first, which dies with the wake-up for this room.
    EXPECT_EQ(queue.get(30s), 0);
    ASSERT_TRUE(doomed.join(30s));
    EXPECT_EQ(get_within(queue, 5s), 2) << "the surviving putter stayed asleep beside the room";
    if (!survivor.join(5s)) survivor.kill();
    ASSERT_TRUE(survivor.join(30s));
}

TEST(Queue, AGetterWokenForAnItemThatDiesBeforeTakingItLeavesNoOtherGetterAsleepBesideTheItem) {
    Queue<int> work;
    Queue<int> results;
    Process doomed([work]() mutable {
        mproc::detail::queue_sleeper_woken_hook = die_when_woken;
        work.get();
    });
    doomed.start();
    wait_until_asleep(doomed);
    Process survivor(forward, work, results);
    survivor.start();
    wait_until_asleep(survivor);
    work.put(7);  // wakes the doomed getter, asleep first, which dies with the wake-up
    ASSERT_TRUE(doomed.join(30s));
    EXPECT_EQ(get_within(results, 5s), 7) << "the surviving getter stayed asleep beside the item";
    work.put(-1);
    ASSERT_TRUE(survivor.join(30s));
}

TEST(Queue, PutsInQuickSuccessionWakeEveryGetterAsleep) {
    Queue<int> work;
    Queue<int> results;
    constexpr int getters = 3;
    std::vector<Process> processes;
    for (int g = 0; g < getters; ++g) processes.emplace_back(forward, work, results);
    for (auto& process : processes) process.start();
    for (int round = 0; round < 20; ++round) {
        std::this_thread::sleep_for(20ms);  // the getters are asleep again, most rounds
        for (int g = 0; g < getters; ++g) work.put(round * getters + g);
        int sum = 0;
        for (int g = 0; g < getters; ++g) sum += results.get(30s);
        ASSERT_EQ(sum, 3 * round * getters + 3);
    }
    for (int g = 0; g < getters; ++g) work.put(-1);
    for (auto& process : processes) ASSERT_TRUE(process.join(30s));
}

TEST(Queue, GettersKilledAsleepOrJustWokenKeepNoOtherGetterAsleep) {
    Queue<int> work;
    Queue<int> results;
    Process survivor(forward, work, results);
    survivor.start();
    for (int attempt = 0; attempt < 4; ++attempt) {
        std::vector<Process> doomed;
        for (int d = 0; d < 2; ++d) doomed.emplace_back(forward, work, Queue<int>());
        for (auto& process : doomed) process.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + 10 * attempt));
        // Some of these wake a doomed getter, which may die before it takes the lock again.
        for (int i = 0; i < 3; ++i) work.put(i);
        for (auto& process : doomed) process.kill();
        for (auto& process : doomed) ASSERT_TRUE(process.join(30s));
        // The survivor sleeps beside the dead, and each item still reaches it (after whichever
        // of the first three it took).
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(10ms);
            work.put(100 + i);
            int item = results.get(30s);
            while (item < 100) item = results.get(30s);
            EXPECT_EQ(item, 100 + i);
        }
    }
    work.put(-1);
    ASSERT_TRUE(survivor.join(30s));
}

TEST(Queue, AGetterKeepsBeingWokenAfterAPutterIsKilledInTheMiddleOfPuts) {
    Queue<std::vector<char>> work;
    Queue<int> sizes;
    Process getter(report_sizes, work, sizes);
    getter.start();
    for (int attempt = 0; attempt < 4; ++attempt) {
        Process producer([work]() mutable {
            for (;;) work.put(block_of(1u << 20, 'p'));
        });
        producer.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(10 + 10 * attempt));
        producer.kill();
        ASSERT_TRUE(producer.join(30s));
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(10ms);
            work.put(block_of(10, 'z'));
            wait_for_size(sizes, 10);
        }
    }
    work.put({});
    ASSERT_TRUE(getter.join(30s));
}

// --- A putter and a getter on different CPUs: each side has its own lock -------------------

// An item that says which it is: `number` in every int, so that a torn item shows.
std::vector<int> numbered_item(int number, std::size_t ints) {
    return std::vector<int>(ints, number);
}
bool is_whole(const std::vector<int>& item) {
    return std::all_of(item.begin(), item.end(), [&](int value) { return value == item[0]; });
}

TEST(Queue, AGetterInAnotherProcessTakesEveryItemWholeAndInOrderWhileTheRingGrowsManyTimes) {
    Queue<std::vector<int>> queue;
    constexpr int doublings = 22;  // up to 2 Mi ints, 8 MiB, from an initial ring of 64 KiB
    constexpr int small_between = 40;
    Process producer([queue]() mutable {
        int number = 0;
        for (int doubling = 0; doubling < doublings; ++doubling) {
            for (int i = 0; i < small_between; ++i) queue.put(numbered_item(number++, 3));
            queue.put(numbered_item(number++, std::size_t{1} << doubling));
        }
    });
    producer.start();
    int number = 0;
    for (int doubling = 0; doubling < doublings; ++doubling) {
        for (int i = 0; i <= small_between; ++i) {
            const auto item = queue.get(60s);
            const std::size_t expected_ints = i < small_between ? 3 : std::size_t{1} << doubling;
            ASSERT_EQ(item.size(), expected_ints);
            ASSERT_EQ(item.front(), number++);
            ASSERT_TRUE(is_whole(item));
        }
    }
    ASSERT_TRUE(producer.join(60s));
    EXPECT_EQ(producer.exitcode(), 0);
    EXPECT_TRUE(queue.empty());
}

constexpr int put_after_the_kill = 1'000'000;

// Gets numbered items until an empty one, and reports how many came from the producer (numbers
// from 0 up without a gap, each whole), then how many of those put after the kill followed them,
// in order; -1 for an item out of place or torn.
void check_numbered_items(Queue<std::vector<int>> work, Queue<int> report) {
    int produced = 0;
    int afterwards = 0;
    for (auto item = work.get(); !item.empty(); item = work.get()) {
        if (!is_whole(item)) {
            report.put(-1);
            return;
        }
        if (item[0] < put_after_the_kill && item[0] == produced && afterwards == 0) {
            ++produced;
        } else if (item[0] == put_after_the_kill + afterwards) {
            ++afterwards;
        } else {
            report.put(-1);
            return;
        }
    }
    report.put(produced);
    report.put(afterwards);
}

TEST(Queue, APutterKilledInTheMiddleOfPutsWhileAnotherProcessGetsLeavesWholeItemsInOrder) {
    for (int attempt = 0; attempt < 4; ++attempt) {
        Queue<std::vector<int>> work;
        Queue<int> report;
        Process getter(check_numbered_items, work, report);
        Process producer([work]() mutable {
            for (int number = 0; number < put_after_the_kill; ++number) {
                work.put(numbered_item(number, 16 * 1024));
            }
        });
        getter.start();
        producer.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + 10 * attempt));
        producer.kill();
        ASSERT_TRUE(producer.join(30s));
        for (int number = 0; number < 3; ++number) {
            work.put(numbered_item(put_after_the_kill + number, 8));
        }
        work.put({});
        const int produced = report.get(60s);
        ASSERT_GE(produced, 0) << "an item came torn or out of order";
        EXPECT_EQ(report.get(60s), 3) << "items put after the kill went missing";
        ASSERT_TRUE(getter.join(30s));
    }
}

TEST(Queue, AGetterAsleepGetsTheNextPutterItemsAfterAPutterDiesHoldingThePutLock) {
    Queue<std::vector<char>> work;
    Queue<int> sizes;
    Process getter(report_sizes, work, sizes);
    getter.start();
    for (int attempt = 0; attempt < 3; ++attempt) {
        std::this_thread::sleep_for(20ms);  // the getter is asleep on the empty queue
        // Once its item is built, most of this putter's life is spent copying it into the ring,
        // under the put lock: it dies there, most attempts.
        Queue<int> item_built;
        Process doomed([work, item_built]() mutable {
            auto item = block_of(64u << 20, 'd');
            item_built.put(1);
            work.put(item);
        });
        doomed.start();
        item_built.get(30s);
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + 10 * attempt));
        doomed.kill();
        ASSERT_TRUE(doomed.join(30s));
        Process next([work]() mutable { work.put(block_of(10, 'n')); });
        next.start();
        wait_for_size(sizes, 10);  // after the doomed one's item, if it got in
        ASSERT_TRUE(next.join(30s));
    }
    work.put({});
    ASSERT_TRUE(getter.join(30s));
}

TEST(Queue, CloseRacingPutsAndGetsLeavesEveryItemPutToTheGettersInOrder) {
    for (int attempt = 0; attempt < 3; ++attempt) {
        Queue<int> work(attempt == 0 ? 0 : 8);  // unbounded, then bounded: putters wait too
        Queue<int> put_counts;
        Queue<int> got_counts;
        constexpr int putters = 2;
        constexpr int getters = 2;
        std::vector<Process> processes;
        for (int p = 0; p < putters; ++p) {
            processes.emplace_back([work, put_counts, p]() mutable {
                int put = 0;
                try {
                    for (;; ++put) work.put(p * 10'000'000 + put);
                } catch (const mproc::StateError&) {
                    put_counts.put(put);
                }
            });
        }
        for (int g = 0; g < getters; ++g) {
            processes.emplace_back([work, got_counts]() mutable {
                int got = 0;
                std::vector<int> last(putters, -1);
                try {
                    for (;; ++got) {
                        const int item = work.get();
                        const int putter = item / 10'000'000;
                        if (item % 10'000'000 <= last[putter]) {
                            got_counts.put(-1);  // one putter's items out of order
                            return;
                        }
                        last[putter] = item % 10'000'000;
                    }
                } catch (const mproc::StateError&) {
                    got_counts.put(got);
                }
            });
        }
        for (auto& process : processes) process.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + 10 * attempt));
        work.close();
        long put = 0;
        long got = 0;
        for (int p = 0; p < putters; ++p) put += put_counts.get(60s);
        for (int g = 0; g < getters; ++g) {
            const int count = got_counts.get(60s);
            ASSERT_GE(count, 0) << "a getter took one putter's items out of order";
            got += count;
        }
        EXPECT_EQ(got, put);
        for (auto& process : processes) ASSERT_TRUE(process.join(30s));
    }
}

TEST(Queue, ProcessesTakingTurnsThroughTwoQueuesMissNoWakeUp) {
    Queue<int> there;
    Queue<int> back;
    Process echo(forward, there, back);
    echo.start();
    for (int i = 0; i < 2000; ++i) {
        there.put(i);
        ASSERT_EQ(back.get(30s), i);
    }
    there.put(-1);
    ASSERT_TRUE(echo.join(30s));
}

TEST(Queue, EveryPutterHeldByAFullQueueGetsItsTurn) {
    Queue<int> queue(1);
    queue.put(0);
    constexpr int putters = 3;
    std::vector<Process> processes;
    for (int p = 1; p <= putters; ++p) {
        processes.emplace_back([queue, p]() mutable { queue.put(p); });
    }
    for (auto& process : processes) process.start();
    std::this_thread::sleep_for(50ms);  // the putters are asleep, most runs
    int sum = 0;
    for (int i = 0; i <= putters; ++i) sum += queue.get(30s);
    EXPECT_EQ(sum, 6);
    for (auto& process : processes) ASSERT_TRUE(process.join(30s));
}

TEST(Queue, ABoundedQueueHoldsAPutterUntilThereIsRoom) {
    Queue<int> queue(1);
    Process producer([queue]() mutable {
        for (int i = 0; i < 50; ++i) queue.put(i);
    });
    producer.start();
    int sum = 0;
    for (int i = 0; i < 50; ++i) {
        sum += queue.get(30s);
        EXPECT_LE(queue.qsize(), 1u);
    }
    ASSERT_TRUE(producer.join(30s));
    EXPECT_EQ(sum, 1225);
}

TEST(Queue, AnItemHoldingAHandleIsRefused) {
    Queue<mproc::SharedArray<int>> queue;
    EXPECT_THROW(queue.put(mproc::SharedArray<int>(4)), mproc::SerializationError);
    EXPECT_TRUE(queue.empty());
}

TEST(Queue, QueuesLeaveNoDescriptorsBehind) {
    const auto before = mproc::testing::open_descriptor_count();
    for (int i = 0; i < 100; ++i) {
        Queue<int> queue(3);
        queue.put(i);
        ASSERT_EQ(queue.get(), i);
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), before);
}

TEST(JoinableQueue, JoinWaitsUntilEveryItemIsDone) {
    JoinableQueue<int> queue;
    for (int i = 0; i < 10; ++i) queue.put(i);
    Process worker([queue]() mutable {
        for (int i = 0; i < 10; ++i) {
            queue.get();
            queue.task_done();
        }
    });
    worker.start();
    EXPECT_TRUE(queue.join(30s));
    ASSERT_TRUE(worker.join(30s));
}

TEST(JoinableQueue, JoinWithATimeoutIsFalseWhileTasksAreUnfinished) {
    JoinableQueue<int> queue;
    queue.put(1);
    EXPECT_FALSE(queue.join(50ms));
    queue.get();
    queue.task_done();
    EXPECT_TRUE(queue.join(50ms));
}

TEST(JoinableQueue, TaskDoneMoreOftenThanPutsIsAStateError) {
    JoinableQueue<int> queue;
    queue.put(1);
    queue.task_done();
    EXPECT_THROW(queue.task_done(), mproc::StateError);
}

// --- The same queue under every start method ---------------------------------------------

void produce(Queue<int> queue, int count) {
    for (int i = 0; i < count; ++i) queue.put(i);
}

class QueueAcrossStartMethods : public testing::TestWithParam<mproc::StartMethod> {};

TEST_P(QueueAcrossStartMethods, AProcessGivenTheQueuePutsItemsTheParentGets) {
    Queue<int> queue;
    Process producer(mproc::ProcessOptions{.start_method = GetParam()}, produce, queue, 1000);
    producer.start();
    long sum = 0;
    for (int i = 0; i < 1000; ++i) sum += queue.get(60s);
    ASSERT_TRUE(producer.join(60s));
    EXPECT_EQ(producer.exitcode(), 0);
    EXPECT_EQ(sum, 499500);
}

TEST_P(QueueAcrossStartMethods, PoolWorkersDrainAQueueGivenAsATaskArgument) {
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = GetParam()});
    Queue<int> queue;
    for (int i = 1; i <= 100; ++i) queue.put(i);
    const auto sums = pool.starmap(
        drain_into_sum, std::vector<std::pair<Queue<int>, int>>{{queue, 50}, {queue, 50}});
    EXPECT_EQ(sums[0] + sums[1], 5050);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, QueueAcrossStartMethods,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

}  // namespace
