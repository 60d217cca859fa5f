// Specifies include/mproc/errors.hpp and the worker's side of RemoteError: how the exception
// that escaped a task is described (src/worker/exception_capture.hpp).

#include "mproc/errors.hpp"

#include <gtest/gtest.h>

#include <cereal/archives/binary.hpp>
#include <csignal>
#include <exception>
#include <future>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/detail/error_info.hpp"
#include "worker/exception_capture.hpp"

namespace app {
struct ParseError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
}  // namespace app

// Outside any unnamed namespace so that -rdynamic puts its name in the dynamic symbol table,
// where the traceback looks names up.
[[gnu::noinline]] void deep_thrower_for_test() {
    throw std::runtime_error("thrown deep down");
}

namespace {

using mproc::detail::capture_current_exception;
using mproc::detail::enable_throw_backtraces;
using mproc::detail::ErrorInfo;

template <class Body>
ErrorInfo capture_from(Body&& body) {
    try {
        body();
    } catch (...) {
        return capture_current_exception();
    }
    ADD_FAILURE() << "the body threw nothing";
    return {};
}

std::string first_line(const std::string& text) {
    return text.substr(0, text.find('\n'));
}

constexpr const char* kFallbackNote = "no backtrace was recorded at the throw";

TEST(RemoteError, KeepsTheTypeNameMessageAndTraceback) {
    const mproc::RemoteError error("app::ParseError", "bad digit", "#0  app::parse()");

    EXPECT_EQ(error.type_name(), "app::ParseError");
    EXPECT_EQ(error.message(), "bad digit");
    EXPECT_EQ(error.traceback(), "#0  app::parse()");
}

TEST(RemoteError, WhatHoldsTheTypeNameMessageAndTraceback) {
    const mproc::RemoteError error("app::ParseError", "bad digit", "#0  app::parse()");
    const std::string what = error.what();

    EXPECT_NE(what.find("app::ParseError"), std::string::npos) << what;
    EXPECT_NE(what.find("bad digit"), std::string::npos) << what;
    EXPECT_NE(what.find("#0  app::parse()"), std::string::npos) << what;
}

TEST(WorkerLost, KilledBySignalCarriesThePidAndNamesTheSignal) {
    const mproc::WorkerLost error(4242, 0, SIGKILL);

    EXPECT_EQ(error.pid(), 4242);
    EXPECT_EQ(error.exit_code(), 0);
    EXPECT_EQ(error.signal(), SIGKILL);
    EXPECT_NE(std::string(error.what()).find("signal 9 (SIGKILL)"), std::string::npos)
        << error.what();
}

TEST(WorkerLost, ThatExitedCarriesItsExitCode) {
    const mproc::WorkerLost error(4242, 3, 0);

    EXPECT_EQ(error.exit_code(), 3);
    EXPECT_EQ(error.signal(), 0);
    EXPECT_NE(std::string(error.what()).find("exited with code 3"), std::string::npos)
        << error.what();
}

template <class... Errors>
constexpr bool all_derive_from_error_and_runtime_error() {
    return ((std::is_base_of_v<mproc::Error, Errors> &&
             std::is_base_of_v<std::runtime_error, Errors>)&&...);
}

TEST(Errors, EveryOneDerivesFromMprocErrorAndStdRuntimeError) {
    EXPECT_TRUE((all_derive_from_error_and_runtime_error<
                 mproc::Error, mproc::RemoteError, mproc::WorkerLost, mproc::TimeoutError,
                 mproc::StateError, mproc::Empty, mproc::Full, mproc::SerializationError,
                 mproc::AuthenticationError>()));
}

TEST(ErrorInfo, SurvivesASerializationRoundTrip) {
    const ErrorInfo sent{"app::ParseError", "bad digit", "#0  app::parse()\n#1  main"};
    std::stringstream bytes;
    {
        cereal::BinaryOutputArchive out(bytes);
        out(sent);
    }
    ErrorInfo received;
    {
        cereal::BinaryInputArchive in(bytes);
        in(received);
    }

    EXPECT_EQ(received.type_name, sent.type_name);
    EXPECT_EQ(received.message, sent.message);
    EXPECT_EQ(received.traceback, sent.traceback);
}

TEST(CaptureCurrentException, GivesTheTypeAndMessageOfAStdException) {
    const ErrorInfo info = capture_from([] { throw std::runtime_error("disk full"); });

    EXPECT_EQ(info.type_name, "std::runtime_error");
    EXPECT_EQ(info.message, "disk full");
}

TEST(CaptureCurrentException, GivesTheQualifiedNameOfAUserType) {
    const ErrorInfo info = capture_from([] { throw app::ParseError("bad digit"); });

    EXPECT_EQ(info.type_name, "app::ParseError");
    EXPECT_EQ(info.message, "bad digit");
}

TEST(CaptureCurrentException, GivesTheTypeAndAFixedMessageForANonStdException) {
    const ErrorInfo info = capture_from([] { throw 42; });

    EXPECT_EQ(info.type_name, "int");
    EXPECT_EQ(info.message, mproc::detail::kNonStdExceptionMessage);
}

TEST(CaptureCurrentException, OutsideACatchBlockSaysThereIsNoException) {
    const ErrorInfo info = capture_current_exception();

    EXPECT_EQ(info.type_name, "(unknown)");
    EXPECT_NE(info.message.find("no C++ exception"), std::string::npos) << info.message;
}

TEST(CaptureCurrentException, TracebackNamesTheFunctionThatThrew) {
    enable_throw_backtraces();
    const ErrorInfo info = capture_from([] { deep_thrower_for_test(); });

    EXPECT_NE(info.traceback.find("deep_thrower_for_test"), std::string::npos) << info.traceback;
}

TEST(CaptureCurrentException, TracebackStartsAtTheThrowNotInTheHook) {
    enable_throw_backtraces();
    const ErrorInfo info = capture_from([] { deep_thrower_for_test(); });

    EXPECT_NE(first_line(info.traceback).find("deep_thrower_for_test"), std::string::npos)
        << info.traceback;
}

TEST(CaptureCurrentException, ThrowFromTheStandardLibraryIsRecordedToo) {
    enable_throw_backtraces();
    const ErrorInfo info = capture_from([] {
        const std::vector<int> numbers(1);
        return numbers.at(5);
    });

    EXPECT_EQ(info.type_name, "std::out_of_range");
    EXPECT_FALSE(info.traceback.empty());
    EXPECT_EQ(info.traceback.find(kFallbackNote), std::string::npos) << info.traceback;
}

TEST(CaptureCurrentException, RethrowKeepsTheBacktraceOfTheOriginalThrow) {
    enable_throw_backtraces();
    const ErrorInfo info = capture_from([] {
        try {
            deep_thrower_for_test();
        } catch (...) {
            // A cleanup that throws and handles its own exception before the rethrow.
            try {
                throw std::logic_error("cleanup failed");
            } catch (const std::logic_error&) {
            }
            throw;
        }
    });

    EXPECT_EQ(info.message, "thrown deep down");
    EXPECT_NE(first_line(info.traceback).find("deep_thrower_for_test"), std::string::npos)
        << info.traceback;
}

TEST(CaptureCurrentException, ExceptionRethrownOnAnotherThreadKeepsTheBacktraceOfItsThrow) {
    enable_throw_backtraces();
    const ErrorInfo info =
        capture_from([] { std::async(std::launch::async, [] { deep_thrower_for_test(); }).get(); });

    EXPECT_NE(first_line(info.traceback).find("deep_thrower_for_test"), std::string::npos)
        << info.traceback;
}

TEST(CaptureCurrentException, NewExceptionNeverInheritsTheBacktraceOfAFreedOne) {
    enable_throw_backtraces();
    // The allocator tends to hand the freed object's address to the next exception of the same
    // size, which is how a stale record could be mistaken for the new exception's own.
    try {
        deep_thrower_for_test();
    } catch (const std::runtime_error&) {
    }
    const ErrorInfo info = capture_from(
        [] { std::rethrow_exception(std::make_exception_ptr(std::runtime_error("late"))); });

    EXPECT_EQ(info.traceback.find("deep_thrower_for_test"), std::string::npos) << info.traceback;
}

TEST(CaptureCurrentException, UnrecordedThrowFallsBackToTheStackWhereItWasCaught) {
    enable_throw_backtraces();
    // make_exception_ptr and rethrow_exception raise without passing through __cxa_throw.
    const ErrorInfo info = capture_from(
        [] { std::rethrow_exception(std::make_exception_ptr(std::runtime_error("late"))); });

    EXPECT_EQ(info.message, "late");
    EXPECT_NE(first_line(info.traceback).find(kFallbackNote), std::string::npos) << info.traceback;
    EXPECT_NE(info.traceback.find("\n#0  "), std::string::npos) << info.traceback;
}

}  // namespace
