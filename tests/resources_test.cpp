#include "mproc/resources.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>

#include "os/cgroup.hpp"

namespace {

namespace fs = std::filesystem;
using mproc::detail::cgroup_cpu_limit;
using mproc::detail::cgroup_memory;
using mproc::detail::cgroup_oom_kill_count;
using mproc::detail::CgroupMemory;
using mproc::detail::limit_cpus;
using mproc::detail::limit_memory;
using mproc::detail::parse_meminfo;
using mproc::detail::parse_oom_kill;
using mproc::detail::workers_for;

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

// A fake /proc/self/cgroup and cgroup mount in a fresh temporary directory, removed after the
// test.
class FakeCgroupTree : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "mproc_resources_XXXXXX").string();
        ASSERT_NE(mkdtemp(pattern.data()), nullptr);
        base_ = pattern;
        root_ = base_ / "sys/fs/cgroup";
        fs::create_directories(root_);
    }
    void TearDown() override {
        std::error_code ignored;
        fs::remove_all(base_, ignored);
    }

    // Writes the process's cgroup list.
    void belong_to(const std::string& lines) { write(base_ / "proc_self_cgroup", lines); }
    // Writes a file under the cgroup mount root, creating its directories.
    void write_cgroup_file(const std::string& relative_path, const std::string& text) {
        write(root_ / relative_path, text);
    }

    std::optional<double> cpu_limit() const {
        return cgroup_cpu_limit(base_ / "proc_self_cgroup", root_);
    }
    CgroupMemory memory_limit() const { return cgroup_memory(base_ / "proc_self_cgroup", root_); }
    std::optional<std::uint64_t> oom_kills() const {
        return cgroup_oom_kill_count(base_ / "proc_self_cgroup", root_);
    }

  private:
    static void write(const fs::path& path, const std::string& text) {
        fs::create_directories(path.parent_path());
        std::ofstream(path) << text;
    }

    fs::path base_;
    fs::path root_;
};

// cgroup v2

TEST_F(FakeCgroupTree, V2CpuMaxGivesTheQuotaInCpus) {
    belong_to("0::/app\n");
    write_cgroup_file("app/cpu.max", "150000 100000\n");
    EXPECT_EQ(cpu_limit(), 1.5);
}

TEST_F(FakeCgroupTree, V2CpuMaxOfMaxIsNoLimit) {
    belong_to("0::/app\n");
    write_cgroup_file("app/cpu.max", "max 100000\n");
    EXPECT_EQ(cpu_limit(), std::nullopt);
}

TEST_F(FakeCgroupTree, V2NestedCgroupsTakeTheTightestAncestorCpuLimit) {
    belong_to("0::/outer/middle/inner\n");
    write_cgroup_file("outer/cpu.max", "400000 100000\n");
    write_cgroup_file("outer/middle/cpu.max", "50000 100000\n");
    write_cgroup_file("outer/middle/inner/cpu.max", "max 100000\n");
    EXPECT_EQ(cpu_limit(), 0.5);
}

TEST_F(FakeCgroupTree, V2MemoryMaxAndCurrentGiveLimitAndHeadroom) {
    belong_to("0::/app\n");
    write_cgroup_file("app/memory.max", std::to_string(2 * kGiB) + "\n");
    write_cgroup_file("app/memory.current", std::to_string(512 * kMiB) + "\n");
    const CgroupMemory memory = memory_limit();
    EXPECT_EQ(memory.limit, 2 * kGiB);
    EXPECT_EQ(memory.headroom, 2 * kGiB - 512 * kMiB);
}

TEST_F(FakeCgroupTree, V2MemoryMaxOfMaxIsNoLimit) {
    belong_to("0::/app\n");
    write_cgroup_file("app/memory.max", "max\n");
    write_cgroup_file("app/memory.current", "4096\n");
    const CgroupMemory memory = memory_limit();
    EXPECT_EQ(memory.limit, std::nullopt);
    EXPECT_EQ(memory.headroom, std::nullopt);
}

