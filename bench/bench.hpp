#pragma once

// What every workload of mproc_bench shares: the settings it runs with, the value it measures,
// and a stopwatch. The workloads themselves are listed, in the order they run, in main.cpp.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace mproc_bench {

struct Settings {
    // Worker processes (and threads, for primes_threads_speedup); --workers N.
    std::size_t workers = 2;
};

// One row's result, as python_baseline.py reports it: larger is better.
struct Measurement {
    double value;
    std::string_view unit;
};

// Thrown by a workload that needs something this build of mproc does not have yet (a start
// method, say): the row is skipped with the reason on stderr, not counted as a failure.
class Unavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Thrown when a workload's results are wrong: its timing would mean nothing.
class WrongResult : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Throws WrongResult unless results are the squares of 0..n-1, in order.
void check_squares(const std::vector<std::int64_t>& results, std::int64_t n);

// Seconds that f() takes, on the steady clock (Python's perf_counter).
template <class F>
double seconds(F&& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The median rather than the best: the number a user can expect on this machine, still robust
// to the odd repetition that lost its vCPU.
inline double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t middle = values.size() / 2;
    return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// The workloads. Each builds what it needs (a pool, a queue), times the same work as the row of
// the same name in python_baseline.py, checks the results outside the timing, and tears
// everything down before it returns, so that any row can run alone (--only).
Measurement map_small_default(const Settings& settings);
Measurement map_small_chunk1(const Settings& settings);
Measurement apply_async(const Settings& settings);
Measurement apply_roundtrip(const Settings& settings);
Measurement large_arg_16mib(const Settings& settings);
Measurement shared_array_arg_1mib(const Settings& settings);
Measurement shared_array_arg_256mib(const Settings& settings);
Measurement primes_speedup(const Settings& settings);
Measurement primes_threads_speedup(const Settings& settings);
Measurement queue_throughput(const Settings& settings);
Measurement pool_start_fork(const Settings& settings);
Measurement pool_start_spawn(const Settings& settings);
Measurement pool_start_forkserver(const Settings& settings);

// The Manager rows, written to the contract of API.md, join the build once the library has
// <mproc/manager.hpp>.
#if __has_include(<mproc/manager.hpp>)
#define MPROC_BENCH_HAS_MANAGER 1
Measurement manager_dict_write(const Settings& settings);
Measurement manager_dict_read(const Settings& settings);
#endif

}  // namespace mproc_bench
