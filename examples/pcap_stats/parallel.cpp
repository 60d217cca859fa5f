#include "parallel.hpp"

#include <algorithm>
#include <utility>

#include <mproc/progress.hpp>

namespace pcapstats {

std::vector<FileReport> analyse_parallel(mproc::Pool& pool, const std::vector<std::string>& paths,
                                         const AnalysisOptions& options) {
    std::vector<RangeTask> tasks = plan_tasks(paths, options);
    // Largest first, so that no big task starts last and leaves the other workers idle. The
    // ranges of a file weigh the same and keep their order: the merger takes them in order,
    // and one that comes early waits in memory.
    auto weight = [&](const RangeTask& t) {
        return t.range_count > 1 ? options.range_bytes : t.bytes;
    };
    std::stable_sort(tasks.begin(), tasks.end(),
                     [&](const RangeTask& a, const RangeTask& b) { return weight(a) > weight(b); });

    std::vector<FileMerger> mergers;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        std::uint32_t ranges = 0;
        for (const RangeTask& t : tasks) ranges += t.file_index == i ? 1 : 0;
        mergers.emplace_back(paths[i], ranges);
    }
    std::vector<std::optional<FileReport>> merged(paths.size());
    std::vector<bool> done(paths.size(), false);
    // A bar on a terminal (silent when standard error is a file or a pipe), one step a task.
    for (RangeResult result :
         mproc::progress(pool.imap_unordered(analyse_range, tasks, 1), tasks.size(),
                         mproc::ProgressOptions{.label = "pcap_stats"})) {
        const std::uint32_t file = result.file_index;
        mergers[file].add(std::move(result));
        if (mergers[file].complete()) {
            merged[file] = mergers[file].finish();
            done[file] = true;
        }
    }

    std::vector<FileReport> reports;
    reports.reserve(paths.size());
    for (std::size_t i = 0; i < paths.size(); ++i) {
        reports.push_back(done[i] && merged[i] ? std::move(*merged[i])
                                               : analyse_whole(paths[i], options.window_ns));
    }
    return reports;
}

}  // namespace pcapstats
