// Specifies include/mproc/callable.hpp: which callables may run in another process, and
// mproc::bind, which encodes one call. A bound call is run here in-process through the entry a
// worker would use, so no worker is involved.

#include "mproc/callable.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/task_codec.hpp"
#include "mproc/errors.hpp"

namespace {

int add(int a, int b) {
    return a + b;
}

int throw_invalid_argument(int value) {
    throw std::invalid_argument("negative input " + std::to_string(value));
}

// Runs the call's frame as a worker would and returns the one result item's value, or throws
// its error (RemoteError for an exception in the call).
template <class R>
R run_bound_call(const mproc::BoundCall& call) {
    const mproc::detail::Frame& frame = call.frame();
    auto entry = mproc::detail::find_entry(frame.header().entry);
    mproc::detail::ResultWriter out(1, nullptr);
    entry(frame, out);
    const mproc::detail::Frame results = out.finish();
    EXPECT_EQ(results.header().item_count, 1u);
    mproc::detail::ItemReader items(results.payload());
    const auto item = items.next();
    EXPECT_TRUE(items.at_end());
    return mproc::detail::decode_result<R>(item);
}

// --- SendableCallable -----------------------------------------------------------------------

TEST(SendableCallable, FunctionPointerIsSendable) {
    EXPECT_TRUE(mproc::SendableCallable<decltype(&add)>);
    EXPECT_TRUE((mproc::SendableCallable<int (*)(int, int)>));
}

TEST(SendableCallable, CapturelessLambdaIsSendable) {
    auto twice = [](int x) { return 2 * x; };
    EXPECT_TRUE(mproc::SendableCallable<decltype(twice)>);
}

TEST(SendableCallable, CapturingLambdaIsNotSendable) {
    int factor = 3;
    auto scaled = [factor](int x) { return factor * x; };
    EXPECT_FALSE(mproc::SendableCallable<decltype(scaled)>);
}

TEST(SendableCallable, StdFunctionIsNotSendable) {
    EXPECT_FALSE((mproc::SendableCallable<std::function<int(int)>>));
}

TEST(SendableCallable, FunctionReferenceAndObjectPointerAreNotSendable) {
    EXPECT_FALSE((mproc::SendableCallable<int (&)(int, int)>));
    EXPECT_FALSE(mproc::SendableCallable<int*>);
}

// --- bind -----------------------------------------------------------------------------------

TEST(Bind, EncodesATaskFrameOfOneItem) {
    const mproc::BoundCall call = mproc::bind(&add, 2, 3);
    EXPECT_EQ(call.frame().header().item_count, 1u);
    EXPECT_EQ(call.frame().kind(), mproc::detail::FrameKind::task);
}

TEST(Bind, ArgumentsRoundTripThroughTheWorkerEntry) {
    EXPECT_EQ(run_bound_call<int>(mproc::bind(&add, 2, 3)), 5);
}

TEST(Bind, CapturelessLambdaRunsThroughTheWorkerEntry) {
    auto join_words = [](std::vector<std::string> words, std::string separator) {
        std::string out;
        for (const auto& word : words) out += (out.empty() ? "" : separator) + word;
        return out;
    };
    const std::vector<std::string> words{"a", "b", "c"};
    EXPECT_EQ(run_bound_call<std::string>(mproc::bind(join_words, words, std::string("-"))),
              "a-b-c");
}

TEST(Bind, CStringArgumentArrivesAsStdString) {
    auto echo = [](auto text) {
        if constexpr (std::is_same_v<decltype(text), std::string>) {
            return text;
        } else {
            return std::string("arrived as another type than std::string");
        }
    };
    EXPECT_EQ(run_bound_call<std::string>(mproc::bind(echo, "hello")), "hello");
}

TEST(Bind, ArgumentsAreEncodedWhenBound) {
    std::string text = "before";
    const mproc::BoundCall call = mproc::bind([](std::string s) { return s; }, text);
    text = "after";
    EXPECT_EQ(run_bound_call<std::string>(call), "before");
}

TEST(Bind, CopiesShareTheEncodedCall) {
    const mproc::BoundCall call = mproc::bind(&add, 20, 22);
    const mproc::BoundCall copy = call;
    EXPECT_EQ(&copy.frame(), &call.frame());
    EXPECT_EQ(run_bound_call<int>(copy), 42);
}

TEST(Bind, CallWithoutArgumentsRuns) {
    EXPECT_EQ(run_bound_call<int>(mproc::bind([] { return 7; })), 7);
}

TEST(Bind, VoidFunctionRuns) {
    EXPECT_NO_THROW(run_bound_call<void>(mproc::bind([](int) {}, 1)));
}

TEST(Bind, ThrowingFunctionGivesRemoteErrorWithItsTypeName) {
    try {
        run_bound_call<int>(mproc::bind(&throw_invalid_argument, -4));
        FAIL() << "the call's exception did not come back as an error";
    } catch (const mproc::RemoteError& error) {
        EXPECT_EQ(error.type_name(), "std::invalid_argument");
        EXPECT_EQ(error.message(), "negative input -4");
    }
}

}  // namespace
