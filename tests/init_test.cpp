// Specifies include/mproc/init.hpp in the program that the user started: init() returns there.
// (The worker side, where init() serves tasks and never returns, comes with spawn.)

#include "mproc/init.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

namespace {

// What main would pass: argv[argc] is a null pointer.
struct Arguments {
    char program[16] = "init_test";
    char* argv[2] = {program, nullptr};
    int argc = 1;
};

TEST(Init, ReturnsInTheProgramTheUserStarted) {
    Arguments args;
    const pid_t pid = ::getpid();
    mproc::init(args.argc, args.argv);
    // Still the same process, running on past init: it neither forked off nor replaced it.
    EXPECT_EQ(::getpid(), pid);
}

TEST(Init, InitializedIsTrueAfterInit) {
    Arguments args;
    mproc::init(args.argc, args.argv);
    EXPECT_TRUE(mproc::initialized());
}

TEST(Init, CallingItTwiceIsHarmless) {
    Arguments args;
    const pid_t pid = ::getpid();
    mproc::init(args.argc, args.argv);
    mproc::init(args.argc, args.argv);
    EXPECT_EQ(::getpid(), pid);
    EXPECT_TRUE(mproc::initialized());
}

TEST(Init, LeavesArgumentsUntouched) {
    Arguments args;
    mproc::init(args.argc, args.argv);
    EXPECT_EQ(args.argc, 1);
    EXPECT_STREQ(args.argv[0], "init_test");
    EXPECT_EQ(args.argv[1], nullptr);
}

}  // namespace
