#include "os/cgroup.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <system_error>
#include <vector>

namespace mproc::detail {

namespace {

namespace fs = std::filesystem;

// cgroup v1 reports "no memory limit" as LONG_MAX rounded down to a page, a value that depends
// on the page size. Anything from 4 EiB up is no real limit, whatever the page size.
constexpr std::uint64_t kV1UnlimitedMemory = std::uint64_t{1} << 62;

std::string_view trim(std::string_view text) {
    constexpr std::string_view kSpace = " \t\r\n";
    const auto first = text.find_first_not_of(kSpace);
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(kSpace);
    return text.substr(first, last - first + 1);
}

// The next whitespace-separated word of text, removed from it.
std::string_view next_word(std::string_view& text) {
    text = trim(text);
    const auto end = std::min(text.find_first_of(" \t\r\n"), text.size());
    const auto word = text.substr(0, end);
    text.remove_prefix(end);
    return word;
}

// The number that is the whole of text, or nullopt: a stray unit or a partial read must not
// pass for a limit.
template <typename Int>
std::optional<Int> parse_number(std::string_view text) {
    text = trim(text);
    Int value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

template <typename Int>
std::optional<Int> read_number(const fs::path& path) {
    const auto text = read_small_file(path);
    if (!text) return std::nullopt;
    return parse_number<Int>(*text);
}

bool is_readable_directory(const fs::path& path) {
    std::error_code error;
    return fs::is_directory(path, error);
}

// Whether a v1 controller list such as "cpu,cpuacct" names controller. "cpuacct" and
// "cpuset" must not pass for "cpu", so the names are compared whole.
bool lists_controller(std::string_view controllers, std::string_view controller) {
    while (!controllers.empty()) {
        const auto comma = std::min(controllers.find(','), controllers.size());
        if (controllers.substr(0, comma) == controller) return true;
        controllers.remove_prefix(std::min(comma + 1, controllers.size()));
    }
    return false;
}

// The directories whose limits bind a cgroup: its own and each ancestor's, up to and including
// the hierarchy's root. When the cgroup's path does not exist under the root, the root is all
// there is: a container typically mounts its own cgroup there while /proc/self/cgroup still
// shows the host's path for it.
std::vector<fs::path> binding_directories(const fs::path& hierarchy_root,
                                          std::string_view cgroup_path) {
    std::vector<fs::path> directories{hierarchy_root};
    fs::path directory = hierarchy_root;
    for (const auto& part : fs::path(cgroup_path).relative_path()) {
        // A path climbing out of the hierarchy is not one the kernel writes; read only the root.
        if (part == "..") return {hierarchy_root};
        if (part.empty() || part == ".") continue;
        directory /= part;
        directories.push_back(directory);
    }
    if (directories.size() > 1 && !is_readable_directory(directories.back()))
        return {hierarchy_root};
    return directories;
}

// Where the v1 hierarchy carrying controller is mounted under root: distributions mount
// co-mounted controllers under their joined name ("cpu,cpuacct") and usually, but not always,
// add a symlink under each single name.
std::optional<fs::path> v1_hierarchy_root(const fs::path& root, std::string_view controllers,
                                          std::string_view controller) {
    for (const auto& name : {controllers, controller}) {
        if (is_readable_directory(root / name)) return root / name;
    }
    return std::nullopt;
}

enum class CgroupVersion { kV1, kV2 };

// Calls visit(directory, version) for every cgroup directory whose limits on controller bind
// the process. Both versions are visited: on a hybrid host /proc/self/cgroup lists v1
// hierarchies beside a v2 one, and whichever carries the controller has the limit.
template <typename Visit>
void visit_binding_directories(const fs::path& proc_self_cgroup, const fs::path& root,
                               std::string_view controller, Visit visit) {
    const auto text = read_small_file(proc_self_cgroup);
    if (!text) return;
    std::string_view rest = *text;
    while (!rest.empty()) {
        const auto end_of_line = std::min(rest.find('\n'), rest.size());
        std::string_view line = rest.substr(0, end_of_line);
        rest.remove_prefix(std::min(end_of_line + 1, rest.size()));

        // "hierarchy-id:controller-list:cgroup-path"; the path itself may contain ':'.
        const auto first_colon = line.find(':');
        if (first_colon == std::string_view::npos) continue;
        const auto second_colon = line.find(':', first_colon + 1);
        if (second_colon == std::string_view::npos) continue;
        const auto hierarchy_id = line.substr(0, first_colon);
        const auto controllers = line.substr(first_colon + 1, second_colon - first_colon - 1);
        const auto cgroup_path = trim(line.substr(second_colon + 1));

        if (hierarchy_id == "0" && controllers.empty()) {
            for (const auto& directory : binding_directories(root, cgroup_path)) {
                visit(directory, CgroupVersion::kV2);
            }
        } else if (lists_controller(controllers, controller)) {
            const auto hierarchy_root = v1_hierarchy_root(root, controllers, controller);
            if (!hierarchy_root) continue;
            for (const auto& directory : binding_directories(*hierarchy_root, cgroup_path)) {
                visit(directory, CgroupVersion::kV1);
            }
        }
    }
}

// The CPU quota set in one cgroup directory, in CPUs.
std::optional<double> cpu_quota_in(const fs::path& directory, CgroupVersion version) {
    std::optional<std::int64_t> quota;
    std::optional<std::int64_t> period;
    if (version == CgroupVersion::kV2) {
        // "max 100000" or "150000 100000".
        const auto text = read_small_file(directory / "cpu.max");
        if (!text) return std::nullopt;
        std::string_view words = *text;
        quota = parse_number<std::int64_t>(next_word(words));
        period = parse_number<std::int64_t>(next_word(words));
    } else {
        // A quota of -1 is no limit, and fails the check below like "max" does.
        quota = read_number<std::int64_t>(directory / "cpu.cfs_quota_us");
        period = read_number<std::int64_t>(directory / "cpu.cfs_period_us");
    }
    if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
    return static_cast<double>(*quota) / static_cast<double>(*period);
}

// The memory limit set in one cgroup directory, in bytes.
std::optional<std::uint64_t> memory_limit_in(const fs::path& directory, CgroupVersion version) {
    if (version == CgroupVersion::kV2) {
        // "max" fails to parse, which is what it means: no limit.
        return read_number<std::uint64_t>(directory / "memory.max");
    }
    const auto limit = read_number<std::uint64_t>(directory / "memory.limit_in_bytes");
    if (limit && *limit >= kV1UnlimitedMemory) return std::nullopt;
    return limit;
}

std::optional<std::uint64_t> memory_usage_in(const fs::path& directory, CgroupVersion version) {
    return read_number<std::uint64_t>(
        directory / (version == CgroupVersion::kV2 ? "memory.current" : "memory.usage_in_bytes"));
}

void keep_lower(std::optional<std::uint64_t>& kept, std::uint64_t candidate) {
    if (!kept || candidate < *kept) kept = candidate;
}

}  // namespace

std::optional<std::string> read_small_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) return std::nullopt;
    return text;
}

