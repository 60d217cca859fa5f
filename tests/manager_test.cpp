// Manager and its proxies: containers in a server process that every process (and thread)
// sees the same, locally and over TCP; a server that survives its clients' mistakes and
// deaths, and ends with its Manager or its parent.

#include "mproc/manager.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "os/process.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::DictProxy;
using mproc::ListProxy;
using mproc::Manager;
using mproc::ManagerOptions;
using mproc::Process;
using mproc::QueueProxy;
using mproc::ValueProxy;

int add_one(std::optional<int> current) {
    return current.value_or(0) + 1;
}

int add_n(std::optional<int> current, int n) {
    return current.value_or(0) + n;
}

int refuse(std::optional<int>) {
    throw std::invalid_argument("no updates today");
}

std::string shout(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return text;
}

void increment_many(DictProxy<std::string, int> counts, int times) {
    for (int i = 0; i < times; ++i) counts.update("hits", add_one);
}

int store_square(DictProxy<int, int> squares, int x) {
    squares.set(x, x * x);
    return x;
}

bool process_ended(int pid, std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
        if (::kill(pid, 0) != 0) return true;
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
// DictProxy

TEST(ManagerDict, SetThenGetReturnsTheValue) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("a", 1);
    d.set("b", 2);
    EXPECT_EQ(d.get("a"), 1);
    EXPECT_EQ(d.at("b"), 2);
    EXPECT_EQ(d.get("missing"), std::nullopt);
    EXPECT_EQ(d.size(), 2u);
}

TEST(ManagerDict, AtOnAMissingKeyThrowsOutOfRange) {
    Manager manager;
    auto d = manager.dict<int, std::string>();
    EXPECT_THROW(d.at(7), std::out_of_range);
}

TEST(ManagerDict, ContainsAndEraseSayWhetherTheKeyWasThere) {
    Manager manager;
    auto d = manager.dict<int, int>();
    d.set(1, 10);
    EXPECT_TRUE(d.contains(1));
    EXPECT_FALSE(d.contains(2));
    EXPECT_TRUE(d.erase(1));
    EXPECT_FALSE(d.erase(1));
    EXPECT_FALSE(d.contains(1));
    EXPECT_TRUE(d.empty());
}

TEST(ManagerDict, ItemsKeysAndValuesComeInInsertionOrder) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("zebra", 1);
    d.set("apple", 2);
    d.set("mango", 3);
    d.set("zebra", 4);  // overwriting keeps the key's place
    d.erase("apple");
    d.set("apple", 5);  // erased and set again: now last
    using Items = std::vector<std::pair<std::string, int>>;
    EXPECT_EQ(d.items(), (Items{{"zebra", 4}, {"mango", 3}, {"apple", 5}}));
    EXPECT_EQ(d.keys(), (std::vector<std::string>{"zebra", "mango", "apple"}));
    EXPECT_EQ(d.values(), (std::vector<int>{4, 3, 5}));
}

TEST(ManagerDict, ClearRemovesEveryEntry) {
    Manager manager;
    auto d = manager.dict<int, int>();
    for (int i = 0; i < 100; ++i) d.set(i, i);
    d.clear();
    EXPECT_EQ(d.size(), 0u);
    EXPECT_TRUE(d.items().empty());
}

TEST(ManagerDict, ValuesOfAnyEncodableTypeRoundTrip) {
    Manager manager;
    auto d = manager.dict<std::tuple<int, std::string>, std::vector<double>>();
    d.set({1, "x"}, {1.5, 2.5});
    d.set({1, "y"}, {});
    EXPECT_EQ(d.at({1, "x"}), (std::vector<double>{1.5, 2.5}));
    EXPECT_EQ(d.at({1, "y"}), std::vector<double>{});
}

TEST(ManagerDict, UpdateAppliesTheFunctionOnTheServerAndReturnsTheNewValue) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    EXPECT_EQ(d.update("n", add_one), 1);  // absent: f gets an empty optional
    EXPECT_EQ(d.update("n", add_n, 10), 11);
    EXPECT_EQ(d.update("n", [](int current) { return current * 2; }), 22);
    EXPECT_EQ(d.at("n"), 22);
}

