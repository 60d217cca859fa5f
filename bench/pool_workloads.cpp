// The rows that time one warmed pool: map, apply and large arguments. Each makes its own pool
// of settings.workers processes and warms it with map(square, 0..100), as python_baseline.py
// warms its pool once before the first timing, so worker start-up is never inside a timing.

#include <cstdint>
#include <ranges>
#include <string>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench.hpp"
#include "tasks.hpp"

namespace mproc_bench {

void check_squares(const std::vector<std::int64_t>& results, std::int64_t n) {
    if (results.size() != static_cast<std::size_t>(n)) {
        throw WrongResult("expected " + std::to_string(n) + " results, got " +
                          std::to_string(results.size()));
    }
    for (std::int64_t i = 0; i < n; ++i) {
        if (results[static_cast<std::size_t>(i)] != i * i) {
            throw WrongResult("result " + std::to_string(i) + " is not its square");
        }
    }
}

namespace {

constexpr std::int64_t warm_up_tasks = 100;

mproc::Pool warmed_pool(const Settings& settings) {
    mproc::Pool pool(settings.workers);
    pool.map(square, std::views::iota(std::int64_t{0}, warm_up_tasks));
    return pool;
}

// The size of a shared array, without touching its elements: what the call costs is the
// array's passage, as a descriptor, into the worker and back out of it.
std::size_t shared_length(mproc::SharedArray<std::uint8_t> array) {
    return array.size();
}

// map(shared_length, the same array named n times) with chunk size 1, in tasks per second.
Measurement shared_array_tasks(const Settings& settings, std::size_t bytes) {
    constexpr int tasks = 2'000;
    mproc::Pool pool = warmed_pool(settings);
    const mproc::SharedArray<std::uint8_t> array(bytes);
    auto arrays = std::views::iota(0, tasks) |
                  std::views::transform(
                      [&array](int) -> const mproc::SharedArray<std::uint8_t>& { return array; });
    std::vector<std::size_t> sizes;
    const double elapsed = seconds([&] { sizes = pool.map(shared_length, arrays, 1); });
    for (std::size_t size : sizes) {
        if (size != bytes) throw WrongResult("a worker saw " + std::to_string(size) + " bytes");
    }
    return {tasks / elapsed, "tasks/s"};
}

// map(square, 0..n) with the given chunk size (0: the default, about four chunks per worker).
Measurement map_squares(const Settings& settings, std::int64_t n, std::size_t chunksize) {
    mproc::Pool pool = warmed_pool(settings);
    std::vector<std::int64_t> results;
    const double elapsed = seconds(
        [&] { results = pool.map(square, std::views::iota(std::int64_t{0}, n), chunksize); });
    check_squares(results, n);
    return {static_cast<double>(n) / elapsed, "items/s"};
}

}  // namespace

Measurement map_small_default(const Settings& settings) {
    return map_squares(settings, 1'000'000, 0);
}

Measurement map_small_chunk1(const Settings& settings) {
    return map_squares(settings, 50'000, 1);
}

// n apply_async(square, i) submitted, then every get().
Measurement apply_async(const Settings& settings) {
    constexpr std::int64_t n = 20'000;
    mproc::Pool pool = warmed_pool(settings);
    std::vector<std::int64_t> results;
    const double elapsed = seconds([&] {
        std::vector<mproc::AsyncResult<std::int64_t>> pending;
        pending.reserve(n);
        for (std::int64_t i = 0; i < n; ++i) pending.push_back(pool.apply_async(square, i));
        results.reserve(n);
        for (auto& result : pending) results.push_back(result.get());
    });
    check_squares(results, n);
    return {static_cast<double>(n) / elapsed, "items/s"};
}

// n apply(square, i), one after the other: the round trip of one task.
Measurement apply_roundtrip(const Settings& settings) {
    constexpr std::int64_t n = 2'000;
    mproc::Pool pool = warmed_pool(settings);
    std::vector<std::int64_t> results;
    results.reserve(n);
    const double elapsed = seconds([&] {
        for (std::int64_t i = 0; i < n; ++i) results.push_back(pool.apply(square, i));
    });
    check_squares(results, n);
    return {static_cast<double>(n) / elapsed, "items/s"};
}

// length() of 32 arguments of 16 MiB each, chunk size 1. As in Python ([blob] * 32), the 32
// arguments are one vector named 32 times: each is encoded and sent whole, none is copied
// before map() sees it.
Measurement large_arg_16mib(const Settings& settings) {
    constexpr std::size_t blob_bytes = std::size_t{16} << 20;
    constexpr int copies = 32;
    mproc::Pool pool = warmed_pool(settings);
    const std::vector<std::uint8_t> blob(blob_bytes, 'x');
    auto blobs =
        std::views::iota(0, copies) |
        std::views::transform([&blob](int) -> const std::vector<std::uint8_t>& { return blob; });
    std::vector<std::size_t> sizes;
    const double elapsed = seconds([&] { sizes = pool.map(length, blobs, 1); });
    if (sizes.size() != copies) throw WrongResult("expected 32 results");
    for (std::size_t size : sizes) {
        if (size != blob_bytes)
            throw WrongResult("a worker saw " + std::to_string(size) + " bytes");
    }
    return {copies * 16.0 / elapsed, "MiB/s"};
}

// mproc only (Python has no SharedArray): a shared array costs the same at any size.
Measurement shared_array_arg_1mib(const Settings& settings) {
    return shared_array_tasks(settings, std::size_t{1} << 20);
}

Measurement shared_array_arg_256mib(const Settings& settings) {
    return shared_array_tasks(settings, std::size_t{256} << 20);
}

}  // namespace mproc_bench