TEST_F(FakeCgroupTree, V2HeadroomComesFromTheFullestAncestorNotTheLowestLimit) {
    belong_to("0::/parent/child\n");
    // The parent allows more, but its other children have used nearly all of it.
    write_cgroup_file("parent/memory.max", std::to_string(8 * kGiB));
    write_cgroup_file("parent/memory.current", std::to_string(7 * kGiB + 512 * kMiB));
    write_cgroup_file("parent/child/memory.max", std::to_string(2 * kGiB));
    write_cgroup_file("parent/child/memory.current", std::to_string(100 * kMiB));
    const CgroupMemory memory = memory_limit();
    EXPECT_EQ(memory.limit, 2 * kGiB);
    EXPECT_EQ(memory.headroom, 512 * kMiB);
}

TEST_F(FakeCgroupTree, V2UsageAboveTheLimitLeavesNoHeadroom) {
    belong_to("0::/app\n");
    write_cgroup_file("app/memory.max", "1000");
    write_cgroup_file("app/memory.current", "1200");
    EXPECT_EQ(memory_limit().headroom, 0u);
}

TEST_F(FakeCgroupTree, V2PathMissingUnderTheMountFallsBackToTheMountRoot) {
    // A container mounts its own cgroup as the root but still sees the host's path for it.
    belong_to("0::/system.slice/docker-abc.scope\n");
    write_cgroup_file("cpu.max", "200000 100000\n");
    write_cgroup_file("memory.max", std::to_string(kGiB));
    EXPECT_EQ(cpu_limit(), 2.0);
    EXPECT_EQ(memory_limit().limit, kGiB);
}

// cgroup v1

