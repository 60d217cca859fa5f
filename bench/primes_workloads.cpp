// primes_speedup and its yardstick primes_threads_speedup: the same CPU-bound work (primes below
// 400000 by trial division, 16 ranges) run serially and then over a pool of processes or of
// threads. The ratio serial time / parallel time is the speed-up; the thread pool's is what a
// process pool can at best approach, since threads pay no cost to send tasks or results.
//
// The whole map takes about 16 ms here, against Python's second, so one trial is at the mercy of
// the scheduler: on this shared VM two runnable processes or threads now and then land on one
// CPU and stay there until the kernel's next load balance, a few ms later, which costs such a
// trial up to 40% (docs/PERFORMANCE.md). Each row is therefore the median of `trials` trials,
// each with its own serial run and its own new pool or threads, the same for both rows.

#include <atomic>
#include <cstdint>
#include <latch>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench.hpp"
#include "tasks.hpp"

namespace mproc_bench {

namespace {

void check_total(const char* what, std::int64_t total) {
    if (total != primes_below_limit) {
        throw WrongResult(std::string(what) + " counted " + std::to_string(total) +
                          " primes, not " + std::to_string(primes_below_limit));
    }
}

// Seconds to count the primes of every range one after the other, in this thread.
double serial_seconds(const std::vector<PrimeRange>& ranges) {
    std::int64_t total = 0;
    const double elapsed = seconds([&] {
        for (const PrimeRange& range : ranges) total += count_primes(range);
    });
    check_total("the serial run", total);
    return elapsed;
}

constexpr int trials = 5;

template <class Trial>
Measurement median_speedup(Trial trial) {
    std::vector<double> speedups;
    for (int i = 0; i < trials; ++i) speedups.push_back(trial());
    return {median(std::move(speedups)), "x"};
}

// As python_baseline.py does: the pool is made outside the timing and not warmed, and map()
// hands the ranges out one at a time (chunk size 1), since later ranges cost more.
double pool_trial(const Settings& settings) {
    const std::vector<PrimeRange> ranges = prime_ranges();
    const double serial = serial_seconds(ranges);
    mproc::Pool pool(settings.workers);
    std::int64_t total = 0;
    const double parallel = seconds([&] {
        for (std::int64_t count : pool.map(count_primes, ranges, 1)) total += count;
    });
    check_total("the pool", total);
    return serial / parallel;
}

// The same over settings.workers std::threads, started before the timing and released
// together; each takes the next range until none is left (chunk size 1, as the pool).
double threads_trial(const Settings& settings) {
    const std::vector<PrimeRange> ranges = prime_ranges();
    const double serial = serial_seconds(ranges);
    std::vector<std::int64_t> counts(ranges.size());
    std::atomic<std::size_t> next{0};
    std::latch go(1);
    std::vector<std::jthread> threads;
    auto work = [&] {
        go.wait();
        for (std::size_t i; (i = next.fetch_add(1)) < ranges.size();)
            counts[i] = count_primes(ranges[i]);
    };
    try {
        for (std::size_t t = 0; t < settings.workers; ++t) threads.emplace_back(work);
    } catch (...) {
        go.count_down();  // let the threads already started finish, so that they can be joined
        throw;
    }
    const double parallel = seconds([&] {
        go.count_down();
        for (auto& thread : threads) thread.join();
    });
    check_total("the thread pool", std::accumulate(counts.begin(), counts.end(), std::int64_t{0}));
    return serial / parallel;
}

}  // namespace

Measurement primes_speedup(const Settings& settings) {
    return median_speedup([&] { return pool_trial(settings); });
}

Measurement primes_threads_speedup(const Settings& settings) {
    return median_speedup([&] { return threads_trial(settings); });
}

}  // namespace mproc_bench
