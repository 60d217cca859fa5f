#pragma once

// What may run in another process: a sendable callable (a pointer to a non-member function, or
// an object of an empty class such as a lambda without captures), and mproc::bind, which pairs
// one with its arguments.

#include <concepts>
#include <memory>
#include <tuple>
#include <type_traits>

#include "mproc/detail/code_address.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/detail/task_codec.hpp"

namespace mproc {

// A callable that another process running the same program can call knowing only its type and,
// for a function pointer, its address: nothing it captured has to travel.
template <class F>
concept SendableCallable = (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
                           (std::is_class_v<F> && std::is_empty_v<F> &&
                            std::is_default_constructible_v<F> && std::is_trivially_copyable_v<F>);

namespace detail {

// Every entry point that takes a user's callable checks it here, so that a capturing lambda
// fails with one message that says what to do.
template <class F>
constexpr void require_sendable() {
    static_assert(SendableCallable<F>,
                  "mproc: this callable cannot be sent to another process because it holds "
                  "state (a lambda with captures, or an object with data members). Pass the "
                  "captured values as arguments instead: pool.map(f, inputs), "
                  "pool.apply(f, args...), mproc::bind(f, args...).");
}

}  // namespace detail

// A sendable callable together with its arguments, encoded once: what PoolOptions::initializer
// holds. Copies share the encoded call.
class BoundCall {
  public:
    explicit BoundCall(std::shared_ptr<const detail::Frame> call) noexcept
        : call_(std::move(call)) {}
    // A task frame of one item, run by a worker like any task.
    const detail::Frame& frame() const noexcept { return *call_; }

  private:
    std::shared_ptr<const detail::Frame> call_;
};

// Pairs a sendable callable with arguments, to be called in another process: mproc::bind(f, 1,
// "x") calls f(1, "x") there. Arguments are encoded now; a value that cannot be encoded throws
// SerializationError here.
template <class F, class... Args>
BoundCall bind(F f, Args&&... args) {
    detail::require_sendable<F>();
    using ArgTuple = std::tuple<detail::wire_arg_t<Args>...>;
    static_assert(detail::callable_with_tuple<F, ArgTuple>,
                  "mproc::bind: the function cannot be called with these arguments");
    detail::TaskEncoder<F, ArgTuple> encoder(f);
    encoder.add(std::forward_as_tuple(std::forward<Args>(args)...));
    return BoundCall(std::make_shared<const detail::Frame>(encoder.finish()));
}

}  // namespace mproc
