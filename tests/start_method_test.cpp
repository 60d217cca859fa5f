// Specifies include/mproc/start_method.hpp: the program-wide default start method.

#include "mproc/start_method.hpp"

#include <gtest/gtest.h>

namespace {

using mproc::StartMethod;

// Puts fork back when a test ends, even when an assertion ended it early, so that the tests do
// not depend on their order.
struct RestoreFork {
    ~RestoreFork() { mproc::set_start_method(StartMethod::fork); }
};

TEST(StartMethod, DefaultIsFork) {
    EXPECT_EQ(mproc::get_start_method(), StartMethod::fork);
}

TEST(StartMethod, SetStartMethodChangesGetStartMethod) {
    RestoreFork restore;
    mproc::set_start_method(StartMethod::spawn);
    EXPECT_EQ(mproc::get_start_method(), StartMethod::spawn);
    mproc::set_start_method(StartMethod::forkserver);
    EXPECT_EQ(mproc::get_start_method(), StartMethod::forkserver);
    mproc::set_start_method(StartMethod::fork);
    EXPECT_EQ(mproc::get_start_method(), StartMethod::fork);
}

}  // namespace
