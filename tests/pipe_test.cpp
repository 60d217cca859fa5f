// Specifies include/mproc/pipe.hpp: mproc::pipe<T>() and Connection<T>, Python's
// multiprocessing.Pipe() for values of T.
//
// Every wait is bounded: a recv that is expected to return runs on another thread and is given
// kPatience; if it does not return, the test closes the end, which ends the recv.

#include "mproc/pipe.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/detail/frame.hpp"
#include "mproc/errors.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "os/socket.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::Connection;
using mproc::Process;
using mproc::SharedArray;

constexpr auto kPatience = 30s;

// The value of a recv on another thread, waited for at most kPatience; past that the end is
// closed (which ends the recv) and the test fails.
template <class T>
T recv_within_patience(const Connection<T>& end) {
    auto value = std::async(std::launch::async, [end] { return end.recv(); });
    if (value.wait_for(kPatience) != std::future_status::ready) {
        ADD_FAILURE() << "recv did not return within " << kPatience.count() << " s";
        end.close();
    }
    return value.get();
}

// A Connection<T> over one end of a socket pair made here, whose other end the test writes raw
// bytes to.
template <class T>
std::pair<Connection<T>, mproc::detail::UniqueFd> connection_and_raw_peer() {
    auto [mine, raw] = mproc::detail::make_socket_pair(SOCK_STREAM);
    return {Connection<T>(std::make_shared<mproc::detail::ConnectionCore>(std::move(mine))),
            std::move(raw)};
}

void write_raw(const mproc::detail::UniqueFd& fd, const void* bytes, std::size_t n) {
    ASSERT_EQ(::write(fd.get(), bytes, n), static_cast<ssize_t>(n));
}

// Pool task: answers the value it receives with its double, and returns it.
int answer_with_double(Connection<int> end) {
    const int value = end.recv();
    end.send(2 * value);
    return value;
}

TEST(Pipe, ValueSentAtEitherEndIsReceivedAtTheOther) {
    auto [a, b] = mproc::pipe<std::string>();
    a.send("from a");
    EXPECT_EQ(b.recv(), "from a");
    b.send("from b");
    EXPECT_EQ(a.recv(), "from b");
}

TEST(Pipe, ValuesArriveInTheOrderTheyWereSent) {
    auto [a, b] = mproc::pipe<int>();
    // From another thread: a send blocks once the pipe is full, as in Python.
    auto sending = std::async(std::launch::async, [a] {
        for (int i = 0; i < 1000; ++i) a.send(i);
    });
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(recv_within_patience(b), i);
    sending.get();
}

TEST(Pipe, CompositeValuesArriveEqual) {
    using Value = std::vector<std::pair<std::string, std::vector<double>>>;
    auto [a, b] = mproc::pipe<Value>();
    const Value sent{{"x", {1.5, 2.5}}, {"", {}}, {"long name", std::vector<double>(1000, 3.0)}};
    a.send(sent);
    EXPECT_EQ(b.recv(), sent);
}

TEST(Pipe, PollIsFalseWhileNothingWasSent) {
    auto [a, b] = mproc::pipe<int>();
    EXPECT_FALSE(b.poll());
    EXPECT_FALSE(b.poll(20ms));
}

TEST(Pipe, PollIsTrueOnceAValueWasSent) {
    auto [a, b] = mproc::pipe<int>();
    ASSERT_FALSE(b.poll());
    a.send(1);
    EXPECT_TRUE(b.poll(kPatience));
    EXPECT_EQ(b.recv(), 1);
    EXPECT_FALSE(b.poll());
}

TEST(Pipe, PollWithATimeoutWaitsForAValueSentMeanwhile) {
    auto [a, b] = mproc::pipe<int>();
    std::thread sender([a] {
        std::this_thread::sleep_for(50ms);
        a.send(7);
    });
    EXPECT_TRUE(b.poll(kPatience));
    sender.join();
    EXPECT_EQ(b.recv(), 7);
}