TEST_F(FakeCgroupTree, V1CfsQuotaGivesCpusUnderACombinedCpuCpuacctMount) {
    belong_to("2:cpu,cpuacct:/job\n1:name=systemd:/job\n");
    write_cgroup_file("cpu,cpuacct/job/cpu.cfs_quota_us", "250000\n");
    write_cgroup_file("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
    EXPECT_EQ(cpu_limit(), 2.5);
}

TEST_F(FakeCgroupTree, V1CfsQuotaIsFoundThroughTheSingleControllerName) {
    belong_to("2:cpuacct,cpu:/job\n");
    write_cgroup_file("cpu/job/cpu.cfs_quota_us", "100000\n");
    write_cgroup_file("cpu/job/cpu.cfs_period_us", "100000\n");
    EXPECT_EQ(cpu_limit(), 1.0);
}

TEST_F(FakeCgroupTree, V1CfsQuotaOfMinusOneIsNoLimit) {
    belong_to("1:cpu:/job\n");
    write_cgroup_file("cpu/job/cpu.cfs_quota_us", "-1\n");
    write_cgroup_file("cpu/job/cpu.cfs_period_us", "100000\n");
    EXPECT_EQ(cpu_limit(), std::nullopt);
}

TEST_F(FakeCgroupTree, V1CpusetAndCpuacctHierarchiesAreNotMistakenForCpu) {
    belong_to("3:cpuset:/job\n2:cpuacct:/job\n");
    write_cgroup_file("cpuset/job/cpu.cfs_quota_us", "100000\n");
    write_cgroup_file("cpuset/job/cpu.cfs_period_us", "100000\n");
    write_cgroup_file("cpuacct/job/cpu.cfs_quota_us", "100000\n");
    write_cgroup_file("cpuacct/job/cpu.cfs_period_us", "100000\n");
    EXPECT_EQ(cpu_limit(), std::nullopt);
}

TEST_F(FakeCgroupTree, V1MemoryLimitAndUsageGiveLimitAndHeadroom) {
    belong_to("4:memory:/process_api/abc\n");
    write_cgroup_file("memory/process_api/abc/memory.limit_in_bytes", std::to_string(kGiB));
    write_cgroup_file("memory/process_api/abc/memory.usage_in_bytes", std::to_string(kMiB));
    const CgroupMemory memory = memory_limit();
    EXPECT_EQ(memory.limit, kGiB);
    EXPECT_EQ(memory.headroom, kGiB - kMiB);
}

TEST_F(FakeCgroupTree, V1HugeMemoryLimitIsNoLimit) {
    belong_to("4:memory:/job\n");
    write_cgroup_file("memory/job/memory.limit_in_bytes", "9223372036854771712\n");
    write_cgroup_file("memory/job/memory.usage_in_bytes", "4059136\n");
    EXPECT_EQ(memory_limit().limit, std::nullopt);
}

TEST_F(FakeCgroupTree, V1NestedCgroupsTakeTheTightestAncestorMemoryLimit) {
    belong_to("4:memory:/outer/inner\n");
    write_cgroup_file("memory/memory.limit_in_bytes", "9223372036854771712\n");
    write_cgroup_file("memory/outer/memory.limit_in_bytes", std::to_string(kGiB));
    write_cgroup_file("memory/outer/inner/memory.limit_in_bytes", "9223372036854771712\n");
    EXPECT_EQ(memory_limit().limit, kGiB);
}

TEST_F(FakeCgroupTree, V1PathMissingUnderTheMountFallsBackToTheMountRoot) {
    belong_to("4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n");
    write_cgroup_file("memory/memory.limit_in_bytes", std::to_string(kGiB));
    write_cgroup_file("cpu,cpuacct/cpu.cfs_quota_us", "50000");
    write_cgroup_file("cpu,cpuacct/cpu.cfs_period_us", "100000");
    EXPECT_EQ(memory_limit().limit, kGiB);
    EXPECT_EQ(cpu_limit(), 0.5);
}

TEST_F(FakeCgroupTree, HybridHostReadsV1ControllersBesideAnEmptyUnifiedHierarchy) {
    // This is how the machine the tests were written on looks.
    belong_to("4:memory:/process_api/abc\n1:cpu:/\n0::/\n");
    write_cgroup_file("memory/process_api/abc/memory.limit_in_bytes", std::to_string(kGiB));
    write_cgroup_file("cpu/cpu.cfs_quota_us", "-1");
    write_cgroup_file("cpu/cpu.cfs_period_us", "100000");
    EXPECT_EQ(memory_limit().limit, kGiB);
    EXPECT_EQ(cpu_limit(), std::nullopt);
}

// Missing and malformed files

TEST_F(FakeCgroupTree, MissingCgroupFilesAreNoLimit) {
    belong_to("0::/app\n4:memory:/app\n1:cpu:/app\n");
    write_cgroup_file("app/cgroup.procs", "");
    const CgroupMemory memory = memory_limit();
    EXPECT_EQ(cpu_limit(), std::nullopt);
    EXPECT_EQ(memory.limit, std::nullopt);
    EXPECT_EQ(memory.headroom, std::nullopt);
}

TEST_F(FakeCgroupTree, MissingProcSelfCgroupIsNoLimit) {
    write_cgroup_file("cpu.max", "100000 100000");
    EXPECT_EQ(cpu_limit(), std::nullopt);
    EXPECT_EQ(memory_limit().limit, std::nullopt);
}

TEST_F(FakeCgroupTree, MalformedCgroupFilesAreNoLimit) {
    belong_to("0::/app\n");
    write_cgroup_file("app/cpu.max", "lots\n");
    write_cgroup_file("app/memory.max", "12kB\n");
    EXPECT_EQ(cpu_limit(), std::nullopt);
    EXPECT_EQ(memory_limit().limit, std::nullopt);
}

TEST_F(FakeCgroupTree, MissingUsageLeavesTheWholeLimitAsHeadroom) {
    belong_to("0::/app\n");
    write_cgroup_file("app/memory.max", std::to_string(kGiB));
    EXPECT_EQ(memory_limit().headroom, kGiB);
}

// OOM kills

// What the kernel writes, with the counts given.
std::string v2_memory_events(int oom_kill) {
    return "low 0\nhigh 0\nmax 12\noom 3\noom_kill " + std::to_string(oom_kill) +
           "\noom_group_kill 0\n";
}
std::string v1_oom_control(int oom_kill) {
    return "oom_kill_disable 0\nunder_oom 0\noom_kill " + std::to_string(oom_kill) + "\n";
}

TEST_F(FakeCgroupTree, V2OomKillCountComesFromMemoryEventsOfTheProcesssOwnCgroup) {
    belong_to("0::/outer/app\n");
    // The parent's count includes the kills among the process's siblings.
    write_cgroup_file("outer/memory.events", v2_memory_events(9));
    write_cgroup_file("outer/app/memory.events", v2_memory_events(2));
    EXPECT_EQ(oom_kills(), 2u);
}

TEST_F(FakeCgroupTree, V1OomKillCountComesFromMemoryOomControlOfTheProcesssOwnCgroup) {
    belong_to("4:memory:/process_api/abc\n1:cpu:/\n0::/\n");
    write_cgroup_file("memory/memory.oom_control", v1_oom_control(7));
    write_cgroup_file("memory/process_api/abc/memory.oom_control", v1_oom_control(1));
    EXPECT_EQ(oom_kills(), 1u);
}

TEST_F(FakeCgroupTree, OomKillCountOfACgroupPathMissingUnderTheMountIsTheMountRoots) {
    belong_to("0::/system.slice/docker-abc.scope\n");
    write_cgroup_file("memory.events", v2_memory_events(4));
    EXPECT_EQ(oom_kills(), 4u);
}

TEST_F(FakeCgroupTree, OomKillCountIsUnknownWithoutTheFile) {
    belong_to("0::/app\n4:memory:/app\n");
    write_cgroup_file("app/memory.max", "max\n");
    write_cgroup_file("memory/app/memory.limit_in_bytes", "9223372036854771712\n");
    EXPECT_EQ(oom_kills(), std::nullopt);
}

TEST_F(FakeCgroupTree, OomKillCountIsUnknownWithoutProcSelfCgroup) {
    write_cgroup_file("memory.events", v2_memory_events(1));
    EXPECT_EQ(oom_kills(), std::nullopt);
}

TEST_F(FakeCgroupTree, OomKillCountOfAMalformedLineIsUnknown) {
    belong_to("0::/app\n");
    write_cgroup_file("app/memory.events", "oom 1\noom_kill many\n");
    EXPECT_EQ(oom_kills(), std::nullopt);
}

TEST(ParseOomKill, ReadsTheOomKillLineOnly) {
    EXPECT_EQ(parse_oom_kill("oom_kill_disable 1\nunder_oom 1\noom_kill 5\n"), 5u);
    EXPECT_EQ(parse_oom_kill("oom_group_kill 3\noom_kill 0"), 0u);
}

TEST(ParseOomKill, IsUnknownWithoutAWholeCount) {
    EXPECT_EQ(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), std::nullopt);
    EXPECT_EQ(parse_oom_kill("oom_kill\n"), std::nullopt);
    EXPECT_EQ(parse_oom_kill("oom_kill 3 4\n"), std::nullopt);
    EXPECT_EQ(parse_oom_kill("oom_kill -1\n"), std::nullopt);
    EXPECT_EQ(parse_oom_kill(""), std::nullopt);
}

