// A progress bar that follows a pool's results as they arrive.
//
// 200 tasks of about 10 ms each, read with imap_unordered through mproc::progress. On a
// terminal the bar redraws in place on standard error; with standard error sent to a file or
// a pipe, nothing but the result is printed.

#include <chrono>
#include <cstdio>
#include <numeric>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>
#include <mproc/progress.hpp>

// The task sleeps rather than computes, so that the demo takes the same time on any machine.
int slow_square(int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return x * x;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    std::vector<int> xs(200);
    std::iota(xs.begin(), xs.end(), 0);

    long long sum = 0;
    mproc::Pool pool(4);
    // The total is the ImapRange's size; the bar counts a result once the loop is done with it.
    for (int square : mproc::progress(pool.imap_unordered(slow_square, xs), {.label = "squares"})) {
        sum += square;
    }
    std::printf("sum of the squares of 0..199: %lld\n", sum);
}
