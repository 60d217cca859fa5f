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

std::string describe_lost(pid_t pid, int exit_code, int signal) {
    std::string text = "worker " + std::to_string(pid) + " died while running the task: ";
    if (signal != 0) {
        const char* name = sigabbrev_np(signal);
        text += "killed by signal " + std::to_string(signal) + " (SIG" +
                (name != nullptr ? name : "?") + ")";
        if (signal == SIGKILL) text += "; an out-of-memory kill ends a process this way too";
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

WorkerLost::WorkerLost(pid_t pid, int exit_code, int signal)
    : Error(describe_lost(pid, exit_code, signal)),
      pid_(pid),
      exit_code_(exit_code),
      signal_(signal) {}

}  // namespace mproc
