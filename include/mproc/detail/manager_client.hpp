#pragma once

// The client side of the manager protocol, as the proxy templates use it: an endpoint (the
// server's address and key, shared by every proxy of one server in this process), and one
// call on this thread's connection to it. Each thread of each process has its own connection,
// opened on first use, so threads never wait for each other's calls, and a blocking call (a
// queue get, a lock acquire) blocks only its own thread. A forked child never uses its
// parent's connections: they are closed in the child at the fork.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/code_address.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "mproc/detail/task_codec.hpp"
#include "mproc/detail/unique_fd.hpp"
#include "mproc/detail/wire_archive.hpp"

namespace mproc::detail {

// A manager server as clients know it. Opaque; made by manager_endpoint().
class ManagerEndpoint;
class ManagerChannel;

// The endpoint for a server: one per (address, authkey, incarnation) in a process at a time,
// so that all proxies of a server share this thread's connection to it. The incarnation is
// the server's random identity, which its connections check: a proxy of a server that has
// ended never reaches another one that listens at the same address. Throws mproc::Error
// when the address does not parse.
std::shared_ptr<ManagerEndpoint> manager_endpoint(const std::string& address,
                                                  const std::string& authkey,
                                                  std::uint64_t incarnation);
const std::string& endpoint_address(const ManagerEndpoint& endpoint) noexcept;
const std::string& endpoint_authkey(const ManagerEndpoint& endpoint) noexcept;
std::uint64_t endpoint_incarnation(const ManagerEndpoint& endpoint) noexcept;
// Connects this thread to the server at address now, proving the key, and returns its
// endpoint. AuthenticationError on a wrong key, mproc::Error when no manager answers there.
std::shared_ptr<ManagerEndpoint> connect_manager(const std::string& address,
                                                 const std::string& authkey);
// Closes this thread's connection to endpoint, if it has one.
void disconnect_endpoint(const ManagerEndpoint& endpoint) noexcept;

// The items of a response after its status; valid until the thread's next call.
class ManagerReply {
  public:
    explicit ManagerReply(std::span<const std::byte> items) noexcept : items_(items) {}
    bool at_end() const noexcept { return items_.at_end(); }
    // The next item's bytes; SerializationError when there is none.
    std::span<const std::byte> next() { return items_.next(); }
    // The next item decoded as T; SerializationError when it does not decode as one.
    template <class T>
    T value() {
        T result{};
        decode(next(), result);
        return result;
    }

  private:
    ItemReader items_;
};

// One request and its response on this thread's connection to a server. Build it with add(),
// then send() once. A call that is dropped before send() sends nothing.
class ManagerCall {
  public:
    // Opens this thread's connection if needed (AuthenticationError, mproc::Error), and
    // starts the request. StateError when this thread is already in a call to the same
    // server (a value's save() or load() that calls the manager).
    ManagerCall(ManagerEndpoint& endpoint, ManagerOp op, std::uint64_t container,
                std::uint64_t signature, std::uint64_t entry = 0, std::uint64_t function = 0);
    ~ManagerCall();
    ManagerCall(const ManagerCall&) = delete;
    ManagerCall& operator=(const ManagerCall&) = delete;

    // Adds one item holding the encodings of values; SerializationError if one cannot be
    // encoded.
    template <class... T>
    void add(const T&... values) {
        appender_.add(values...);
    }
    // Adds one item holding bytes that are already an encoding.
    void add_raw(std::span<const std::byte> bytes) { appender_.add_bytes(bytes); }
    void add_timeout(std::optional<std::chrono::nanoseconds> timeout) {
        add(timeout ? static_cast<WireTimeout>(std::max<std::int64_t>(timeout->count(), 0))
                    : wait_forever);
    }
    // Sends the request and waits for its response. Throws what an error response stands
    // for: SerializationError, ContainerTypeError, std::out_of_range, RemoteError, Empty,
    // Full, StateError; mproc::Error when the connection fails (the server has ended).
    ManagerReply send();
    // The descriptors the response carried (after send()).
    std::vector<UniqueFd> take_descriptors() noexcept;

  private:
    ManagerChannel& channel_;
    FrameAppender appender_;
};

// An update function runs in the server, which is a fork of the program: the request names
// a typed entry (below) and the user's function by their code addresses.
struct UpdateCall {
    std::span<const std::byte> current;  // the value's encoding, when present
    bool present = false;
    std::span<const std::byte> arguments;
    std::uint64_t function = 0;
    std::vector<std::byte>* result = nullptr;  // the new value's encoding is appended here
};
using UpdateEntryFn = void (*)(UpdateCall& call);

// Registers an update entry (during static initialisation) and returns its wire address.
std::uint64_t register_update_entry(UpdateEntryFn entry);
// The entry at a wire address; SerializationError when none was registered there.
UpdateEntryFn find_update_entry(std::uint64_t address);

// Calls f(current, args...) and encodes what it returns as a V. With TakesOptional, current
// is a std::optional<V> (empty when the key is absent); otherwise a V (value-initialised when
// absent).
template <class F, class V, class ArgTuple, bool TakesOptional>
void run_update(UpdateCall& call) {
    F f = callable_from_wire<F>(call.function);
    ArgTuple args;
    decode_arguments(call.arguments, args);
    auto apply = [&](auto&& current) -> V {
        return std::apply(
            [&](auto&... values) -> V {
                return static_cast<V>(std::invoke(f, std::move(current), std::move(values)...));
            },
            args);
    };
    V next{};
    if constexpr (TakesOptional) {
        std::optional<V> current;
        if (call.present) {
            current.emplace();
            decode(call.current, *current);
        }
        next = apply(std::move(current));
    } else {
        V current{};
        if (call.present) decode(call.current, current);
        next = apply(std::move(current));
    }
    encode(*call.result, next);
}

template <class F, class V, class ArgTuple, bool TakesOptional>
inline const std::uint64_t update_entry_address =
    register_update_entry(&run_update<F, V, ArgTuple, TakesOptional>);

// Whether an update function takes std::optional<V> (or something it converts to), else V.
template <class F, class V, class... Args>
inline constexpr bool takes_optional =
    std::is_invocable_v<F&, std::optional<V>&&, wire_arg_t<Args>&&...>;

template <class F, class V, class... Args>
concept update_function_for =
    (std::is_invocable_v<F&, std::optional<V>&&, wire_arg_t<Args>&&...> &&
     std::is_convertible_v<std::invoke_result_t<F&, std::optional<V>&&, wire_arg_t<Args>&&...>,
                           V>) ||
    (std::is_invocable_v<F&, V&&, wire_arg_t<Args>&&...> &&
     std::is_convertible_v<std::invoke_result_t<F&, V&&, wire_arg_t<Args>&&...>, V>);

// The update entry that runs f for a V, as update_addresses names it.
template <class V, bool AllowOptional, class F, class... Args>
UpdateEntryFn update_entry() {
    using ArgTuple = std::tuple<wire_arg_t<Args>...>;
    constexpr bool optional_form = AllowOptional && takes_optional<F, V, Args...>;
    return &run_update<F, V, ArgTuple, optional_form>;
}

// Fills in an update request's header and arguments item, for ValueProxy and DictProxy.
template <class V, bool AllowOptional, class F, class... Args>
std::pair<std::uint64_t, std::uint64_t> update_addresses(F f) {
    using ArgTuple = std::tuple<wire_arg_t<Args>...>;
    constexpr bool optional_form = AllowOptional && takes_optional<F, V, Args...>;
    return {update_entry_address<F, V, ArgTuple, optional_form>, callable_to_wire(f)};
}

}  // namespace mproc::detail
