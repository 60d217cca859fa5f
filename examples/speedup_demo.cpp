// The point of processes: CPU-bound work runs on every core at once. This counts the primes
// below 10,000,000 twice, once in this process and once split over a Pool, and compares times.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>
#include <vector>

#include <mproc/mproc.hpp>

constexpr long kLimit = 10'000'000;
constexpr long kRanges = 16;

// Trial division: deliberately plain, so that the work is pure CPU with no shared state.
long count_primes(std::pair<long, long> range) {
    long count = 0;
    for (long n = std::max(range.first, 2L); n < range.second; ++n) {
        bool prime = n == 2 || n % 2 != 0;
        for (long d = 3; prime && d * d <= n; d += 2) prime = n % d != 0;
        count += prime ? 1 : 0;
    }
    return count;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    std::vector<std::pair<long, long>> ranges;
    for (long i = 0; i < kRanges; ++i)
        ranges.emplace_back(kLimit * i / kRanges, kLimit * (i + 1) / kRanges);

    auto start = std::chrono::steady_clock::now();
    long serial_total = 0;
    for (const auto& range : ranges) serial_total += count_primes(range);
    const double serial = seconds_since(start);

    // The pool's start-up and shutdown are inside the timing: they are part of the real cost.
    start = std::chrono::steady_clock::now();
    long pool_total = 0;
    std::size_t workers = 0;
    {
        mproc::Pool pool(mproc::process_cpu_count());
        workers = pool.processes();
        // chunksize 1: later ranges cost more (larger divisors), so handing them out one at a
        // time keeps every worker busy to the end.
        for (long count : pool.map(count_primes, ranges, 1)) pool_total += count;
    }
    const double parallel = seconds_since(start);

    if (pool_total != serial_total) {
        std::fprintf(stderr, "mismatch: serial %ld, pool %ld\n", serial_total, pool_total);
        return 1;
    }
    std::printf("primes below %ld: %ld\n", kLimit, serial_total);
    std::printf("serial: %.3f s\n", serial);
    std::printf("pool (%zu workers): %.3f s\n", workers, parallel);
    std::printf("speed-up: %.2fx\n", serial / parallel);
}