TEST(Pipe, PollWithANegativeOrHugeTimeoutIsAccepted) {
    auto [a, b] = mproc::pipe<int>();
    EXPECT_FALSE(b.poll(-5s));
    a.send(1);
    EXPECT_TRUE(b.poll(std::chrono::nanoseconds::max()));
    EXPECT_TRUE(b.poll(std::chrono::hours::max()));
}

TEST(Pipe, ParentAndChildProcessExchangeValues) {
    auto [parent_end, child_end] = mproc::pipe<int>();
    Process child([child_end] {
        for (int i = 0; i < 100; ++i) child_end.send(child_end.recv() + 1);
    });
    child.start();
    for (int i = 0; i < 100; ++i) {
        parent_end.send(i);
        ASSERT_EQ(recv_within_patience(parent_end), i + 1);
    }
    ASSERT_TRUE(child.join(kPatience));
    EXPECT_EQ(child.exitcode(), 0);
}

TEST(Pipe, ConnectionGivenAsAProcessArgumentWorksInTheChild) {
    auto [parent_end, child_end] = mproc::pipe<std::string>();
    Process child([](Connection<std::string> end) { end.send("hello from the child"); }, child_end);
    child.start();
    EXPECT_EQ(recv_within_patience(parent_end), "hello from the child");
    ASSERT_TRUE(child.join(kPatience));
    EXPECT_EQ(child.exitcode(), 0);
}

TEST(Pipe, ConnectionGivenToAPoolTaskWorksInTheWorker) {
    mproc::Pool pool(1);
    // Made after the pool, so the worker has the end only because the task carried it.
    auto [mine, theirs] = mproc::pipe<int>();
    mine.send(21);
    EXPECT_EQ(pool.apply(answer_with_double, theirs), 21);
    EXPECT_EQ(recv_within_patience(mine), 42);
}

TEST(Pipe, ConnectionSentThroughAnotherPipeReachesTheSameEnd) {
    auto [a, b] = mproc::pipe<int>();
    auto [carrier_in, carrier_out] = mproc::pipe<Connection<int>>();
    carrier_in.send(b);
    Connection<int> received = carrier_out.recv();
    a.send(5);
    EXPECT_EQ(received.recv(), 5);
    received.send(6);
    EXPECT_EQ(a.recv(), 6);
}

TEST(Pipe, ValueOf64MiBArrivesWhole) {
    auto [a, b] = mproc::pipe<std::vector<char>>();
    std::vector<char> sent(std::size_t{64} << 20);
    for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>(i * 7 + i / 4096);
    // The pipe holds far less than 64 MiB, so the send must run while the recv reads.
    auto sending = std::async(std::launch::async, [a, &sent] { a.send(sent); });
    const std::vector<char> received = recv_within_patience(b);
    sending.get();
    EXPECT_TRUE(received == sent);
}

TEST(Pipe, SharedArrayInAMessageSharesItsMemoryWithTheReceiver) {
    auto [a, b] = mproc::pipe<SharedArray<int>>();
    SharedArray<int> sent(16);
    a.send(sent);
    SharedArray<int> received = b.recv();
    ASSERT_EQ(received.size(), 16u);
    received[3] = 33;
    EXPECT_EQ(sent[3], 33);
}

TEST(Pipe, ChildReceivingASharedArrayWritesMemoryTheParentReads) {
    auto [parent_end, child_end] = mproc::pipe<SharedArray<int>>();
    Process child([child_end] {
        SharedArray<int> cells = child_end.recv();
        cells[0] = 99;
        child_end.send(cells);
    });
    child.start();
    // Made after the fork, so the child can reach it only through the pipe.
    SharedArray<int> cells(1);
    parent_end.send(cells);
    recv_within_patience(parent_end);
    ASSERT_TRUE(child.join(kPatience));
    EXPECT_EQ(cells[0], 99);
}

TEST(Pipe, RecvAfterThePeerWasClosedThrowsStateError) {
    auto [a, b] = mproc::pipe<int>();
    a.close();
    EXPECT_THROW(b.recv(), mproc::StateError);
}