TEST(ManagerDict, UpdateFromSeveralProcessesLosesNoIncrement) {
    Manager manager;
    auto counts = manager.dict<std::string, int>();
    constexpr int processes = 4;
    constexpr int times = 250;
    std::vector<Process> workers;
    for (int i = 0; i < processes; ++i) workers.emplace_back(increment_many, counts, times);
    for (auto& worker : workers) worker.start();
    for (auto& worker : workers) {
        ASSERT_TRUE(worker.join(120s));
        EXPECT_EQ(worker.exitcode(), 0);
    }
    EXPECT_EQ(counts.at("hits"), processes * times);
}

TEST(ManagerDict, UpdateFromSeveralThreadsLosesNoIncrement) {
    Manager manager;
    auto counts = manager.dict<std::string, int>();
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) threads.emplace_back(increment_many, counts, 100);
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(counts.at("hits"), 400);
}

TEST(ManagerDict, AnExceptionInAnUpdateComesBackAsRemoteErrorAndChangesNothing) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("n", 5);
    try {
        d.update("n", refuse);
        FAIL() << "update did not throw";
    } catch (const mproc::RemoteError& e) {
        EXPECT_EQ(e.type_name(), "std::invalid_argument");
        EXPECT_EQ(e.message(), "no updates today");
    }
    EXPECT_EQ(d.at("n"), 5);
    EXPECT_EQ(d.update("n", add_one), 6);  // the server goes on
}

// ---------------------------------------------------------------------------------------------
// ListProxy, ValueProxy

TEST(ManagerList, AppendAtSetSizeAndToVector) {
    Manager manager;
    auto l = manager.list<std::string>();
    l.append("a");
    l.append("b");
    l.set(0, "A");
    EXPECT_EQ(l.at(0), "A");
    EXPECT_EQ(l.at(1), "b");
    EXPECT_EQ(l.size(), 2u);
    EXPECT_EQ(l.to_vector(), (std::vector<std::string>{"A", "b"}));
}

TEST(ManagerList, AnIndexPastTheEndThrowsOutOfRange) {
    Manager manager;
    auto l = manager.list<int>();
    l.append(1);
    EXPECT_THROW(l.at(1), std::out_of_range);
    EXPECT_THROW(l.set(5, 0), std::out_of_range);
}

TEST(ManagerValue, GetSetAndUpdate) {
    Manager manager;
    auto v = manager.value<std::string>("hello");
    EXPECT_EQ(v.get(), "hello");
    v.set("bye");
    EXPECT_EQ(v.update(shout), "BYE");
    EXPECT_EQ(v.get(), "BYE");
    auto n = manager.value<int>();
    EXPECT_EQ(n.get(), 0);
}

// ---------------------------------------------------------------------------------------------
// QueueProxy, LockProxy

TEST(ManagerQueue, ItemsComeOutInTheOrderTheyWentIn) {
    Manager manager;
    auto q = manager.queue<std::string>();
    for (const char* word : {"one", "two", "three"}) q.put(word);
    EXPECT_EQ(q.qsize(), 3u);
    EXPECT_EQ(q.get(), "one");
    EXPECT_EQ(q.get(), "two");
    EXPECT_EQ(q.try_get(), "three");
    EXPECT_EQ(q.try_get(), std::nullopt);
    EXPECT_TRUE(q.empty());
}

TEST(ManagerQueue, GetWithATimeoutOnAnEmptyQueueThrowsEmpty) {
    Manager manager;
    auto q = manager.queue<int>();
    EXPECT_THROW(q.get(50ms), mproc::Empty);
}

TEST(ManagerQueue, PutWithATimeoutOnAFullQueueThrowsFull) {
    Manager manager;
    auto q = manager.queue<int>(2);
    q.put(1);
    q.put(2);
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.maxsize(), 2u);
    EXPECT_THROW(q.put(3, 50ms), mproc::Full);
    EXPECT_FALSE(q.try_put(3));
    EXPECT_EQ(q.get(), 1);
    q.put(3, 50ms);
    EXPECT_EQ(q.qsize(), 2u);
}

void put_later(QueueProxy<int> q, int value) {
    std::this_thread::sleep_for(200ms);
    q.put(value);
}