std::optional<double> cgroup_cpu_limit(const std::filesystem::path& proc_self_cgroup,
                                       const std::filesystem::path& cgroup_mount_root) {
    std::optional<double> tightest;
    visit_binding_directories(proc_self_cgroup, cgroup_mount_root, "cpu",
                              [&](const fs::path& directory, CgroupVersion version) {
                                  const auto quota = cpu_quota_in(directory, version);
                                  if (quota && (!tightest || *quota < *tightest)) tightest = quota;
                              });
    return tightest;
}

CgroupMemory cgroup_memory(const std::filesystem::path& proc_self_cgroup,
                           const std::filesystem::path& cgroup_mount_root) {
    CgroupMemory memory;
    visit_binding_directories(proc_self_cgroup, cgroup_mount_root, "memory",
                              [&](const fs::path& directory, CgroupVersion version) {
                                  const auto limit = memory_limit_in(directory, version);
                                  if (!limit) return;
                                  keep_lower(memory.limit, *limit);
                                  // Without a usage figure the limit is the best bound on the room
                                  // left.
                                  const auto usage =
                                      memory_usage_in(directory, version).value_or(0);
                                  keep_lower(memory.headroom, usage >= *limit ? 0 : *limit - usage);
                              });
    return memory;
}

std::optional<std::uint64_t> parse_oom_kill(std::string_view text) {
    while (!text.empty()) {
        const auto end_of_line = std::min(text.find('\n'), text.size());
        std::string_view line = text.substr(0, end_of_line);
        text.remove_prefix(std::min(end_of_line + 1, text.size()));
        if (next_word(line) == "oom_kill") return parse_number<std::uint64_t>(line);
    }
    return std::nullopt;
}

