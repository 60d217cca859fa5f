#pragma once

// pcap_stats over a pool: files spread over the workers, large plain captures cut into ranges
// of packets that workers analyse apart, merged here into exactly the serial result.

#include <string>
#include <vector>

#include <mproc/pool.hpp>

#include "analysis.hpp"

namespace pcapstats {

// Analyses `paths` on `pool`, one report per path in the same order. A file whose ranges do
// not fit together (see merge_ranges) is analysed again whole, in this process.
std::vector<FileReport> analyse_parallel(mproc::Pool& pool, const std::vector<std::string>& paths,
                                         const AnalysisOptions& options);

}  // namespace pcapstats
