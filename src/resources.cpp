#include "mproc/resources.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

#include "mproc/errors.hpp"
#include "os/cgroup.hpp"

namespace mproc {

namespace {

constexpr const char* kProcSelfCgroup = "/proc/self/cgroup";
constexpr const char* kCgroupMountRoot = "/sys/fs/cgroup";
constexpr const char* kProcMeminfo = "/proc/meminfo";

struct CpuSetDeleter {
    void operator()(cpu_set_t* set) const noexcept { CPU_FREE(set); }
};

// The number of CPUs in the calling thread's affinity mask, or nullopt if it cannot be read.
std::optional<std::size_t> affinity_cpu_count() {
    // A fixed cpu_set_t holds 1024 CPUs, and sched_getaffinity fails with EINVAL when the
    // kernel's mask is larger, so grow the set until it fits.
    for (int cpus = CPU_SETSIZE; cpus <= (1 << 22); cpus *= 2) {
        std::unique_ptr<cpu_set_t, CpuSetDeleter> set(CPU_ALLOC(cpus));
        if (!set) return std::nullopt;
        const std::size_t size = CPU_ALLOC_SIZE(cpus);
        if (sched_getaffinity(0, size, set.get()) == 0) {
            return static_cast<std::size_t>(CPU_COUNT_S(size, set.get()));
        }
        if (errno != EINVAL) return std::nullopt;
    }
    return std::nullopt;
}

// A sysconf count of pages, in bytes, or nullopt when sysconf does not know it.
std::optional<std::uint64_t> sysconf_bytes(int pages_name) {
    const long pages = sysconf(pages_name);
    const long page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) return std::nullopt;
    return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
}

}  // namespace

std::size_t cpu_count() noexcept {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? static_cast<std::size_t>(online) : 1;
}

std::size_t process_cpu_count() {
    const std::size_t online = cpu_count();
    // Without an affinity mask every online CPU is allowed.
    const std::size_t allowed = std::min(affinity_cpu_count().value_or(online), online);
    return detail::limit_cpus(allowed, detail::cgroup_cpu_limit(kProcSelfCgroup, kCgroupMountRoot));
}

MemoryInfo memory() {
    detail::Meminfo machine;
    if (const auto text = detail::read_small_file(kProcMeminfo)) {
        machine = detail::parse_meminfo(*text);
    }
    // sysconf reads the same kernel figures through sysinfo(2), so it still works where /proc
    // is not mounted; it has no MemAvailable, so free pages stand in for it.
    if (!machine.total) machine.total = sysconf_bytes(_SC_PHYS_PAGES);
    if (!machine.available) machine.available = sysconf_bytes(_SC_AVPHYS_PAGES);
    if (!machine.total || !machine.available) {
        throw Error(
            "mproc: cannot tell how much memory the machine has: neither /proc/meminfo nor "
            "sysconf reports it; check that /proc is mounted");
    }
    return detail::limit_memory(*machine.total, *machine.available,
                                detail::cgroup_memory(kProcSelfCgroup, kCgroupMountRoot));
}

std::size_t suggest_workers(std::size_t bytes_per_task) {
    const std::size_t cpus = process_cpu_count();
    // Memory is not read when it cannot matter, so this form never throws.
    if (bytes_per_task == 0) return cpus;
    return detail::workers_for(cpus, memory().available, bytes_per_task);
}

}  // namespace mproc