std::optional<std::uint64_t> cgroup_oom_kill_count(const std::filesystem::path& proc_self_cgroup,
                                                   const std::filesystem::path& cgroup_mount_root) {
    // Each hierarchy's directories come root first, so the last one seen is the process's own.
    std::optional<fs::path> own_v2;
    std::optional<fs::path> own_v1;
    visit_binding_directories(proc_self_cgroup, cgroup_mount_root, "memory",
                              [&](const fs::path& directory, CgroupVersion version) {
                                  (version == CgroupVersion::kV2 ? own_v2 : own_v1) = directory;
                              });
    // A hybrid host lists both, and only the one that carries the memory controller has the
    // file.
    if (own_v2) {
        if (const auto text = read_small_file(*own_v2 / "memory.events")) {
            return parse_oom_kill(*text);
        }
    }
    if (own_v1) {
        if (const auto text = read_small_file(*own_v1 / "memory.oom_control")) {
            return parse_oom_kill(*text);
        }
    }
    return std::nullopt;
}

Meminfo parse_meminfo(std::string_view text) {
    Meminfo info;
    std::optional<std::uint64_t> free;
    while (!text.empty()) {
        const auto end_of_line = std::min(text.find('\n'), text.size());
        const auto line = text.substr(0, end_of_line);
        text.remove_prefix(std::min(end_of_line + 1, text.size()));

        const auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        const auto key = line.substr(0, colon);
        std::optional<std::uint64_t>* field = key == "MemTotal"       ? &info.total
                                              : key == "MemAvailable" ? &info.available
                                              : key == "MemFree"      ? &free
                                                                      : nullptr;
        if (field == nullptr) continue;

        auto words = line.substr(colon + 1);
        auto value = parse_number<std::uint64_t>(next_word(words));
        const auto unit = next_word(words);
        if (value && unit == "kB") {
            value = *value <= std::numeric_limits<std::uint64_t>::max() / 1024
                        ? std::optional<std::uint64_t>(*value * 1024)
                        : std::nullopt;
        } else if (!unit.empty()) {
            value = std::nullopt;
        }
        *field = value;
    }
    // Kernels before 3.14 have no MemAvailable; MemFree understates what can be had (it
    // leaves out reclaimable cache), which errs on the safe side for sizing.
    if (!info.available) info.available = free;
    return info;
}

std::size_t limit_cpus(std::size_t affinity_cpus, std::optional<double> cgroup_cpus) {
    std::size_t cpus = std::max<std::size_t>(affinity_cpus, 1);
    if (cgroup_cpus && std::ceil(*cgroup_cpus) < static_cast<double>(cpus)) {
        cpus = static_cast<std::size_t>(std::ceil(*cgroup_cpus));
    }
    return std::max<std::size_t>(cpus, 1);
}

MemoryInfo limit_memory(std::uint64_t machine_total, std::uint64_t machine_available,
                        const CgroupMemory& cgroup) {
    MemoryInfo info{machine_total, machine_available};
    if (cgroup.limit) info.total = std::min(info.total, *cgroup.limit);
    if (cgroup.headroom) info.available = std::min(info.available, *cgroup.headroom);
    info.available = std::min(info.available, info.total);
    return info;
}

std::size_t workers_for(std::size_t cpus, std::uint64_t available, std::size_t bytes_per_task) {
    std::uint64_t workers = cpus;
    if (bytes_per_task != 0) workers = std::min<std::uint64_t>(workers, available / bytes_per_task);
    return static_cast<std::size_t>(std::max<std::uint64_t>(workers, 1));
}

std::optional<std::uint64_t> oom_kill_count() {
    return cgroup_oom_kill_count("/proc/self/cgroup", "/sys/fs/cgroup");
}

}  // namespace mproc::detail
