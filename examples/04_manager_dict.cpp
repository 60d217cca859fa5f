// Step 4: share state through a Manager. The manager is a server process that holds shared
// containers; proxies to them (here a dict) can be passed to any process, and every process
// sees the same container.
//
// Each worker sums the squares of one range of numbers and writes its partial sum into the
// dict, keyed by the range's start. The parent then reads the dict back, ordered by key, and
// the values as a list. A dict proxy's update() runs a function atomically, under the dict's
// own lock: the workers use it to count the ranges done without a lock of their own.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <mproc/mproc.hpp>

using PartialSums = mproc::DictProxy<long long, long long>;

long long count_one(std::optional<long long> done) {
    return done.value_or(0) + 1;
}

void sum_of_squares(PartialSums sums, mproc::DictProxy<std::string, long long> stats,
                    long long start, long long stop) {
    long long sum = 0;
    for (long long i = start; i < stop; ++i) sum += i * i;
    sums.set(start, sum);
    stats.update("ranges done", count_one);
    std::printf("worker pid %d summed [%lld, %lld)\n", static_cast<int>(::getpid()), start, stop);
    std::fflush(stdout);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    mproc::Manager manager;  // starts the server process; it ends with `manager`
    PartialSums sums = manager.dict<long long, long long>();
    auto stats = manager.dict<std::string, long long>();

    const long long n = 1'000'000;
    const long long parts = 8;
    std::vector<
        std::tuple<PartialSums, mproc::DictProxy<std::string, long long>, long long, long long>>
        ranges;
    for (long long p = 0; p < parts; ++p) {
        ranges.emplace_back(sums, stats, p * n / parts, (p + 1) * n / parts);
    }
    {
        mproc::Pool pool(4);
        pool.starmap(sum_of_squares, ranges);
    }

    // items() comes in insertion order, which is the order the workers finished in.
    std::vector<std::pair<long long, long long>> by_start = sums.items();
    std::sort(by_start.begin(), by_start.end());
    std::printf("parent pid %d reads the dict, ordered by key:\n", static_cast<int>(::getpid()));
    for (const auto& [start, sum] : by_start) std::printf("  %7lld: %lld\n", start, sum);

    std::vector<long long> values;
    for (const auto& entry : by_start) values.push_back(entry.second);
    std::printf("values as a list: [");
    long long total = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
        std::printf("%s%lld", i == 0 ? "" : ", ", values[i]);
        total += values[i];
    }
    std::printf("]\n");
    std::printf("%lld ranges done; sum of squares below %lld = %lld\n", stats.at("ranges done"), n,
                total);
}
