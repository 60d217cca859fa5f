// manager_dict_write and manager_dict_read: a dict served by a Manager process. Pool workers
// write keys k -> k * k for k in 0..20000 (each worker a contiguous share, as Python's
// write_squares over W ranges), then the parent reads the keys back one by one.

#include "bench.hpp"

#ifdef MPROC_BENCH_HAS_MANAGER

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <mproc/manager.hpp>
#include <mproc/mproc.hpp>

namespace mproc_bench {

namespace {

using SquaresDict = mproc::DictProxy<std::int64_t, std::int64_t>;

constexpr std::int64_t keys = 20'000;

// Python's write_squares: d[k] = k * k for k in [lo, hi), one request per key.
std::int64_t write_squares(SquaresDict dict, std::int64_t lo, std::int64_t hi) {
    for (std::int64_t k = lo; k < hi; ++k) dict.set(k, k * k);
    return hi - lo;
}

// Seconds for a pool of settings.workers to write every key, each worker one range. As in
// python_baseline.py, the pool is made outside the timing and not warmed.
double write_all(const Settings& settings, SquaresDict dict) {
    const auto workers = static_cast<std::int64_t>(settings.workers);
    std::vector<std::tuple<SquaresDict, std::int64_t, std::int64_t>> shares;
    for (std::int64_t i = 0; i < workers; ++i) {
        shares.emplace_back(dict, i * keys / workers, (i + 1) * keys / workers);
    }
    mproc::Pool pool(settings.workers);
    std::int64_t written = 0;
    const double elapsed = seconds([&] {
        for (std::int64_t count : pool.starmap(write_squares, shares)) written += count;
    });
    if (written != keys || dict.size() != static_cast<std::size_t>(keys)) {
        throw WrongResult("the dict holds " + std::to_string(dict.size()) + " keys, not " +
                          std::to_string(keys));
    }
    return elapsed;
}

}  // namespace

Measurement manager_dict_write(const Settings& settings) {
    mproc::Manager manager;
    return {keys / write_all(settings, manager.dict<std::int64_t, std::int64_t>()), "ops/s"};
}

Measurement manager_dict_read(const Settings& settings) {
    mproc::Manager manager;
    SquaresDict dict = manager.dict<std::int64_t, std::int64_t>();
    write_all(settings, dict);
    std::vector<std::int64_t> values;
    values.reserve(keys);
    const double elapsed = seconds([&] {
        for (std::int64_t k = 0; k < keys; ++k) values.push_back(dict.at(k));
    });
    for (std::int64_t k = 0; k < keys; ++k) {
        if (values[static_cast<std::size_t>(k)] != k * k) {
            throw WrongResult("key " + std::to_string(k) + " does not hold its square");
        }
    }
    return {keys / elapsed, "ops/s"};
}

}  // namespace mproc_bench

#endif  // MPROC_BENCH_HAS_MANAGER
