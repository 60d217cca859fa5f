// The main of every test program: mproc::init first, as in any program that uses mproc, so
// that the processes the spawn and forkserver start methods run serve instead of testing.
#include <gtest/gtest.h>

#include "mproc/init.hpp"

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
