// pool_start_*: the whole life of a small pool, timed once: make a pool of settings.workers
// with the start method, map square over a task per worker, close and join.

#include <cstdint>
#include <optional>
#include <ranges>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench.hpp"
#include "tasks.hpp"

namespace mproc_bench {

namespace {

Measurement pool_start(const Settings& settings, mproc::StartMethod method) {
    const auto tasks = static_cast<std::int64_t>(settings.workers);
    std::vector<std::int64_t> results;
    const double elapsed = seconds([&] {
        std::optional<mproc::Pool> pool;
        try {
            pool.emplace(mproc::PoolOptions{.processes = settings.workers, .start_method = method});
        } catch (const mproc::StateError& error) {
            // A build without this start method says so when the pool is made.
            if (method == mproc::StartMethod::fork) throw;
            throw Unavailable(error.what());
        }
        results = pool->map(square, std::views::iota(std::int64_t{0}, tasks));
        pool->close();
        pool->join();
    });
    if (results.size() != static_cast<std::size_t>(tasks)) throw WrongResult("a task was lost");
    return {1.0 / elapsed, "starts/s"};
}

}  // namespace

Measurement pool_start_fork(const Settings& settings) {
    return pool_start(settings, mproc::StartMethod::fork);
}

Measurement pool_start_spawn(const Settings& settings) {
    return pool_start(settings, mproc::StartMethod::spawn);
}

Measurement pool_start_forkserver(const Settings& settings) {
    return pool_start(settings, mproc::StartMethod::forkserver);
}

}  // namespace mproc_bench
