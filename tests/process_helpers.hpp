#pragma once

// What the tests look at to prove that nothing is left behind: open descriptors and child
// processes of the test program; and the fixture of tests run under each start method.

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mproc/pool.hpp"
#include "mproc/start_method.hpp"

namespace mproc::testing {

inline std::size_t open_descriptor_count() {
    std::size_t count = 0;
    if (DIR* dir = ::opendir("/proc/self/fd")) {
        while (::readdir(dir) != nullptr) ++count;
        ::closedir(dir);
    }
    return count;
}

// The pids of the children of `parent` (this process by default), zombies included.
inline std::vector<pid_t> child_pids(pid_t parent = ::getpid()) {
    std::vector<pid_t> children;
    DIR* dir = ::opendir("/proc");
    if (dir == nullptr) return children;
    while (dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream stat("/proc/" + name + "/stat");
        std::string line;
        if (!std::getline(stat, line)) continue;
        // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
        std::istringstream rest(line.substr(line.rfind(')') + 2));
        char state;
        pid_t ppid;
        rest >> state >> ppid;
        if (ppid == parent) children.push_back(static_cast<pid_t>(std::stoi(name)));
    }
    ::closedir(dir);
    return children;
}

// Whether pred() holds within `limit`, asking every few milliseconds: a bounded wait.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

// Names the instances of a test parameterised by start method: PoolTest.Map/spawn.
struct StartMethodName {
    template <class ParamInfo>
    std::string operator()(const ParamInfo& info) const {
        switch (info.param) {
            case StartMethod::fork:
                return "fork";
            case StartMethod::spawn:
                return "spawn";
            case StartMethod::forkserver:
                return "forkserver";
        }
        return "unknown";
    }
};

// A test run once under each start method (INSTANTIATE_TEST_SUITE_P with StartMethodName),
// whose pools are made with options(): the processes asked for, under the test's start method.
class StartMethodTest : public ::testing::TestWithParam<StartMethod> {
  protected:
    mproc::PoolOptions options(std::size_t processes, mproc::PoolOptions base = {}) const {
        base.processes = processes;
        base.start_method = GetParam();
        return base;
    }
};

}  // namespace mproc::testing