TEST(ParseOomKill, ReadsACountUpToTheLargestTheKernelWrites) {
    EXPECT_EQ(parse_oom_kill("oom_kill 18446744073709551615\n"),
              std::uint64_t{18446744073709551615u});
}

// /proc/meminfo

TEST(ParseMeminfo, ReadsMemTotalAndMemAvailableInBytes) {
    const auto info = parse_meminfo(
        "MemTotal:       24684092 kB\n"
        "MemFree:        24185100 kB\n"
        "MemAvailable:   24299796 kB\n"
        "Buffers:            3728 kB\n");
    EXPECT_EQ(info.total, std::uint64_t{24684092} * 1024);
    EXPECT_EQ(info.available, std::uint64_t{24299796} * 1024);
}

TEST(ParseMeminfo, FallsBackToMemFreeWithoutMemAvailable) {
    const auto info = parse_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n");
    EXPECT_EQ(info.available, std::uint64_t{1024} * 1024);
}

TEST(ParseMeminfo, ReportsMissingOrMalformedFieldsAsUnknown) {
    const auto info = parse_meminfo("MemTotal: many kB\nSwapTotal: 0 kB\n");
    EXPECT_EQ(info.total, std::nullopt);
    EXPECT_EQ(info.available, std::nullopt);
}

// Combining the figures

TEST(LimitMemory, CgroupLimitLowersTotalAndHeadroomLowersAvailable) {
    const auto info = limit_memory(16 * kGiB, 12 * kGiB, {.limit = 2 * kGiB, .headroom = kGiB});
    EXPECT_EQ(info.total, 2 * kGiB);
    EXPECT_EQ(info.available, kGiB);
}

TEST(LimitMemory, NoCgroupLimitKeepsTheMachineFigures) {
    const auto info = limit_memory(16 * kGiB, 12 * kGiB, {});
    EXPECT_EQ(info.total, 16 * kGiB);
    EXPECT_EQ(info.available, 12 * kGiB);
}