TEST(ManagerQueue, AWaitingGetIsWokenByAPutFromAnotherProcess) {
    Manager manager;
    auto q = manager.queue<int>();
    Process producer(put_later, q, 42);
    producer.start();
    EXPECT_EQ(q.get(60s), 42);
    producer.join();
}

void take_one(QueueProxy<int> q) {
    q.get();
}

TEST(ManagerQueue, AWaitingPutIsLetInWhenAnotherProcessTakesAnItem) {
    Manager manager;
    auto q = manager.queue<int>(1);
    q.put(1);
    Process consumer(take_one, q);
    consumer.start();
    q.put(2, 60s);  // waits for the consumer's get
    consumer.join();
    EXPECT_EQ(q.get(), 2);
}

TEST(ManagerQueue, CloseWakesWaitersAndRefusesPuts) {
    Manager manager;
    auto q = manager.queue<int>();
    std::thread closer([q]() mutable {
        std::this_thread::sleep_for(200ms);
        q.close();
    });
    EXPECT_THROW(q.get(), mproc::StateError);
    closer.join();
    EXPECT_THROW(q.put(1), mproc::StateError);
}

void wait_for_an_item(QueueProxy<int> q) {
    q.get();
}

TEST(ManagerQueue, AGetterKilledWhileItWaitsTakesNoItem) {
    Manager manager;
    auto q = manager.queue<int>();
    Process getter(wait_for_an_item, q);
    getter.start();
    std::this_thread::sleep_for(300ms);  // let it reach the server and wait there
    getter.kill();
    getter.join();
    q.put(7);
    EXPECT_EQ(q.get(5s), 7);
}

void count_under_lock(mproc::LockProxy lock, DictProxy<std::string, int> d, int times) {
    for (int i = 0; i < times; ++i) {
        std::lock_guard guard(lock);
        const int now = d.get("n").value_or(0);
        d.set("n", now + 1);
    }
}

TEST(ManagerLock, GivesMutualExclusionAcrossProcesses) {
    Manager manager;
    auto lock = manager.lock();
    auto d = manager.dict<std::string, int>();
    std::vector<Process> workers;
    for (int i = 0; i < 3; ++i) workers.emplace_back(count_under_lock, lock, d, 100);
    for (auto& worker : workers) worker.start();
    for (auto& worker : workers) {
        ASSERT_TRUE(worker.join(120s));
        EXPECT_EQ(worker.exitcode(), 0);
    }
    EXPECT_EQ(d.at("n"), 300);
}

void hold_lock_forever(mproc::LockProxy lock, QueueProxy<int> ready) {
    lock.acquire();
    ready.put(1);
    std::this_thread::sleep_for(1h);
}

TEST(ManagerLock, ALockWhoseHolderDiedIsReleased) {
    Manager manager;
    auto lock = manager.lock();
    auto ready = manager.queue<int>();
    Process holder(hold_lock_forever, lock, ready);
    holder.start();
    ready.get(60s);
    EXPECT_FALSE(lock.try_lock());
    holder.kill();
    holder.join();
    EXPECT_TRUE(lock.acquire(30s));
    lock.release();
}

TEST(ManagerLock, ReleasingALockNotHeldThrowsStateError) {
    Manager manager;
    auto lock = manager.lock();
    EXPECT_THROW(lock.release(), mproc::StateError);
    lock.acquire();
    EXPECT_THROW(lock.acquire(), mproc::StateError);  // it would wait for itself
    EXPECT_FALSE(lock.acquire(50ms));
    lock.release();
}

TEST(ManagerLock, AcquireWithATimeoutGivesUpWhileAnotherThreadHoldsIt) {
    Manager manager;
    auto lock = manager.lock();
    lock.acquire();
    bool acquired = true;
    std::thread other([&acquired, lock]() mutable { acquired = lock.acquire(100ms); });
    other.join();
    EXPECT_FALSE(acquired);
    lock.release();
}

// ---------------------------------------------------------------------------------------------
// Names and types

TEST(ManagerNames, ANamedContainerIsTheSameForEveryCaller) {
    Manager manager;
    auto first = manager.dict<std::string, int>("scores");
    auto second = manager.dict<std::string, int>("scores");
    first.set("x", 1);
    EXPECT_EQ(second.at("x"), 1);
    auto v1 = manager.value<int>("counter", 5);
    auto v2 = manager.value<int>("counter", 99);  // the first caller's init stands
    EXPECT_EQ(v2.get(), 5);
    v1.set(6);
    EXPECT_EQ(v2.get(), 6);
}

