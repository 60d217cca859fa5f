// mproc_bench: runs the reference workloads of /work/shared/bench/README.md with mproc and
// prints one line per workload, WORKLOAD VALUE UNIT, with the names, units and number format of
// python_baseline.py, so that scripts/bench --compare can set the two side by side.
//
// Usage: mproc_bench [--workers N] [--only NAME[,NAME...]] [--rss] [--list]
//        mproc_bench --scaling --tasks N [--workers N]
//   --workers N  worker processes (and threads) per pool; 2 by default, as python_baseline.py
//   --only       run these rows, in the order given; all rows by default
//   --rss        after each row, write to stderr the peak resident memory of this process and
//                of its largest child so far (exact per row only when one row runs)
//   --list       print the names of the rows and exit
//   --scaling    run no row: print the per-task overhead, in ns, of map(square, 0..N) with
//                --tasks N on a warmed pool of --workers processes, for the default chunk size
//                and for chunk size 1 (see bench/scaling.hpp); bench/scaling.sh runs a grid
// A row that this build of mproc cannot run yet (a start method not there) is skipped with a
// note on stderr. The exit status is 1 if any row failed, 2 for a bad command line.

#include <sys/resource.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench.hpp"
#include "scaling.hpp"

namespace mproc_bench {
namespace {

struct Workload {
    std::string_view name;
    Measurement (*run)(const Settings&);
};

// Every row, in python_baseline.py's order; a new row is one function and one line here.
constexpr Workload workloads[] = {
    {"map_small_default", map_small_default},
    {"map_small_chunk1", map_small_chunk1},
    {"apply_async", apply_async},
    {"apply_roundtrip", apply_roundtrip},
    {"large_arg_16mib", large_arg_16mib},
    {"primes_speedup", primes_speedup},
    {"primes_threads_speedup", primes_threads_speedup},
    {"queue_throughput", queue_throughput},
#ifdef MPROC_BENCH_HAS_MANAGER
    {"manager_dict_write", manager_dict_write},
    {"manager_dict_read", manager_dict_read},
#endif
    {"pool_start_fork", pool_start_fork},
    {"pool_start_spawn", pool_start_spawn},
    {"pool_start_forkserver", pool_start_forkserver},
    // mproc's own rows, which python_baseline.py has no twin for.
    {"shared_array_arg_1mib", shared_array_arg_1mib},
    {"shared_array_arg_256mib", shared_array_arg_256mib},
};

struct CommandLine {
    Settings settings;
    std::vector<const Workload*> selected;
    bool rss = false;
    bool list = false;
    bool scaling = false;
    std::int64_t tasks = 0;
};

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

const Workload* find_workload(std::string_view name) {
    for (const Workload& workload : workloads) {
        if (workload.name == name) return &workload;
    }
    return nullptr;
}

std::vector<const Workload*> parse_only(std::string_view names) {
    std::vector<const Workload*> selected;
    while (!names.empty()) {
        const auto comma = names.find(',');
        const std::string_view name = names.substr(0, comma);
        if (!name.empty()) {
            const Workload* workload = find_workload(name);
            if (workload == nullptr) {
                throw UsageError("no workload named '" + std::string(name) + "' (see --list)");
            }
            selected.push_back(workload);
        }
        names = comma == std::string_view::npos ? std::string_view() : names.substr(comma + 1);
    }
    if (selected.empty()) throw UsageError("--only needs at least one workload name");
    return selected;
}

template <class Count>
Count parse_count(std::string_view option, std::string_view text) {
    Count count = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
    if (error != std::errc() || end != text.data() + text.size() || count <= 0) {
        throw UsageError(std::string(option) + " needs a positive whole number, not '" +
                         std::string(text) + "'");
    }
    return count;
}

CommandLine parse_command_line(int argc, char** argv) {
    CommandLine command;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        // Both "--opt value" and "--opt=value".
        auto value_of = [&](std::string_view option) -> std::string_view {
            if (arg.size() > option.size() && arg.substr(0, option.size()) == option &&
                arg[option.size()] == '=') {
                return arg.substr(option.size() + 1);
            }
            if (i + 1 >= argc) throw UsageError(std::string(option) + " needs a value");
            return argv[++i];
        };
        auto is = [&](std::string_view option) {
            return arg == option || (arg.substr(0, option.size()) == option &&
                                     arg.size() > option.size() && arg[option.size()] == '=');
        };
        if (is("--workers")) {
            command.settings.workers = parse_count<std::size_t>("--workers", value_of("--workers"));
        } else if (is("--only")) {
            command.selected = parse_only(value_of("--only"));
        } else if (arg == "--rss") {
            command.rss = true;
        } else if (arg == "--list") {
            command.list = true;
        } else if (arg == "--scaling") {
            command.scaling = true;
        } else if (is("--tasks")) {
            command.tasks = parse_count<std::int64_t>("--tasks", value_of("--tasks"));
        } else {
            throw UsageError("unknown argument '" + std::string(arg) + "'");
        }
    }
    // --scaling runs no row, so the options about rows would silently do nothing.
    if (command.scaling && (!command.selected.empty() || command.rss || command.list)) {
        throw UsageError("--scaling does not go with --only, --rss or --list");
    }
    if (command.scaling != (command.tasks > 0)) {
        throw UsageError("--scaling and --tasks N go together");
    }
    if (command.selected.empty()) {
        for (const Workload& workload : workloads) command.selected.push_back(&workload);
    }
    return command;
}

double mebibytes(long kibibytes) {
    return static_cast<double>(kibibytes) / 1024.0;
}

// Linux's ru_maxrss is in KiB. RUSAGE_CHILDREN gives the largest of the descendants reaped so
// far (a pool's workers are reaped by its launcher, which this process reaps at join).
void report_rss(std::string_view name) {
    rusage self{};
    rusage children{};
    ::getrusage(RUSAGE_SELF, &self);
    ::getrusage(RUSAGE_CHILDREN, &children);
    std::fprintf(stderr, "rss %.*s parent_peak %.1f MiB, largest_child_peak %.1f MiB\n",
                 static_cast<int>(name.size()), name.data(), mebibytes(self.ru_maxrss),
                 mebibytes(children.ru_maxrss));
}

int run(const CommandLine& command) {
    bool failed = false;
    for (const Workload* workload : command.selected) {
        const std::string name(workload->name);
        try {
            const Measurement m = workload->run(command.settings);
            std::printf("%s %.6g %.*s\n", name.c_str(), m.value, static_cast<int>(m.unit.size()),
                        m.unit.data());
        } catch (const Unavailable& error) {
            std::fprintf(stderr, "mproc_bench: %s skipped: %s\n", name.c_str(), error.what());
        } catch (const std::exception& error) {
            std::fprintf(stderr, "mproc_bench: %s failed: %s\n", name.c_str(), error.what());
            failed = true;
        }
        // Flushed before the next row forks, so that no child inherits unwritten lines.
        std::fflush(stdout);
        if (command.rss) report_rss(name);
    }
    return failed ? 1 : 0;
}

}  // namespace
}  // namespace mproc_bench

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    using namespace mproc_bench;
    CommandLine command;
    try {
        command = parse_command_line(argc, argv);
    } catch (const UsageError& error) {
        std::fprintf(stderr,
                     "mproc_bench: %s\nusage: mproc_bench [--workers N] [--only NAME[,NAME...]] "
                     "[--rss] [--list]\n       mproc_bench --scaling --tasks N [--workers N]\n",
                     error.what());
        return 2;
    }
    if (command.list) {
        for (const Workload& workload : workloads) {
            std::printf("%.*s\n", static_cast<int>(workload.name.size()), workload.name.data());
        }
        return 0;
    }
    if (command.scaling) return run_scaling(command.settings, command.tasks);
    return run(command);
}