TEST(LimitMemory, LooseCgroupLimitDoesNotRaiseTheMachineFigures) {
    const auto info =
        limit_memory(16 * kGiB, 12 * kGiB, {.limit = 64 * kGiB, .headroom = 60 * kGiB});
    EXPECT_EQ(info.total, 16 * kGiB);
    EXPECT_EQ(info.available, 12 * kGiB);
}

TEST(LimitCpus, FractionalQuotaRoundsUp) {
    EXPECT_EQ(limit_cpus(8, 1.5), 2u);
}

TEST(LimitCpus, AffinityBelowTheQuotaWins) {
    EXPECT_EQ(limit_cpus(2, 6.0), 2u);
}

TEST(LimitCpus, TinyQuotaStillGivesOneCpu) {
    EXPECT_EQ(limit_cpus(8, 0.01), 1u);
}

TEST(LimitCpus, NoQuotaGivesTheAffinityCount) {
    EXPECT_EQ(limit_cpus(8, std::nullopt), 8u);
}

// suggest_workers

TEST(SuggestWorkers, IsBoundByCpusWhenMemoryIsPlenty) {
    EXPECT_EQ(workers_for(4, 64 * kGiB, kGiB), 4u);
}

TEST(SuggestWorkers, IsBoundByMemoryWhenTasksAreLarge) {
    EXPECT_EQ(workers_for(16, 10 * kGiB, 3 * kGiB), 3u);
}

TEST(SuggestWorkers, NeverSuggestsFewerThanOne) {
    EXPECT_EQ(workers_for(16, kGiB, 4 * kGiB), 1u);
}

TEST(SuggestWorkers, IgnoresMemoryForZeroBytesPerTask) {
    EXPECT_EQ(workers_for(16, 0, 0), 16u);
}

TEST(SuggestWorkers, ForZeroBytesIsTheProcessCpuCount) {
    EXPECT_EQ(mproc::suggest_workers(0), mproc::process_cpu_count());
}

TEST(SuggestWorkers, ForATaskLargerThanMemoryIsOne) {
    EXPECT_EQ(mproc::suggest_workers(static_cast<std::size_t>(mproc::memory().total) + 1), 1u);
}

// The real machine

TEST(RealMachine, ProcessCpuCountIsBetweenOneAndCpuCount) {
    const std::size_t cpus = mproc::process_cpu_count();
    EXPECT_GE(cpus, 1u);
    EXPECT_LE(cpus, mproc::cpu_count());
}

TEST(RealMachine, ProcessCpuCountRespectsTheCallingThreadsAffinity) {
    // sched_getaffinity(0) reads the calling thread's mask, so a thread that pins itself to one
    // CPU sees a process of one CPU, without touching the test runner's own mask.
    std::packaged_task<std::size_t()> pinned_count([] {
        cpu_set_t allowed;
        CPU_ZERO(&allowed);
        if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return std::size_t{0};
        int first = 0;
        while (first < CPU_SETSIZE && !CPU_ISSET(first, &allowed)) ++first;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0) return std::size_t{0};
        return mproc::process_cpu_count();
    });
    auto count = pinned_count.get_future();
    std::thread thread(std::move(pinned_count));
    if (count.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
        // The thread owns its task, so it can outlive this test safely.
        thread.detach();
        FAIL() << "the pinned thread did not report within 30 s";
    }
    thread.join();
    EXPECT_EQ(count.get(), 1u);
}

TEST(RealMachine, OomKillCountIsReadWhereTheProcesssMemoryCgroupShowsOne) {
    // Whether this machine shows one is its own affair; where it does, the count must parse.
    const bool shown =
        mproc::detail::read_small_file("/proc/self/cgroup").has_value() &&
        (fs::exists("/sys/fs/cgroup/memory.events") || fs::exists("/sys/fs/cgroup/memory"));
    if (!shown) GTEST_SKIP() << "no memory cgroup is visible here";
    EXPECT_NE(mproc::detail::oom_kill_count(), std::nullopt);
}

TEST(RealMachine, MemoryIsPositiveWithAvailableNotAboveTotal) {
    const mproc::MemoryInfo info = mproc::memory();
    EXPECT_GT(info.total, 0u);
    EXPECT_GT(info.available, 0u);
    EXPECT_LE(info.available, info.total);
}

}  // namespace