TEST(ManagerNames, ANamedContainerAskedForWithOtherTypesThrowsContainerTypeError) {
    Manager manager;
    manager.dict<std::string, int>("scores");
    EXPECT_THROW((manager.dict<std::string, double>("scores")), mproc::ContainerTypeError);
    EXPECT_THROW((manager.list<int>("scores")), mproc::ContainerTypeError);
    try {
        manager.dict<int, int>("scores");
        FAIL() << "no ContainerTypeError";
    } catch (const mproc::ContainerTypeError& e) {
        EXPECT_NE(std::string(e.what()).find("is a dict<std::string, int>, not a dict<int, int>"),
                  std::string::npos)
            << e.what();
    }
}

TEST(ManagerNames, AProxyDecodedAsOtherTypesThrowsContainerTypeErrorOnFirstUse) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("a", 1);
    std::vector<std::byte> bytes;
    mproc::detail::encode(bytes, d);
    DictProxy<std::string, double> wrong;
    mproc::detail::decode(std::span<const std::byte>(bytes), wrong);
    EXPECT_THROW(wrong.get("a"), mproc::ContainerTypeError);
    EXPECT_EQ(d.at("a"), 1);
}

TEST(ManagerNames, AProxyMadeByDefaultThrowsStateError) {
    DictProxy<int, int> nothing;
    EXPECT_FALSE(nothing.valid());
    EXPECT_THROW(nothing.size(), mproc::StateError);
}

// ---------------------------------------------------------------------------------------------
// Proxies travel

TEST(ManagerProxies, PoolTasksWriteIntoTheSameDict) {
    Manager manager;
    auto squares = manager.dict<int, int>();
    mproc::Pool pool(2);
    std::vector<std::tuple<DictProxy<int, int>, int>> tasks;
    for (int i = 0; i < 20; ++i) tasks.emplace_back(squares, i);
    pool.starmap(store_square, tasks);
    EXPECT_EQ(squares.size(), 20u);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(squares.at(i), i * i);
}

void append_from_initializer(ListProxy<int> list) {
    list.append(static_cast<int>(::getpid()));
}
int nothing(int x) {
    return x;
}

TEST(ManagerProxies, ABoundInitializerReachesTheSameList) {
    Manager manager;
    auto pids = manager.list<int>();
    {
        mproc::Pool pool(mproc::PoolOptions{
            .processes = 2, .initializer = mproc::bind(append_from_initializer, pids)});
        pool.map(nothing, std::vector<int>{1, 2, 3, 4});
    }
    EXPECT_EQ(pids.size(), 2u);
}

int sum_from_queue(mproc::Queue<DictProxy<std::string, int>> proxies) {
    auto d = proxies.get(30s);
    return d.at("a") + d.at("b");
}

TEST(ManagerProxies, AProxyTravelsAsAQueueItem) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("a", 2);
    d.set("b", 3);
    mproc::Queue<DictProxy<std::string, int>> proxies;
    proxies.put(d);
    mproc::Pool pool(1);
    EXPECT_EQ(pool.apply(sum_from_queue, proxies), 5);
}

TEST(ManagerProxies, AProxyTravelsInsideAnotherContainer) {
    Manager manager;
    auto inner = manager.list<int>();
    inner.append(9);
    auto outer = manager.dict<std::string, ListProxy<int>>();
    outer.set("inner", inner);
    EXPECT_EQ(outer.at("inner").at(0), 9);
}

void set_and_count(DictProxy<std::string, int> d) {
    d.set("spawned", 1);
    d.update("n", add_one);
}

TEST(ManagerProxies, ASpawnedProcessReachesTheDictAndRunsUpdates) {
    Manager manager;
    auto d = manager.dict<std::string, int>();
    Process child(mproc::ProcessOptions{.start_method = mproc::StartMethod::spawn}, set_and_count,
                  d);
    child.start();
    ASSERT_TRUE(child.join(120s));
    EXPECT_EQ(child.exitcode(), 0);
    EXPECT_EQ(d.at("spawned"), 1);
    EXPECT_EQ(d.at("n"), 1);
}

