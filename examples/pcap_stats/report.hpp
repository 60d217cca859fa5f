#pragma once

// The outputs of pcap_stats: the CSV and the plots.

#include <cstdio>
#include <string>
#include <vector>

#include "analysis.hpp"

namespace pcapstats {

// The CSV's header line, without the newline. The first columns are the issue's, in its
// order; the port counts and the frames that are not IPv4 follow.
std::string csv_header();

// One row: the file, the window number (or "total"), and the statistics.
std::string csv_row(const std::string& file, const WindowRow& row);

// The header and, for each report without an error, its window rows and its total row.
void write_csv(std::FILE* out, const std::vector<FileReport>& reports);

// A PNG per analysed file in `directory`, drawn by gnuplot: packets and bytes, entropies,
// inter-arrival times, protocol mix, per window. Returns the files written; throws
// std::runtime_error if gnuplot cannot be run or fails.
std::vector<std::string> write_plots(const std::string& directory,
                                     const std::vector<FileReport>& reports);

}  // namespace pcapstats
