#pragma once

// A memory cgroup of the test's own, with a limit small enough that a test can provoke a real
// OOM kill of one of its processes without troubling anything else on the machine.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace mproc::testing {

// A child of this process's own memory cgroup with a memory limit and no swap beyond it, so
// that a process in it that touches more than the limit is killed by the OOM killer. cgroup v1
// (memory.limit_in_bytes, memory.memsw.limit_in_bytes) and v2 (memory.max, memory.swap.max,
// which needs the memory controller in the parent's cgroup.subtree_control). Destruction moves
// any process still in it back to the parent and removes it.
class OomCgroup {
  public:
    // Makes the cgroup; throws std::runtime_error, saying why, when this machine does not let
    // this process make one (not root, no memory controller, a read-only mount).
    explicit OomCgroup(std::uint64_t limit_bytes) {
        const auto parent = own_memory_cgroup();
        if (!parent) throw std::runtime_error("no memory cgroup of this process is writable");
        parent_ = parent->directory;
        version_ = parent->version;
        static int made = 0;
        directory_ = parent_ / ("mproc_oom_test_" + std::to_string(::getpid()) + "_" +
                                std::to_string(++made));
        std::error_code error;
        if (!std::filesystem::create_directory(directory_, error)) {
            throw std::runtime_error("cannot make " + directory_.string() + ": " + error.message());
        }
        const std::string limit = std::to_string(limit_bytes);
        // The limit with swap may not be below the limit, so the limit goes first; the swap
        // file is missing where the kernel does not account swap, and then none is used.
        const bool limited =
            version_ == Version::kV1
                ? write(directory_ / "memory.limit_in_bytes", limit) &&
                      write_if_present(directory_ / "memory.memsw.limit_in_bytes", limit)
                : write(directory_ / "memory.max", limit) &&
                      write_if_present(directory_ / "memory.swap.max", "0");
        if (!limited) {
            remove();
            throw std::runtime_error("cannot set the memory limit of " + directory_.string());
        }
    }
    OomCgroup(const OomCgroup&) = delete;
    OomCgroup& operator=(const OomCgroup&) = delete;
    ~OomCgroup() { remove(); }

    // Moves pid (the whole process) into the cgroup; its children from now on start in it.
    bool add(pid_t pid) const { return write(directory_ / "cgroup.procs", std::to_string(pid)); }

    // Whether a test can make an OomCgroup here: it makes one and removes it. A test that
    // needs one skips when this is empty, and says why with the text of why_not().
    static std::optional<std::string> why_not() {
        try {
            OomCgroup probe(64 << 20);
            return std::nullopt;
        } catch (const std::exception& error) {
            return std::string(error.what());
        }
    }

  private:
    enum class Version { kV1, kV2 };

    struct Cgroup {
        std::filesystem::path directory;
        Version version;
    };

    static bool write(const std::filesystem::path& path, const std::string& text) {
        std::ofstream out(path);
        out << text << std::flush;
        return static_cast<bool>(out);
    }

    static bool write_if_present(const std::filesystem::path& path, const std::string& text) {
        return !std::filesystem::exists(path) || write(path, text);
    }

    static std::string read(const std::filesystem::path& path) {
        std::ifstream in(path);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }

    // The cgroup directory that carries this process's memory controller, from
    // /proc/self/cgroup: a v1 "memory" hierarchy, else the v2 one when its memory controller
    // is handed down to children.
    static std::optional<Cgroup> own_memory_cgroup() {
        namespace fs = std::filesystem;
        const fs::path mount = "/sys/fs/cgroup";
        std::optional<std::string> v2_path;
        std::istringstream lines(read("/proc/self/cgroup"));
        for (std::string line; std::getline(lines, line);) {
            const auto first = line.find(':');
            const auto second = line.find(':', first + 1);
            if (first == std::string::npos || second == std::string::npos) continue;
            const std::string controllers = line.substr(first + 1, second - first - 1);
            const std::string path = line.substr(second + 1);
            if (line.substr(0, first) == "0" && controllers.empty()) {
                v2_path = path;
                continue;
            }
            std::istringstream names(controllers);
            for (std::string name; std::getline(names, name, ',');) {
                if (name != "memory") continue;
                for (const fs::path& root : {mount / controllers, mount / "memory"}) {
                    // A container may mount its own cgroup as the hierarchy's root.
                    for (const fs::path& directory :
                         {root / fs::path(path).relative_path(), root}) {
                        if (fs::exists(directory / "memory.limit_in_bytes")) {
                            return Cgroup{directory, Version::kV1};
                        }
                    }
                }
            }
        }
        if (!v2_path) return std::nullopt;
        // Hybrid hosts mount the v2 hierarchy under "unified".
        const fs::path root = fs::exists(mount / "cgroup.controllers") ? mount : mount / "unified";
        for (const fs::path& directory : {root / fs::path(*v2_path).relative_path(), root}) {
            const std::string handed_down = read(directory / "cgroup.subtree_control");
            if (fs::exists(directory / "cgroup.controllers") &&
                (" " + handed_down).find(" memory") != std::string::npos) {
                return Cgroup{directory, Version::kV2};
            }
        }
        return std::nullopt;
    }

    // Moves what is left in the cgroup to its parent and removes it. A process that has just
    // been killed may hold it for a moment, so removal is retried for a while.
    void remove() const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
            std::istringstream pids(read(directory_ / "cgroup.procs"));
            for (std::string pid; pids >> pid;) write(parent_ / "cgroup.procs", pid);
            std::error_code error;
            std::filesystem::remove(directory_, error);
            if (!error || !std::filesystem::exists(directory_)) return;
            if (std::chrono::steady_clock::now() >= deadline) {
                ADD_FAILURE() << "could not remove the test cgroup " << directory_ << ": "
                              << error.message();
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    std::filesystem::path parent_;
    std::filesystem::path directory_;
    Version version_ = Version::kV1;
};

}  // namespace mproc::testing
