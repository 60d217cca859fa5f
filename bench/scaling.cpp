// mproc_bench --scaling: how the per-task overhead of Pool::map grows with the number of workers
// and the number of tasks.
//
// Overhead, here, is the wall time of one map(square, 0..N) call on a warmed pool, from the call
// to the returned vector, divided by N. square costs about a nanosecond, so nearly all of that
// time is mproc's: encoding the arguments, sending the chunks, each worker's decoding, call and
// encoding, receiving and storing the results, plus the fixed cost of one map() call spread over
// its N tasks (which is why small N costs more per task). The workers run at once, so this is
// the inverse of throughput, not the latency of one task.

#include "scaling.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

#include <mproc/mproc.hpp>

#include "tasks.hpp"

namespace mproc_bench {

namespace {

// Each cell times at least min_repetitions maps, then more until they have taken time_budget
// seconds, and at most max_repetitions. Maps of a thousand tasks take tens of microseconds to a
// millisecond and get up to 101 repetitions, so that one preemption on a shared machine does not
// decide the cell; a map of a million one-task chunks takes about a second and gets five, which
// keeps the whole grid of bench/scaling.sh within a minute or two. (The heading of that script's
// table states these bounds.)
constexpr std::size_t min_repetitions = 5;
constexpr std::size_t max_repetitions = 101;
constexpr double time_budget_seconds = 0.5;

// Before its timings each mode runs one map with its own chunk size and up to this many tasks:
// the workers' and the collector's buffers have grown and the code is paged in, but a million
// one-task chunks are not run one time more than needed.
constexpr std::int64_t warm_up_tasks = 10'000;

struct ChunkingMode {
    std::string_view name;
    std::size_t chunksize;
};

constexpr ChunkingMode chunking_modes[] = {
    {"map_default", 0},
    {"map_chunk1", 1},
};

double map_seconds(mproc::Pool& pool, std::int64_t tasks, std::size_t chunksize) {
    std::vector<std::int64_t> results;
    const double elapsed = seconds(
        [&] { results = pool.map(square, std::views::iota(std::int64_t{0}, tasks), chunksize); });
    check_squares(results, tasks);
    return elapsed;
}

double overhead_ns_per_task(mproc::Pool& pool, std::int64_t tasks, std::size_t chunksize) {
    map_seconds(pool, std::min(tasks, warm_up_tasks), chunksize);
    std::vector<double> timings;
    double total = 0;
    while (timings.size() < min_repetitions ||
           (total < time_budget_seconds && timings.size() < max_repetitions)) {
        timings.push_back(map_seconds(pool, tasks, chunksize));
        total += timings.back();
    }
    return median(timings) * 1e9 / static_cast<double>(tasks);
}

}  // namespace

int run_scaling(const Settings& settings, std::int64_t tasks) {
    try {
        mproc::Pool pool(settings.workers);
        for (const ChunkingMode& mode : chunking_modes) {
            const double overhead = overhead_ns_per_task(pool, tasks, mode.chunksize);
            std::printf("%.*s %.6g ns/task\n", static_cast<int>(mode.name.size()), mode.name.data(),
                        overhead);
            std::fflush(stdout);
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "mproc_bench: --scaling failed: %s\n", error.what());
        return 1;
    }
    return 0;
}

}  // namespace mproc_bench
