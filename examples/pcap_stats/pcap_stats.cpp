// pcap_stats: per-window traffic statistics of pcap and pcap.gz captures, in parallel.
//
//   pcap_stats [options] CAPTURE...
//
// Writes a CSV (one row per window of each file, then its total) and, with --plots, a PNG per
// file. Files are spread over a pool of processes, and large plain captures are cut into
// ranges of packets that the workers analyse apart; the result equals the serial one.
// Exit status: 0 all inputs analysed; 2 some were skipped (each named on stderr, with the
// reason); 1 bad usage or the output could not be written.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <mproc/mproc.hpp>

#include "analysis.hpp"
#include "parallel.hpp"
#include "report.hpp"

namespace {

int usage() {
    std::fprintf(
        stderr,
        "usage: pcap_stats [options] CAPTURE...\n"
        "  -o, --output FILE   the CSV (default: standard output)\n"
        "  -w, --window SEC    window length in seconds (default 10)\n"
        "  -j, --jobs N        worker processes (default: the CPUs this process may use)\n"
        "      --serial        analyse in this process, each file whole, in order\n"
        "      --range-mb N    cut plain captures larger than N MB into ranges (default 32)\n"
        "      --plots DIR     a PNG per file, drawn with gnuplot\n"
        "      --time          print the analysis time to stderr\n"
        "Exit status: 0 all analysed, 2 some input skipped, 1 usage or output error.\n");
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    std::vector<std::string> paths;
    std::string output, plots;
    pcapstats::AnalysisOptions options;
    std::size_t jobs = 0;
    bool serial = false, timing = false;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
                return argv[++i];
            };
            if (arg == "-o" || arg == "--output")
                output = value();
            else if (arg == "-w" || arg == "--window") {
                const double seconds = std::stod(value());
                if (!(seconds >= 1e-6)) throw std::invalid_argument("the window must be positive");
                options.window_ns = static_cast<std::int64_t>(seconds * 1e9 + 0.5);
            } else if (arg == "-j" || arg == "--jobs")
                jobs = std::stoul(value());
            else if (arg == "--serial")
                serial = true;
            else if (arg == "--range-mb")
                options.range_bytes = std::stoull(value()) << 20;
            else if (arg == "--plots")
                plots = value();
            else if (arg == "--time")
                timing = true;
            else if (arg == "-h" || arg == "--help")
                return usage();
            else if (!arg.empty() && arg[0] == '-' && arg != "-")
                throw std::invalid_argument("unknown option " + arg);
            else
                paths.push_back(arg);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pcap_stats: %s\n", e.what());
        return usage();
    }
    if (paths.empty()) return usage();
    if (options.range_bytes == 0) options.range_bytes = 1 << 20;

    const auto start = std::chrono::steady_clock::now();
    std::vector<pcapstats::FileReport> reports;
    std::size_t workers = 1;
    if (serial) {
        reports = pcapstats::analyse_serial(paths, options);
    } else {
        using clock = std::chrono::steady_clock;
        auto t0 = clock::now();
        std::optional<mproc::Pool> pool(std::in_place,
                                        jobs == 0 ? mproc::process_cpu_count() : jobs);
        auto t1 = clock::now();
        workers = pool->processes();
        reports = pcapstats::analyse_parallel(*pool, paths, options);
        auto t2 = clock::now();
        pool.reset();
        auto t3 = clock::now();
        if (timing) {
            auto s = [](auto d) { return std::chrono::duration<double>(d).count(); };
            std::fprintf(stderr,
                         "pcap_stats: pool start %.3f s, analysis %.3f s, pool stop %.3f s\n",
                         s(t1 - t0), s(t2 - t1), s(t3 - t2));
        }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    int status = 0;
    for (const auto& report : reports) {
        if (!report.error.empty()) {
            std::fprintf(stderr, "pcap_stats: skipped %s: %s\n", report.path.c_str(),
                         report.error.c_str());
            status = 2;
        }
    }
    std::FILE* out = stdout;
    if (!output.empty() && output != "-") {
        out = std::fopen(output.c_str(), "w");
        if (out == nullptr) {
            std::perror(("pcap_stats: " + output).c_str());
            return 1;
        }
    }
    pcapstats::write_csv(out, reports);
    if (out != stdout ? std::fclose(out) != 0 : std::fflush(out) != 0) {
        std::fprintf(stderr, "pcap_stats: cannot write the CSV\n");
        return 1;
    }
    if (!plots.empty()) {
        try {
            for (const auto& png : pcapstats::write_plots(plots, reports))
                std::fprintf(stderr, "pcap_stats: wrote %s\n", png.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "pcap_stats: no plots: %s\n", e.what());
            status = status == 0 ? 1 : status;
        }
    }
    if (timing) {
        std::fprintf(stderr, "pcap_stats: %s, %zu worker%s: %.3f s\n", serial ? "serial" : "pool",
                     workers, workers == 1 ? "" : "s", seconds);
    }
    return status;
}
