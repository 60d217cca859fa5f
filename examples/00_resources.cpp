// Step 1 of the guide: know your resources before you size a pool.
//
// cpu_count() is every CPU of the machine; process_cpu_count() is what this process may use
// (its affinity mask and its cgroup's CPU quota, as in a container); memory() respects the
// cgroup's memory limit. suggest_workers() picks a pool size that fits both.

#include <cstdio>

#include <mproc/mproc.hpp>

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    const auto memory = mproc::memory();
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    std::printf("CPUs in the machine:        %zu\n", mproc::cpu_count());
    std::printf("CPUs this process may use:  %zu\n", mproc::process_cpu_count());
    std::printf("memory: %.1f GiB in all, %.1f GiB available\n", memory.total / gib,
                memory.available / gib);

    // A task that needs 2 GiB at its peak: no more workers than memory can hold at once.
    const std::size_t per_task = std::size_t{2} << 30;
    std::printf("workers for tasks of 2 GiB each: %zu\n", mproc::suggest_workers(per_task));
    // A small task: as many workers as CPUs.
    std::printf("workers for tasks of 10 MiB each: %zu\n", mproc::suggest_workers(10u << 20));
}
