// Step 2 of the guide: a Pool runs tasks in several worker processes at once.
//
// Four tasks that each take about a second finish in about one second in total, not four,
// because each runs in its own worker process.

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

// The task sleeps rather than computes, so that the four overlap even on a machine with fewer
// than four cores.
int slow_task(int i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::printf("task %d done in worker pid %d\n", i, static_cast<int>(::getpid()));
    // Each worker has its own stdout buffer; flushing now keeps the line from arriving after
    // the parent's output, or not at all if the worker is killed.
    std::fflush(stdout);
    return i * i;
}

int main(int argc, char** argv) {
    // First statement of main, as the guide asks: a process mproc starts to serve tasks must
    // never run the rest of main.
    mproc::init(argc, argv);

    const auto start = std::chrono::steady_clock::now();
    std::vector<int> squares;
    {
        // Four workers for four tasks, whatever the number of CPUs: they wait, not compute.
        mproc::Pool pool(4);
        // chunksize 1: one task per worker. Bundling them would make one worker sleep twice.
        squares = pool.map(slow_task, std::views::iota(0, 4), 1);
    }  // The pool's destructor waits for its workers, so the time below includes them.
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

    std::printf("results:");
    for (int s : squares) std::printf(" %d", s);
    std::printf("\n4 tasks of 1 s each took %.2f s in total (one after another: about 4 s)\n",
                elapsed.count());
}