TEST(Pipe, RecvAfterEveryCopyOfThePeerIsGoneThrowsStateError) {
    auto ends = mproc::pipe<int>();
    Connection<int> b = ends.second;
    {
        Connection<int> a = std::move(ends.first);
        Connection<int> copy = a;
    }
    try {
        b.recv();
        FAIL() << "recv returned with no peer";
    } catch (const mproc::StateError& e) {
        EXPECT_NE(std::string(e.what()).find("the other end of the pipe was closed"),
                  std::string::npos)
            << e.what();
    }
}

TEST(Pipe, RecvThrowsOnlyAfterEveryValueSentBeforeThePeerClosed) {
    auto [a, b] = mproc::pipe<int>();
    a.send(1);
    a.send(2);
    a.close();
    EXPECT_EQ(b.recv(), 1);
    EXPECT_EQ(b.recv(), 2);
    EXPECT_THROW(b.recv(), mproc::StateError);
}

TEST(Pipe, PeerThatIsStillOpenInAChildIsNotClosed) {
    auto [a, b] = mproc::pipe<int>();
    Process child([a] { a.send(3); });
    child.start();
    a.close();
    // The child's copy of a is open until the child ends, so its value arrives.
    EXPECT_EQ(recv_within_patience(b), 3);
    ASSERT_TRUE(child.join(kPatience));
    EXPECT_THROW(b.recv(), mproc::StateError);
}

TEST(Pipe, PollIsTrueOnceThePeerWasClosed) {
    auto [a, b] = mproc::pipe<int>();
    a.close();
    EXPECT_TRUE(b.poll(kPatience));
}

TEST(Pipe, SendAfterThePeerWasClosedThrowsStateError) {
    auto [a, b] = mproc::pipe<int>();
    b.close();
    EXPECT_THROW(a.send(1), mproc::StateError);
}

TEST(Pipe, ClosedEndThrowsStateErrorOnEveryUse) {
    auto [a, b] = mproc::pipe<int>();
    Connection<int> copy = a;
    a.close();
    EXPECT_TRUE(copy.closed());
    EXPECT_THROW(copy.send(1), mproc::StateError);
    EXPECT_THROW(copy.recv(), mproc::StateError);
    EXPECT_THROW(copy.poll(), mproc::StateError);
}

TEST(Pipe, ClosingTwiceDoesNothing) {
    auto [a, b] = mproc::pipe<int>();
    a.close();
    a.close();
    EXPECT_TRUE(a.closed());
}

TEST(Pipe, UnconnectedConnectionThrowsStateError) {
    Connection<int> nothing;
    EXPECT_TRUE(nothing.closed());
    EXPECT_THROW(nothing.send(1), mproc::StateError);
    EXPECT_THROW(nothing.recv(), mproc::StateError);
    EXPECT_THROW(nothing.poll(), mproc::StateError);
    nothing.close();
}

TEST(Pipe, CloseFromAnotherThreadEndsABlockedRecv) {
    auto [a, b] = mproc::pipe<int>();
    auto receiving = std::async(std::launch::async, [b] { return b.recv(); });
    std::this_thread::sleep_for(20ms);
    b.close();
    ASSERT_EQ(receiving.wait_for(kPatience), std::future_status::ready);
    EXPECT_THROW(receiving.get(), mproc::StateError);
}

TEST(Pipe, ThreadsSharingAnEndNeverInterleaveTheirMessages) {
    auto [a, b] = mproc::pipe<std::vector<int>>();
    // Messages larger than the socket's buffer, so that each send takes several writes.
    constexpr int per_thread = 20;
    auto send_many = [a](int id) {
        for (int i = 0; i < per_thread; ++i) a.send(std::vector<int>(100000, id));
    };
    std::thread first(send_many, 1);
    std::thread second(send_many, 2);
    auto receiving = std::async(std::launch::async, [b] {
        int whole = 0;
        for (int i = 0; i < 2 * per_thread; ++i) {
            const std::vector<int> message = b.recv();
            if (message.size() == 100000 && (message.front() == 1 || message.front() == 2) &&
                std::vector<int>(100000, message.front()) == message) {
                ++whole;
            }
        }
        return whole;
    });
    const bool done = receiving.wait_for(kPatience) == std::future_status::ready;
    if (!done) b.close();
    first.join();
    second.join();
    ASSERT_TRUE(done);
    EXPECT_EQ(receiving.get(), 2 * per_thread);
}

