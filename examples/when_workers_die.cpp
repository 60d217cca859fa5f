// Beyond Python's Pool: what happens when a worker dies, and what you can do about a task
// that misbehaves. A crash fails its task alone; `retries` runs a task whose worker died again;
// cancel() stops a task, running or not; max_memory_per_child replaces a worker that holds
// too much; and imap reads an endless input a window at a time.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

// Crashes its worker for x == 3, as a bug in a native library would.
int parse(int x) {
    if (x == 3) ::raise(SIGSEGV);
    return 10 * x;
}

// Dies on its first run (a flaky machine, an OOM kill), succeeds on the next.
int flaky(mproc::SharedArray<int> runs) {
    if (__atomic_add_fetch(&runs[0], 1, __ATOMIC_SEQ_CST) == 1) ::raise(SIGKILL);
    return runs[0];
}

int forever(int) {
    std::this_thread::sleep_for(std::chrono::hours(1));
    return 0;
}

// Keeps 100 MiB for the rest of its worker's life: a leak.
pid_t leaky(int) {
    static std::vector<std::string> kept;
    kept.emplace_back(100u << 20, 'x');
    return ::getpid();
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Pool pool(
        mproc::PoolOptions{.processes = 2, .retries = 1, .max_memory_per_child = 64u << 20});

    // A crash fails its task alone; the others complete, on a new worker where needed.
    auto results = pool.imap(parse, std::vector<int>{1, 2, 3, 4});
    for (auto it = results.begin(); it != results.end(); ++it) {
        try {
            std::printf("parse: %d\n", *it);
        } catch (const mproc::WorkerLost& lost) {
            std::printf("parse: WorkerLost, signal %d, after %u runs\n", lost.signal(),
                        lost.runs());
        }
    }

    // With retries = 1, a task whose worker died runs once more, on another worker.
    mproc::SharedArray<int> runs(1);
    std::printf("flaky: returned %d\n", pool.apply(flaky, runs));

    // cancel() kills the worker running the task, and no other; get() throws CancelledError.
    auto stuck = pool.apply_async(forever, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::printf("cancel: %s\n", stuck.cancel() ? "cancelled" : "already done");
    try {
        stuck.get();
    } catch (const mproc::CancelledError&) {
        std::printf("cancel: get() threw CancelledError\n");
    }

    // A worker over max_memory_per_child after a task is replaced before its next one.
    std::set<pid_t> workers;
    for (pid_t pid : pool.map(leaky, std::vector<int>(6, 0), 1)) workers.insert(pid);
    std::printf("leaky: 6 tasks of 100 MiB ran in %zu workers, none failed\n", workers.size());

    // imap over an endless input reads a bounded window ahead; leaving the loop cancels the rest.
    for (long square : pool.imap([](long x) { return x * x; }, std::views::iota(0L))) {
        if (square > 50) break;
        std::printf("endless: %ld\n", square);
    }
}
