#pragma once

// What the machine, and the slice of it this process is allowed, can hold: CPUs and memory.
// process_cpu_count() is the number to size a pool by; suggest_workers() also makes the workers'
// tasks fit in memory.

#include <cstddef>
#include <cstdint>

namespace mproc {

// Memory in bytes, as this process sees it: the machine's figures lowered by any cgroup limit.
struct MemoryInfo {
    std::uint64_t total;      // RAM the process may ever use.
    std::uint64_t available;  // RAM it may allocate now without swapping or an OOM kill.
};

// The number of logical CPUs online on the machine, like Python's os.cpu_count(). It ignores
// affinity and cgroup quotas, so it is the wrong number for sizing a pool: use
// process_cpu_count(). Always at least 1. Throws nothing.
std::size_t cpu_count() noexcept;

// The number of CPUs this process may actually keep busy: the CPUs in the calling thread's
// affinity mask (the process's, unless that thread changed its own), lowered to the cgroup CPU
// quota rounded up (a quota of 1.5 CPUs gives 2). Cgroup v1 and v2 are both read; a limit on
// any ancestor cgroup counts. Always at least 1 and at most cpu_count(). Files it cannot read
// count as no limit, so it throws only std::bad_alloc.
std::size_t process_cpu_count();

// The machine's memory (MemTotal, MemAvailable of /proc/meminfo) lowered by the tightest cgroup
// memory limit: total is at most the limit, available at most the limit minus what the cgroup
// already uses. available <= total. Throws mproc::Error when the machine's memory cannot be
// read at all.
MemoryInfo memory();

// A worker count for tasks that each need about bytes_per_task bytes of memory:
// process_cpu_count(), lowered so that the workers' tasks fit in memory().available. Never
// less than 1, even when one task does not fit. bytes_per_task == 0 means memory is no
// constraint, and then memory is not read. Otherwise throws what memory() throws.
std::size_t suggest_workers(std::size_t bytes_per_task);

}  // namespace mproc
