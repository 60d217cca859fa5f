#include "mproc/errors.hpp"

#include <csignal>
#include <cstring>

namespace mproc {

namespace {

std::string describe_remote(const std::string& type_name, const std::string& message,
                            const std::string& traceback) {
    std::string text = type_name + ": " + message;
    if (!traceback.empty()) text += "\nRemote traceback (most recent call first):\n" + traceback;
    return text;
}

std::string describe_lost(pid_t pid, int exit_code, int signal, unsigned runs, bool out_of_memory) {
    std::string text = "worker " + std::to_string(pid) + " died while running the task";
    if (runs > 1)
        text += " (it ran " + std::to_string(runs) + " times, each in a worker that died)";
    text += ": ";
    if (signal != 0) {
        const char* name = sigabbrev_np(signal);
        text += "killed by signal " + std::to_string(signal) + " (SIG" +
                (name != nullptr ? name : "?") + ")";
        if (out_of_memory) {
            text +=
                " from the kernel's out-of-memory killer (its cgroup's memory.events counted "
                "an OOM kill); give it more memory, or set the pool's max_memory_per_child";
        } else if (signal == SIGKILL) {
            text += "; an out-of-memory kill ends a process this way too";
        }
    } else {
        text += "exited with code " + std::to_string(exit_code);
    }
    return text;
}

}  // namespace

RemoteError::RemoteError(std::string type_name, std::string message, std::string traceback)
    : Error(describe_remote(type_name, message, traceback)),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      traceback_(std::move(traceback)) {}

WorkerLost::WorkerLost(pid_t pid, int exit_code, int signal, unsigned runs, bool out_of_memory)
    : Error(describe_lost(pid, exit_code, signal, runs, out_of_memory)),
      pid_(pid),
      exit_code_(exit_code),
      signal_(signal),
      runs_(runs),
      out_of_memory_(out_of_memory) {}

}  // namespace mproc
