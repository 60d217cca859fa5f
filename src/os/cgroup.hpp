#pragma once

// The testable core of mproc/resources.hpp: reading cgroup limits and /proc/meminfo, and the
// rules that combine them with the machine's figures. Every reader takes the paths it reads as
// parameters, so tests point them at a fake tree in a temporary directory.
//
// A missing, unreadable or malformed file means "no limit", never an error: cgroup layouts
// vary between hosts, containers and kernels, and a process that cannot see a limit must
// still be able to size its pool.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "mproc/resources.hpp"

namespace mproc::detail {

// The CPU quota of the process in CPUs (150000 us per 100000 us period gives 1.5), or nullopt
// when there is none. proc_self_cgroup is the process's cgroup list (/proc/self/cgroup);
// cgroup_mount_root is where the hierarchies are mounted (/sys/fs/cgroup). Reads cgroup v2
// cpu.max and cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (the v1 controller may be mounted
// as "cpu" or "cpu,cpuacct"), in the process's cgroup and every ancestor up to the mount root,
// and returns the tightest. When the process's cgroup path does not exist under the mount, as
// in a container that mounts its own cgroup as the root, only the mount root is read.
std::optional<double> cgroup_cpu_limit(const std::filesystem::path& proc_self_cgroup,
                                       const std::filesystem::path& cgroup_mount_root);

// The memory limits cgroups put on the process, in bytes.
struct CgroupMemory {
    // The tightest memory limit of the process's cgroup and its ancestors.
    std::optional<std::uint64_t> limit;
    // The tightest of (limit - usage) over the same cgroups. This is kept apart from limit,
    // rather than as one usage figure, because the cgroup with the least room left need not
    // be the one with the lowest limit: siblings can fill a parent with a larger limit.
    std::optional<std::uint64_t> headroom;
};

// The cgroup memory limits of the process; arguments as for cgroup_cpu_limit(). Reads cgroup
// v2 memory.max / memory.current and cgroup v1 memory.limit_in_bytes / memory.usage_in_bytes.
// v2 "max" and v1's near-2^63 "unlimited" value are no limit.
CgroupMemory cgroup_memory(const std::filesystem::path& proc_self_cgroup,
                           const std::filesystem::path& cgroup_mount_root);

// The count of the "oom_kill N" line of a cgroup's memory.events (v2) or memory.oom_control
// (v1), or nullopt when the text has no such line or its count is not a whole number. Lines of
// other keys, "oom_kill_disable" and "oom_group_kill" among them, are not it.
std::optional<std::uint64_t> parse_oom_kill(std::string_view text);

// How many processes the OOM killer has killed in the process's own memory cgroup; arguments
// as for cgroup_cpu_limit(). Reads cgroup v2 memory.events, which also counts the kills in the
// cgroup's descendants, else cgroup v1 memory.oom_control, which counts only the cgroup's own
// (kernels from 4.13 write that line). Ancestors are not read: their counts include the kills
// among the process's siblings. nullopt when neither file can be read or parsed. A caller
// tells an OOM kill from another SIGKILL by a rise in this count across the death.
std::optional<std::uint64_t> cgroup_oom_kill_count(const std::filesystem::path& proc_self_cgroup,
                                                   const std::filesystem::path& cgroup_mount_root);

// cgroup_oom_kill_count() of the calling process, from /proc/self/cgroup and /sys/fs/cgroup.
std::optional<std::uint64_t> oom_kill_count();

// The fields of /proc/meminfo that memory() needs, in bytes.
struct Meminfo {
    std::optional<std::uint64_t> total;      // MemTotal
    std::optional<std::uint64_t> available;  // MemAvailable, or MemFree on kernels before 3.14
};

// Parses the text of /proc/meminfo ("MemTotal:  24684092 kB" lines). Fields it cannot find or
// parse are nullopt.
Meminfo parse_meminfo(std::string_view text);

// The whole contents of a small file such as one under /proc or /sys, or nullopt when it
// cannot be read.
std::optional<std::string> read_small_file(const std::filesystem::path& path);

// The CPUs a process may use, given how many its affinity mask allows and its cgroup quota in
// CPUs: the lower of the two, with the quota rounded up. At least 1.
std::size_t limit_cpus(std::size_t affinity_cpus, std::optional<double> cgroup_cpus);

// The machine's memory lowered by the cgroup limits: total to the limit, available to the
// headroom, and available never above total.
MemoryInfo limit_memory(std::uint64_t machine_total, std::uint64_t machine_available,
                        const CgroupMemory& cgroup);

// The worker count suggest_workers() returns, given the CPUs the process may use and the bytes
// it may allocate: the lower of cpus and available / bytes_per_task, at least 1.
// bytes_per_task == 0 means memory is no constraint.
std::size_t workers_for(std::size_t cpus, std::uint64_t available, std::size_t bytes_per_task);

}  // namespace mproc::detail