// ---------------------------------------------------------------------------------------------
// TCP

TEST(ManagerTcp, PortZeroPicksAPortThatAddressReports) {
    Manager manager(ManagerOptions{.address = "127.0.0.1:0", .authkey = "secret"});
    const std::string& address = manager.address();
    ASSERT_TRUE(address.starts_with("127.0.0.1:")) << address;
    EXPECT_NE(address, "127.0.0.1:0");
    EXPECT_EQ(manager.authkey(), "secret");
}

TEST(ManagerTcp, AClientWithTheKeySeesTheServersNamedContainers) {
    Manager server(ManagerOptions{.address = "localhost:0", .authkey = "secret"});
    server.dict<std::string, int>("shared").set("x", 41);
    Manager client = Manager::connect(server.address(), "secret");
    EXPECT_EQ(client.pid(), 0);
    auto d = client.dict<std::string, int>("shared");
    EXPECT_EQ(d.update("x", add_one), 42);
    EXPECT_EQ((server.dict<std::string, int>("shared").at("x")), 42);
}

TEST(ManagerTcp, AClientWithTheWrongKeyGetsAuthenticationErrorAndOthersGoOn) {
    Manager server(ManagerOptions{.address = "127.0.0.1:0", .authkey = "right"});
    auto d = server.dict<std::string, int>("shared");
    d.set("x", 1);
    EXPECT_THROW(Manager::connect(server.address(), "wrong"), mproc::AuthenticationError);
    EXPECT_THROW(Manager::connect(server.address(), ""), mproc::AuthenticationError);
    Manager client = Manager::connect(server.address(), "right");
    EXPECT_EQ((client.dict<std::string, int>("shared").at("x")), 1);
    EXPECT_EQ(d.at("x"), 1);
}

void connect_and_count(std::string address, std::string key) {
    Manager client = Manager::connect(address, key);
    client.dict<std::string, int>("shared").update("n", add_one);
}

TEST(ManagerTcp, ProcessesConnectedByAddressUpdateTheSameDict) {
    Manager server(ManagerOptions{.address = "127.0.0.1:0", .authkey = "k"});
    std::vector<Process> clients;
    for (int i = 0; i < 3; ++i) clients.emplace_back(connect_and_count, server.address(), "k");
    for (auto& client : clients) client.start();
    for (auto& client : clients) {
        ASSERT_TRUE(client.join(120s));
        EXPECT_EQ(client.exitcode(), 0);
    }
    EXPECT_EQ((server.dict<std::string, int>("shared").at("n")), 3);
}

TEST(ManagerTcp, ConnectingWhereNoManagerListensThrowsError) {
    std::string address;
    {
        Manager gone(ManagerOptions{.address = "127.0.0.1:0"});
        address = gone.address();
    }
    EXPECT_THROW(Manager::connect(address, "key"), mproc::Error);
}

TEST(ManagerTcp, AnAddressThatDoesNotParseThrowsError) {
    EXPECT_THROW(Manager(ManagerOptions{.address = "no-port"}), mproc::Error);
    EXPECT_THROW(Manager(ManagerOptions{.address = "localhost:99999"}), mproc::Error);
    EXPECT_THROW(Manager::connect("unix:@", "k"), mproc::Error);
}

TEST(ManagerTcp, ALocalManagerCanBeReachedByItsAddressAndKeyToo) {
    Manager manager;
    ASSERT_TRUE(manager.address().starts_with("unix:@")) << manager.address();
    manager.list<int>("numbers").append(3);
    Manager client = Manager::connect(manager.address(), manager.authkey());
    EXPECT_EQ(client.list<int>("numbers").at(0), 3);
}

// ---------------------------------------------------------------------------------------------
// Lifetime and robustness

TEST(ManagerLifetime, TheServerEndsWhenItsManagerIsDestroyedAndLeavesNothingBehind) {
    const std::size_t descriptors = mproc::testing::open_descriptor_count();
    int pid = 0;
    {
        Manager manager;
        pid = manager.pid();
        ASSERT_GT(pid, 0);
        auto d = manager.dict<int, int>();
        d.set(1, 1);
    }
    EXPECT_TRUE(process_ended(pid, 10s));
    EXPECT_TRUE(mproc::testing::child_pids().empty());
    EXPECT_EQ(mproc::testing::open_descriptor_count(), descriptors);
}

