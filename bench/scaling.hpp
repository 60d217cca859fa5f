#pragma once

// mproc_bench --scaling: the per-task overhead of Pool::map at one worker count and one task
// count, one cell of the grid that bench/scaling.sh runs and draws.

#include <cstdint>

#include "bench.hpp"

namespace mproc_bench {

// Makes a pool of settings.workers processes and prints, for map(square, 0..tasks) on it, one
// line per chunking mode, in mproc_bench's WORKLOAD VALUE UNIT format:
//   map_default NS ns/task   (chunk size 0: mproc's default, about four chunks per worker)
//   map_chunk1 NS ns/task    (chunk size 1: each task its own unit of work)
// NS is the per-task overhead defined in scaling.cpp. Returns the exit status: 0, or 1 (with the
// reason on stderr) if the pool failed or a result was wrong. Requires tasks > 0.
int run_scaling(const Settings& settings, std::int64_t tasks);

}  // namespace mproc_bench