TEST(Pipe, BytesThatAreNotAMessageThrowSerializationError) {
    auto [end, raw] = connection_and_raw_peer<int>();
    const std::vector<char> garbage(sizeof(mproc::detail::FrameHeader), 'x');
    write_raw(raw, garbage.data(), garbage.size());
    EXPECT_THROW(end.recv(), mproc::SerializationError);
}

TEST(Pipe, RecvAfterBytesThatAreNotAMessageKeepsThrowingSerializationError) {
    auto [end, raw] = connection_and_raw_peer<int>();
    const std::vector<char> garbage(sizeof(mproc::detail::FrameHeader), 'x');
    write_raw(raw, garbage.data(), garbage.size());
    EXPECT_THROW(end.recv(), mproc::SerializationError);
    // Whatever follows cannot be told apart from the rest of the garbage.
    const mproc::detail::Frame frame = mproc::detail::encode_message(5);
    write_raw(raw, frame.bytes.data(), frame.bytes.size());
    EXPECT_THROW(end.recv(), mproc::SerializationError);
}

TEST(Pipe, HeaderClaimingMoreThanAFrameMayHoldThrowsSerializationError) {
    auto [end, raw] = connection_and_raw_peer<int>();
    mproc::detail::Frame frame = mproc::detail::encode_message(5);
    mproc::detail::FrameHeader header = frame.header();
    header.payload_bytes = std::uint64_t{1} << 40;
    write_raw(raw, &header, sizeof header);
    EXPECT_THROW(end.recv(), mproc::SerializationError);
}

TEST(Pipe, MessageCutOffByThePeerClosingThrowsSerializationError) {
    auto [end, raw] = connection_and_raw_peer<std::string>();
    const mproc::detail::Frame frame = mproc::detail::encode_message(std::string(1000, 'a'));
    write_raw(raw, frame.bytes.data(), frame.bytes.size() / 2);
    raw.reset();
    EXPECT_THROW(end.recv(), mproc::SerializationError);
}

TEST(Pipe, MessageThatDoesNotDecodeAsTThrowsSerializationErrorAndTheNextOneArrives) {
    auto [sender_socket, receiver_socket] = mproc::detail::make_socket_pair(SOCK_STREAM);
    Connection<std::string> sender(
        std::make_shared<mproc::detail::ConnectionCore>(std::move(sender_socket)));
    Connection<std::int64_t> receiver(
        std::make_shared<mproc::detail::ConnectionCore>(std::move(receiver_socket)));
    sender.send("more bytes than an integer");
    EXPECT_THROW(receiver.recv(), mproc::SerializationError);
    // An empty string is its 8-byte length, 0: what an int64 of 0 is.
    sender.send("");
    EXPECT_EQ(receiver.recv(), 0);
}

TEST(Pipe, NoDescriptorIsLeftOpenOnceTheEndsAreGone) {
    const std::size_t before = mproc::testing::open_descriptor_count();
    {
        auto [a, b] = mproc::pipe<SharedArray<int>>();
        auto [c, d] = mproc::pipe<Connection<SharedArray<int>>>();
        SharedArray<int> cells(4);
        a.send(cells);
        SharedArray<int> received = b.recv();
        c.send(a);
        Connection<SharedArray<int>> a_again = d.recv();
        a_again.send(received);
        b.recv();
        a.close();
        a_again.close();
        EXPECT_THROW(b.recv(), mproc::StateError);
    }
    EXPECT_EQ(mproc::testing::open_descriptor_count(), before);
}

}  // namespace
