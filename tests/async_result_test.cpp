// Specifies include/mproc/async_result.hpp: AsyncResult over the state that a pool fills
// (detail::ResultState), here filled directly by the test, so no pool is involved.

#include "mproc/async_result.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/errors.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::AsyncResult;
using mproc::detail::ResultState;

// Far beyond what a loaded machine needs; a broken build fails instead of hanging.
constexpr auto kPatience = 30s;

template <class T>
struct Pending {
    std::shared_ptr<ResultState<T>> state = std::make_shared<ResultState<T>>();
    AsyncResult<T> result{state};
};

std::exception_ptr remote_error() {
    return std::make_exception_ptr(
        mproc::RemoteError("app::ParseError", "bad header", "#0  app::parse()"));
}

TEST(AsyncResult, GetReturnsTheValueSetFromAnotherThread) {
    Pending<std::string> p;
    std::thread setter([state = p.state] {
        std::this_thread::sleep_for(50ms);
        state->set_value("from the collector");
    });
    EXPECT_EQ(p.result.get(), "from the collector");
    setter.join();
}

TEST(AsyncResult, GetWithTimeoutReturnsTheValueSetFromAnotherThread) {
    Pending<int> p;
    std::thread setter([state = p.state] {
        std::this_thread::sleep_for(50ms);
        state->set_value(42);
    });
    EXPECT_EQ(p.result.get(kPatience), 42);
    setter.join();
}

TEST(AsyncResult, GetWithTimeoutThrowsTimeoutErrorWhenNothingIsSet) {
    Pending<int> p;
    EXPECT_THROW(p.result.get(50ms), mproc::TimeoutError);
}

TEST(AsyncResult, GetAfterATimeoutStillReturnsTheValueSetLater) {
    Pending<int> p;
    EXPECT_THROW(p.result.get(10ms), mproc::TimeoutError);
    p.state->set_value(5);
    EXPECT_EQ(p.result.get(kPatience), 5);
}

TEST(AsyncResult, WaitWithTimeoutIsFalseUntilSetThenTrue) {
    Pending<int> p;
    EXPECT_FALSE(p.result.wait(50ms));
    p.state->set_value(1);
    EXPECT_TRUE(p.result.wait(kPatience));
}

TEST(AsyncResult, WaitReturnsOnceAnotherThreadSetsTheResult) {
    Pending<int> p;
    std::thread setter([state = p.state] {
        std::this_thread::sleep_for(50ms);
        state->set_value(1);
    });
    p.result.wait();
    EXPECT_TRUE(p.result.ready());
    setter.join();
}

// A timeout too long to add to the clock means "no deadline", as it does for Python's get.
TEST(AsyncResult, GetWithTheLargestTimeoutWaitsForTheValue) {
    Pending<int> p;
    std::thread setter([state = p.state] {
        std::this_thread::sleep_for(50ms);
        state->set_value(8);
    });
    EXPECT_EQ(p.result.get(std::chrono::hours::max()), 8);
    setter.join();
}

TEST(AsyncResult, ReadyIsFalseUntilAValueIsSet) {
    Pending<int> p;
    EXPECT_FALSE(p.result.ready());
    p.state->set_value(1);
    EXPECT_TRUE(p.result.ready());
}

TEST(AsyncResult, ReadyIsTrueOnceAnErrorIsSet) {
    Pending<int> p;
    p.state->set_error(remote_error());
    EXPECT_TRUE(p.result.ready());
}

TEST(AsyncResult, SuccessfulThrowsStateErrorBeforeReady) {
    Pending<int> p;
    EXPECT_THROW((void)p.result.successful(), mproc::StateError);
}

TEST(AsyncResult, SuccessfulIsTrueAfterAValue) {
    Pending<int> p;
    p.state->set_value(1);
    EXPECT_TRUE(p.result.successful());
}

TEST(AsyncResult, SuccessfulIsFalseAfterAnError) {
    Pending<int> p;
    p.state->set_error(remote_error());
    EXPECT_FALSE(p.result.successful());
}

TEST(AsyncResult, GetRethrowsTheStoredRemoteErrorWithItsTypeName) {
    Pending<int> p;
    p.state->set_error(remote_error());
    try {
        p.result.get(kPatience);
        FAIL() << "get() returned instead of throwing";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.type_name(), "app::ParseError");
        EXPECT_EQ(error.message(), "bad header");
    }
}

TEST(AsyncResult, GetRethrowsTheStoredErrorEachTime) {
    Pending<int> p;
    p.state->set_error(std::make_exception_ptr(mproc::WorkerLost(1234, 0, 9)));
    EXPECT_THROW(p.result.get(), mproc::WorkerLost);
    EXPECT_THROW(p.result.get(), mproc::WorkerLost);
    EXPECT_THROW(p.result.get(kPatience), mproc::WorkerLost);
}

TEST(AsyncResult, SecondGetOfAValueThrowsStateError) {
    Pending<std::vector<int>> p;
    p.state->set_value(std::vector<int>{1, 2, 3});
    EXPECT_EQ(p.result.get(), (std::vector<int>{1, 2, 3}));
    EXPECT_THROW(p.result.get(), mproc::StateError);
}

TEST(AsyncResult, OnlyTheFirstValueSetCounts) {
    Pending<int> p;
    p.state->set_value(1);
    p.state->set_value(2);
    p.state->set_error(remote_error());
    EXPECT_TRUE(p.result.successful());
    EXPECT_EQ(p.result.get(), 1);
}

TEST(AsyncResult, CopiesReferToTheSameResult) {
    Pending<int> p;
    AsyncResult<int> copy = p.result;
    p.state->set_value(9);
    EXPECT_TRUE(copy.ready());
    EXPECT_EQ(copy.get(kPatience), 9);
    EXPECT_THROW(p.result.get(kPatience), mproc::StateError);
}

TEST(AsyncResult, VoidResultGetReturnsOnceSet) {
    Pending<void> p;
    EXPECT_FALSE(p.result.ready());
    p.state->set_value();
    EXPECT_TRUE(p.result.ready());
    EXPECT_TRUE(p.result.successful());
    EXPECT_NO_THROW(p.result.get(kPatience));
}

TEST(AsyncResult, VoidResultGetWithTimeoutThrowsTimeoutErrorWhenNothingIsSet) {
    Pending<void> p;
    EXPECT_THROW(p.result.get(50ms), mproc::TimeoutError);
}

TEST(AsyncResult, VoidResultGetRethrowsTheStoredError) {
    Pending<void> p;
    p.state->set_error(remote_error());
    EXPECT_FALSE(p.result.successful());
    EXPECT_THROW(p.result.get(kPatience), mproc::RemoteError);
}

TEST(AsyncResult, MoveOnlyValueIsMovedOut) {
    Pending<std::unique_ptr<int>> p;
    p.state->set_value(std::make_unique<int>(3));
    std::unique_ptr<int> value = p.result.get(kPatience);
    ASSERT_NE(value, nullptr);
    EXPECT_EQ(*value, 3);
}

}  // namespace
