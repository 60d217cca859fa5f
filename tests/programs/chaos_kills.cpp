// Kills under load: a map, an imap_unordered and apply_async calls of 100,000 quick tasks each
// (40 us), while a thread SIGKILLs a random worker every ~50 ms. Each task counts its runs in
// shared memory. Asserts that no result is wrong, that every task not running in a killed
// worker completes, that the pool works afterwards, and that the tasks that ran more than once
// are at most 2% of each load (the task a killed worker was running fails with WorkerLost and
// is not run again). Prints the counts. Exit status 0 when every load passes.
//
// Usage: chaos_kills [TASKS]   (default 100000)

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include "mproc/mproc.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;

// Inherited by the workers (fork): every run of task x counts in runs[x].
mproc::SharedArray<int>* runs = nullptr;

long task(long x) {
    __atomic_add_fetch(&(*runs)[static_cast<std::size_t>(x)], 1, __ATOMIC_RELAXED);
    const auto until = std::chrono::steady_clock::now() + 40us;
    while (std::chrono::steady_clock::now() < until) {
    }
    return 3 * x + 1;
}

// SIGKILLs a random worker of the pool every ~50 ms while it lives.
class Killer {
  public:
    explicit Killer(pid_t launcher)
        : thread_([this, launcher] {
              std::mt19937 random(12345);
              while (!stop_.load()) {
                  std::this_thread::sleep_for(50ms);
                  const auto workers = mproc::testing::child_pids(launcher);
                  if (workers.empty()) continue;
                  ::kill(workers[random() % workers.size()], SIGKILL);
                  kills_.fetch_add(1);
              }
          }) {}
    int stop() {
        stop_.store(true);
        thread_.join();
        return kills_.load();
    }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<int> kills_{0};
    std::thread thread_;
};

struct Outcome {
    long completed = 0;  // results checked
    long lost = 0;       // tasks failed with WorkerLost (for maps: maps failed, each by one)
    long wrong = 0;
    bool per_task = true;  // completed and lost count tasks (imap, apply_async), not maps
};

// Runs one load under kills and checks it; false when it failed.
bool run_load(const char* name, long tasks, pid_t launcher,
              const std::function<Outcome(long)>& load) {
    for (long x = 0; x < tasks; ++x) (*runs)[static_cast<std::size_t>(x)] = 0;
    Killer killer(launcher);
    const auto started = std::chrono::steady_clock::now();
    const Outcome outcome = load(tasks);
    const int kills = killer.stop();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    long never = 0;
    long again = 0;
    for (long x = 0; x < tasks; ++x) {
        const int count = (*runs)[static_cast<std::size_t>(x)];
        never += count == 0 ? 1 : 0;
        again += count > 1 ? 1 : 0;
    }
    const double again_share = 100.0 * static_cast<double>(again) / static_cast<double>(tasks);
    std::printf(
        "%-16s %6.2f s  kills %4d  completed %7ld  lost %4ld  never ran %4ld  ran again "
        "%5ld (%.2f%%)  wrong %ld\n",
        name, seconds, kills, outcome.completed, outcome.lost, never, again, again_share,
        outcome.wrong);
    bool ok = true;
    if (outcome.wrong != 0) ok = false, std::printf("  FAIL: wrong results\n");
    // A task killed before its first line ran never counted a run: it is among the lost.
    if (never > (outcome.per_task ? outcome.lost : kills)) {
        ok = false;
        std::printf("  FAIL: tasks that were not lost never ran\n");
    }
    if (outcome.per_task && outcome.completed + outcome.lost != tasks) {
        ok = false;
        std::printf("  FAIL: %ld tasks neither completed nor failed\n",
                    tasks - outcome.completed - outcome.lost);
    }
    // A lost task is one a killed worker was running: at most one per kill.
    if (outcome.lost > kills) ok = false, std::printf("  FAIL: more tasks lost than kills\n");
    if (again_share > 2.0) ok = false, std::printf("  FAIL: over 2%% of the tasks ran again\n");
    // The values of tasks of numbers survive their worker: what runs again is the rare task
    // of a quick chunk whose results were held back, at most a few for each kill.
    if (again > 4L * kills)
        ok = false, std::printf("  FAIL: more tasks ran again than kills allow\n");
    return ok;
}

// A map reports its first error only: the load is maps of 5000 tasks, each checked whole.
Outcome map_load(mproc::Pool& pool, long tasks, std::size_t chunksize) {
    Outcome outcome;
    outcome.per_task = false;
    constexpr long block = 5000;
    for (long first = 0; first < tasks; first += block) {
        const long end = std::min(tasks, first + block);
        try {
            const auto values = pool.map(task, std::views::iota(first, end), chunksize);
            for (long x = first; x < end; ++x) {
                outcome.wrong += values[static_cast<std::size_t>(x - first)] != 3 * x + 1;
            }
            outcome.completed += end - first;
        } catch (const mproc::WorkerLost&) {
            ++outcome.lost;
        }
    }
    return outcome;
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    const long tasks = argc > 1 ? std::atol(argv[1]) : 100000;
    mproc::SharedArray<int> counts(static_cast<std::size_t>(tasks));
    runs = &counts;
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = mproc::StartMethod::fork});
    const auto launchers = mproc::testing::child_pids(::getpid());
    if (launchers.size() != 1) {
        std::printf("FAIL: expected the pool's launcher as the only child\n");
        return 1;
    }
    const pid_t launcher = launchers.front();
    bool ok = true;
    ok &=
        run_load("map chunksize 1", tasks, launcher, [&](long n) { return map_load(pool, n, 1); });
    ok &= run_load("map default", tasks, launcher, [&](long n) { return map_load(pool, n, 0); });
    ok &= run_load("imap_unordered", tasks, launcher, [&](long n) {
        Outcome outcome;
        auto results = pool.imap_unordered(task, std::views::iota(0L, n));
        for (auto it = results.begin(); it != results.end(); ++it) {
            try {
                const long value = *it;
                outcome.wrong += (value - 1) % 3 != 0 || value < 1 || value > 3 * n - 2;
                ++outcome.completed;
            } catch (const mproc::WorkerLost&) {
                ++outcome.lost;
            }
        }
        return outcome;
    });
    ok &= run_load("apply_async", tasks, launcher, [&](long n) {
        Outcome outcome;
        std::vector<mproc::AsyncResult<long>> results;
        results.reserve(static_cast<std::size_t>(n));
        for (long x = 0; x < n; ++x) results.push_back(pool.apply_async(task, x));
        for (long x = 0; x < n; ++x) {
            try {
                outcome.wrong += results[static_cast<std::size_t>(x)].get() != 3 * x + 1;
                ++outcome.completed;
            } catch (const mproc::WorkerLost&) {
                ++outcome.lost;
            }
        }
        return outcome;
    });
    // The pool works afterwards.
    const auto after = pool.map(task, std::views::iota(0L, 1000L));
    for (long x = 0; x < 1000; ++x) ok &= after[static_cast<std::size_t>(x)] == 3 * x + 1;
    std::printf("%s\n", ok ? "chaos: every load passed" : "chaos: FAILED");
    return ok ? 0 : 1;
}
