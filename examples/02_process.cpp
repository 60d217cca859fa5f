// Step 2 of the guide again, with explicit mproc::Process objects instead of a Pool.
//
// A Process is one child running one function, like Python's multiprocessing.Process: start
// them all first, then join them all, so that they run at the same time.

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

void slow_task(int i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::printf("task %d done in process pid %d\n", i, static_cast<int>(::getpid()));
    // The child's stdout buffer is its own: flush so the line is not lost or reordered.
    std::fflush(stdout);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    const auto start = std::chrono::steady_clock::now();
    std::vector<mproc::Process> processes;
    for (int i = 0; i < 4; ++i) processes.emplace_back(slow_task, i);
    // Joining each one right after starting it would run them one after another (about 4 s).
    for (mproc::Process& p : processes) p.start();
    for (mproc::Process& p : processes) p.join();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

    std::printf("4 processes of 1 s each took %.2f s in total\n", elapsed.count());
    // Python's convention: 0 when the function returned, the value given to std::exit, 1 when
    // it threw, -N when signal N killed it.
    for (mproc::Process& p : processes) {
        std::printf("%s (pid %d): exitcode %d\n", p.name().c_str(), static_cast<int>(p.pid()),
                    p.exitcode().value());
    }
}
