#pragma once

// Process: one child process running one callable, as Python's multiprocessing.Process.

#include <sys/types.h>
#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mproc/callable.hpp"
#include "mproc/start_method.hpp"

namespace mproc {

struct ProcessOptions {
    // Shown in error messages and, cut to 15 bytes, by ps; empty picks "Process-N".
    std::string name{};
    // A daemon is terminated, not waited for, when its Process object is destroyed.
    bool daemon = false;
    // Unset means get_start_method().
    std::optional<StartMethod> start_method = std::nullopt;
};

namespace detail {

// The callable and its arguments, type-erased; run once, in the child.
class ProcessTarget {
  public:
    virtual ~ProcessTarget() = default;
    // Runs the call here: in the child of a fork.
    virtual void run() = 0;
    // The call encoded for a fresh run of the program (spawn, forkserver); nullopt when the
    // callable is not sendable or an argument cannot be encoded.
    virtual std::optional<BoundCall> encode_for_spawn() const = 0;
};

template <class T>
inline constexpr bool encodable_v =
    cereal::traits::is_output_serializable<wire_arg_t<T>, WireOutputArchive>::value;

template <class F, class... Args>
class BoundTarget final : public ProcessTarget {
  public:
    BoundTarget(F f, Args... args) : f_(std::move(f)), args_(std::move(args)...) {}
    void run() override { std::apply(f_, std::move(args_)); }
    std::optional<BoundCall> encode_for_spawn() const override {
        if constexpr (SendableCallable<F> && (encodable_v<Args> && ...) &&
                      callable_with_tuple<F, std::tuple<wire_arg_t<Args>...>>) {
            return std::apply([&](const auto&... args) { return mproc::bind(f_, args...); }, args_);
        } else {
            return std::nullopt;
        }
    }

  private:
    F f_;
    std::tuple<Args...> args_;
};

class ProcessState;

}  // namespace detail

// A child process that runs f(args...) once started. Under fork (the default) f may be any
// callable, capturing lambdas included: the child is a copy of the parent. Under spawn and
// forkserver the child is a fresh run of the program (entered through mproc::init), so f must
// be a sendable callable and the arguments values mproc can encode; otherwise start() throws
// StateError. Under forkserver a Process starts as it does under spawn.
//
// The child's exit code follows Python: 0 when f returns, the value given to std::exit, 1 when
// f throws (the error is printed to stderr), -N when signal N ended it. The child dies with its
// parent: with the death signal the kernel sends when the *thread* that started it ends, so
// start a Process from a thread that outlives it (the main thread, typically).
//
// A Process that was moved from acts as one never started: pid() 0, exitcode() nullopt,
// is_alive() false; start, join, terminate and kill throw StateError.
class Process {
  public:
    template <class F, class... Args>
    requires(
        !std::same_as<std::decay_t<F>, ProcessOptions> &&
        std::invocable<std::decay_t<F>&, std::decay_t<Args>&&...>) explicit Process(F&& f,
                                                                                    Args&&... args)
        : Process(ProcessOptions{}, std::forward<F>(f), std::forward<Args>(args)...) {}

    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&&... > Process(ProcessOptions options, F&& f, Args&&... args)
        : Process(std::move(options),
                  std::make_unique<detail::BoundTarget<std::decay_t<F>, std::decay_t<Args>...>>(
                      std::forward<F>(f), std::forward<Args>(args)...)) {}

    Process(Process&&) noexcept;
    Process& operator=(Process&&) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    // A started process still running is joined, or, if it is a daemon, terminated (SIGTERM,
    // then SIGKILL after a second) and reaped.
    ~Process();

    // Starts the child. StateError if it was started before; mproc::Error if fork fails.
    void start();
    // Waits for the child to end. StateError if it was never started.
    void join();
    // Waits at most timeout; true when the child has ended.
    template <class Rep, class Period>
    bool join(std::chrono::duration<Rep, Period> timeout) {
        return join_for(std::chrono::ceil<std::chrono::milliseconds>(timeout));
    }
    bool is_alive();
    // Sends SIGTERM (terminate) or SIGKILL (kill); no effect on a child that has ended.
    // StateError if it was never started.
    void terminate();
    void kill();
    // nullopt while running (or before start); else the exit code, Python's convention.
    std::optional<int> exitcode();
    // The child's pid; 0 before start().
    pid_t pid() const noexcept;
    const std::string& name() const noexcept;
    bool daemon() const noexcept;

  private:
    Process(ProcessOptions options, std::unique_ptr<detail::ProcessTarget> target);
    bool join_for(std::chrono::milliseconds timeout);
    // The state, or StateError for a Process that was moved from.
    detail::ProcessState& started_state(const char* what) const;

    std::unique_ptr<detail::ProcessState> state_;
};

}  // namespace mproc
