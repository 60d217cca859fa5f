#pragma once

// The errors mproc throws. Every one derives from mproc::Error, itself a std::runtime_error,
// so `catch (const mproc::Error&)` catches all of them and what() always says what happened.

#include <sys/types.h>
#include <stdexcept>
#include <string>

namespace mproc {

// The base of every error mproc throws.
class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// An exception escaped a task in a worker. It carries the exception's demangled type name, its
// message and the backtrace of the worker at the point where it was thrown. A frame whose
// function has no name in the dynamic symbol table (a static function, a lambda, the cold part
// of an optimised function) shows as ?? with its module and offset, for addr2line.
class RemoteError : public Error {
  public:
    RemoteError(std::string type_name, std::string message, std::string traceback);

    const std::string& type_name() const noexcept { return type_name_; }
    const std::string& message() const noexcept { return message_; }
    const std::string& traceback() const noexcept { return traceback_; }

  private:
    std::string type_name_;
    std::string message_;
    std::string traceback_;
};

// The worker died while it held the task: a crash, a signal, std::exit, an OOM kill.
// exit_code() is the value it passed to exit (0 when it was killed by a signal); signal() is
// the number of the signal that ended it (0 when it exited); runs() is how many times the task
// ran, each time in a worker that died while running it (more than 1 only with the pool's
// `retries`); out_of_memory() is true when the kernel's OOM killer is known to have killed it
// (the cgroup's memory.events counted an OOM kill as it died).
class WorkerLost : public Error {
  public:
    WorkerLost(pid_t pid, int exit_code, int signal, unsigned runs = 1, bool out_of_memory = false);

    pid_t pid() const noexcept { return pid_; }
    int exit_code() const noexcept { return exit_code_; }
    int signal() const noexcept { return signal_; }
    unsigned runs() const noexcept { return runs_; }
    bool out_of_memory() const noexcept { return out_of_memory_; }

  private:
    pid_t pid_;
    int exit_code_;
    int signal_;
    unsigned runs_;
    bool out_of_memory_;
};

// A get, join or queue wait ran past its deadline, or a task ran past the pool's task_timeout.
class TimeoutError : public Error {
  public:
    using Error::Error;
};

// Misuse: a submit after close, a second start, successful() before the result is ready.
class StateError : public Error {
  public:
    using Error::Error;
};

// A queue get that found nothing in time.
class Empty : public Error {
  public:
    using Error::Error;
};

// A queue put that found no room in time.
class Full : public Error {
  public:
    using Error::Error;
};

// A value could not be encoded, or bytes that arrived could not be decoded: corrupt,
// truncated or larger than the frame limit.
class SerializationError : public Error {
  public:
    using Error::Error;
};

// get() on the result of a task that was cancelled (AsyncResult::cancel, or an imap range
// destroyed before it yielded the task's result).
class CancelledError : public Error {
  public:
    using Error::Error;
};

// A manager connection that did not prove it knows the authkey.
class AuthenticationError : public Error {
  public:
    using Error::Error;
};

}  // namespace mproc