TEST(ManagerLifetime, AProxyUsedAfterItsManagerEndedThrowsError) {
    DictProxy<int, int> d;
    {
        Manager manager;
        d = manager.dict<int, int>();
        d.set(1, 1);
    }
    EXPECT_THROW(d.get(1), mproc::Error);
}

TEST(ManagerLifetime, AProxyOfAnEndedManagerIsRefusedByANewOneAtTheSameAddress) {
    const ManagerOptions options{.address = "unix:@mproc-test-" + std::to_string(::getpid()),
                                 .authkey = "k"};
    DictProxy<int, int> old;
    std::vector<std::byte> old_bytes;
    {
        Manager first(options);
        old = first.dict<int, int>();
        old.set(1, 1);
        mproc::detail::encode(old_bytes, old);
    }
    Manager second(options);
    auto fresh = second.dict<int, int>();  // the same id as the old one had
    fresh.set(1, 2);
    EXPECT_THROW(old.get(1), mproc::Error);
    DictProxy<int, int> decoded;
    mproc::detail::decode(std::span<const std::byte>(old_bytes), decoded);
    EXPECT_THROW(decoded.get(1), mproc::Error);
    EXPECT_EQ(fresh.at(1), 2);
}

TEST(ManagerLifetime, ShutdownStopsTheServerAndOnlyTheOwnerMayCallIt) {
    Manager manager(ManagerOptions{.address = "127.0.0.1:0", .authkey = "k"});
    Manager client = Manager::connect(manager.address(), "k");
    EXPECT_THROW(client.shutdown(), mproc::StateError);
    const int pid = manager.pid();
    manager.shutdown();
    EXPECT_TRUE(process_ended(pid, 10s));
    EXPECT_EQ(manager.pid(), 0);
    manager.shutdown();  // again: nothing
}

void make_manager_then_wait(mproc::Queue<int> report) {
    Manager manager;
    report.put(manager.pid());
    std::this_thread::sleep_for(1h);
}

TEST(ManagerLifetime, TheServerEndsWhenItsParentDies) {
    mproc::Queue<int> report;
    Process parent(make_manager_then_wait, report);
    parent.start();
    const int server = report.get(60s);
    ASSERT_EQ(::kill(server, 0), 0);
    parent.kill();
    parent.join();
    EXPECT_TRUE(process_ended(server, 10s));
}

void write_big_values_forever(DictProxy<int, std::string> d) {
    const std::string big(8 << 20, 'x');
    for (int i = 0;; ++i) d.set(i % 4, big);
}

TEST(ManagerRobustness, AClientKilledMidRequestLeavesTheServerServing) {
    Manager manager;
    auto d = manager.dict<int, std::string>();
    Process writer(write_big_values_forever, d);
    writer.start();
    std::this_thread::sleep_for(500ms);  // well into a stream of 8 MiB requests
    writer.kill();
    writer.join();
    d.set(100, "still here");
    EXPECT_EQ(d.at(100), "still here");
    EXPECT_LE(d.size(), 5u);
}

TEST(ManagerRobustness, ManyConnectionsFromManyThreadsAreAllServed) {
    Manager manager;
    auto d = manager.dict<int, int>();
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([d, t]() mutable {
            for (int i = 0; i < 20; ++i) d.set(t * 100 + i, i);
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(d.size(), 16u * 20u);
}

// --- The same manager from workers of every start method --------------------------------

class ManagerAcrossStartMethods : public testing::TestWithParam<mproc::StartMethod> {};

TEST_P(ManagerAcrossStartMethods, PoolWorkersUpdateOneDictWithoutLosingAnIncrement) {
    Manager manager;
    auto counts = manager.dict<std::string, int>();
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = GetParam()});
    pool.starmap(increment_many,
                 std::vector<std::tuple<DictProxy<std::string, int>, int>>(4, {counts, 100}), 1);
    EXPECT_EQ(counts.at("hits"), 400);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ManagerAcrossStartMethods,
                         testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                         mproc::StartMethod::forkserver),
                         mproc::testing::StartMethodName());

}  // namespace
