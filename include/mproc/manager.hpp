#pragma once

// Manager: containers that a server process owns and that every process reaches through
// proxies, as Python's multiprocessing.Manager. Locally the server listens on a Unix socket
// that only this user can open; it can also listen on TCP for other machines. Every
// connection proves that it knows the manager's key before its first request is read. Dicts
// live in shared memory that local processes work on directly; the other containers are
// reached by a request to the server per operation.
//
//   mproc::Manager manager;                            // forks the server
//   auto counts = manager.dict<std::string, int>();
//   mproc::Process p(count_words, counts, "a.txt");     // proxies travel to any process
//   counts.update("total", add_one);                    // atomic; runs in this process
//
// Make the Manager early, before the program starts threads of its own: its server is a fork
// of the program, and a fork keeps only the thread that made it.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/callable.hpp"
#include "mproc/detail/local_dict.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "mproc/detail/queue_core.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"

namespace mproc {

// A proxy or a named container asked for with other types (or another kind) than the
// container was made with: dict<std::string, int>("x") after dict<int, int>("x"), or a
// proxy's bytes decoded as another proxy type.
class ContainerTypeError : public StateError {
  public:
    using StateError::StateError;
};

class Manager;

namespace detail {

// What every proxy is: the server's endpoint and the container's id. A proxy made by default
// (or decoded from an empty one) refers to nothing; every call on it throws StateError.
class ProxyBase {
  public:
    // Whether the proxy refers to a container.
    bool valid() const noexcept { return endpoint_ != nullptr; }
    // The address of the server that holds the container.
    const std::string& address() const;

  protected:
    ProxyBase() = default;
    ProxyBase(std::shared_ptr<ManagerEndpoint> endpoint, std::uint64_t id) noexcept
        : endpoint_(std::move(endpoint)), id_(id) {}

    // The endpoint; StateError for a proxy that refers to nothing.
    ManagerEndpoint& endpoint() const;
    std::uint64_t id() const noexcept { return id_; }

  public:
    // cereal's hooks. A proxy travels as plain bytes: the server's address, key and
    // incarnation, and the container's id. So it reaches any process, through a task, a Queue
    // or another manager container; the key travels with it, so send proxies only to processes
    // you would give the key.
    template <class Archive>
    void save(Archive& archive) const {
        static const std::string none;
        archive(endpoint_ ? endpoint_address(*endpoint_) : none,
                endpoint_ ? endpoint_authkey(*endpoint_) : none,
                endpoint_ ? endpoint_incarnation(*endpoint_) : std::uint64_t{0}, id_);
    }
    template <class Archive>
    void load(Archive& archive) {
        std::string address;
        std::string authkey;
        std::uint64_t incarnation = 0;
        std::uint64_t id = 0;
        archive(address, authkey, incarnation, id);
        endpoint_ = address.empty() ? nullptr : manager_endpoint(address, authkey, incarnation);
        id_ = endpoint_ ? id : 0;
    }

  private:
    std::shared_ptr<ManagerEndpoint> endpoint_;
    std::uint64_t id_ = 0;
};

// A proxy of a container of one kind holding these types: requests name the container's type
// signature, which the server checks.
template <ContainerKind kind, class... Types>
class ContainerProxy : public ProxyBase {
  protected:
    ContainerProxy() = default;
    ContainerProxy(std::shared_ptr<ManagerEndpoint> endpoint, std::uint64_t id) noexcept
        : ProxyBase(std::move(endpoint), id) {}

    static std::uint64_t signature() noexcept { return container_signature<Types...>(kind); }
    ManagerCall start(ManagerOp op) const { return ManagerCall(endpoint(), op, id(), signature()); }
    template <class... Items>
    ManagerReply call(ManagerOp op, const Items&... items) const {
        ManagerCall request = start(op);
        (request.add(items), ...);
        return request.send();
    }
};

}  // namespace detail

// A dict shared through a manager, as Python's Manager().dict(). Keys are compared by their
// encoding, which is equal for equal values of the usual key types (integers, strings,
// tuples and pairs of them, std::map); floating-point keys compare by bits (0.0 != -0.0).
// Entries keep their insertion order, as a Python dict does: overwriting a key keeps its
// place.
//
// The dict lives in shared memory that the manager's server owns. A process on the server's
// machine (a local manager, reached by its Unix socket) asks the server for that memory once,
// on its first call, and from then on does every operation itself, under the dict's
// process-shared lock: no round trip. A process that reached the server over TCP sends each
// call to the server, which does the same operation on the same memory. Throws mproc::Error
// when the server is gone, SerializationError when a key or value cannot be encoded,
// ContainerTypeError when the container holds other types.
template <class K, class V>
class DictProxy : public detail::ContainerProxy<detail::ContainerKind::dict, K, V> {
  public:
    // (No mapped_type: cereal would take the proxy for a std::map and try to copy it.)
    using key_type = K;

    // A proxy that refers to nothing, until one is assigned or decoded into it.
    DictProxy() = default;

    // d[key] = value.
    void set(const K& key, const V& value) {
        if (detail::LocalDict* local = local_dict()) {
            detail::ScratchBytes scratch;
            scratch.add(key);
            const std::size_t value_at = scratch.add(value);
            local->set(scratch.span(0, value_at), scratch.span_from(value_at));
            return;
        }
        call(detail::ManagerOp::dict_set, key, value);
    }
    // The value of key, or nullopt.
    std::optional<V> get(const K& key) const {
        if (detail::LocalDict* local = local_dict()) {
            detail::ScratchBytes scratch;
            scratch.add(key);
            const std::size_t key_end = scratch.bytes().size();
            if (!local->get(scratch.span(0, key_end), scratch.bytes())) return std::nullopt;
            std::optional<V> value(std::in_place);
            detail::decode(scratch.span_from(key_end), *value);
            return value;
        }
        detail::ManagerCall request = start(detail::ManagerOp::dict_get);
        request.add(key);
        detail::ManagerReply reply = request.send();
        if (reply.at_end()) return std::nullopt;
        return reply.value<V>();
    }
    // The value of key; std::out_of_range when it is absent.
    V at(const K& key) const {
        std::optional<V> value = get(key);
        if (!value) throw std::out_of_range("mproc: DictProxy::at: the key is not in the dict");
        return std::move(*value);
    }
    bool contains(const K& key) const {
        if (detail::LocalDict* local = local_dict()) {
            detail::ScratchBytes scratch;
            scratch.add(key);
            return local->contains(scratch.span_from(0));
        }
        return call(detail::ManagerOp::dict_contains, key).template value<bool>();
    }
    // Removes key; false when it was absent.
    bool erase(const K& key) {
        if (detail::LocalDict* local = local_dict()) {
            detail::ScratchBytes scratch;
            scratch.add(key);
            return local->erase(scratch.span_from(0));
        }
        return call(detail::ManagerOp::dict_erase, key).template value<bool>();
    }
    std::size_t size() const {
        if (detail::LocalDict* local = local_dict()) return local->size();
        return call(detail::ManagerOp::dict_size).template value<std::uint64_t>();
    }
    bool empty() const { return size() == 0; }
    // The entries, keys or values, in insertion order, at one moment (under the dict's lock,
    // or in one round trip).
    std::vector<std::pair<K, V>> items() const {
        return sequence<std::vector<std::pair<K, V>>>(detail::ManagerOp::dict_items);
    }
    std::vector<K> keys() const { return sequence<std::vector<K>>(detail::ManagerOp::dict_keys); }
    std::vector<V> values() const {
        return sequence<std::vector<V>>(detail::ManagerOp::dict_values);
    }
    void clear() {
        if (detail::LocalDict* local = local_dict()) return local->clear();
        call(detail::ManagerOp::dict_clear);
    }

    // Atomically d[key] = f(current, args...), and returns the new value. f is a sendable
    // callable (a function pointer or a lambda without captures, with explicit parameter
    // types) taking the current value as std::optional<V> (empty when key is absent), or as
    // V (a value-initialised V when absent). No other operation on the dict comes between its
    // read and its write. Where f runs: in this process, under the dict's lock, when the
    // manager is local (so f may be any sendable callable of this program); in the server for
    // a client that reached it over TCP, which then needs to run the same build as the server
    // (StateError otherwise). An exception from f leaves the entry as it was and comes back
    // as RemoteError. Keep f short: every other user of the dict waits while it runs, and f
    // must not use this same dict (RemoteError holding a StateError).
    template <class F, class... Args>
    V update(const K& key, F f, Args&&... args) {
        static_assert(detail::update_function_for<F, V, Args...>,
                      "mproc: DictProxy<K, V>::update(key, f, args...) needs f(std::optional<V>, "
                      "args...) or f(V, args...) returning a V");
        detail::require_sendable<F>();
        if (detail::LocalDict* local = local_dict()) {
            detail::ScratchBytes scratch;
            scratch.add(key);
            const std::size_t arguments_at = scratch.bytes().size();
            if constexpr (sizeof...(Args) > 0) {
                detail::encode(scratch.bytes(), detail::as_wire(args)...);
            }
            std::vector<std::byte> result;
            local->update(scratch.span(0, arguments_at),
                          detail::update_entry<V, true, F, Args...>(), detail::callable_to_wire(f),
                          scratch.span_from(arguments_at), result);
            V value{};
            detail::decode(result, value);
            return value;
        }
        const auto [entry, function] = detail::update_addresses<V, true, F, Args...>(f);
        detail::ManagerCall request(endpoint(), detail::ManagerOp::dict_update, id(), signature(),
                                    entry, function);
        request.add(key);
        request.add(detail::as_wire(args)...);
        return request.send().template value<V>();
    }

  private:
    friend class Manager;
    using Base = detail::ContainerProxy<detail::ContainerKind::dict, K, V>;
    using Base::Base;
    // Names of a dependent base, which unqualified calls would not find.
    using Base::call;
    using Base::endpoint;
    using Base::id;
    using Base::signature;
    using Base::start;

    // The dict's shared memory, when this process can work on it directly.
    detail::LocalDict* local_dict() const {
        return detail::local_dict(endpoint(), id(), signature());
    }
    template <class Sequence>
    Sequence sequence(detail::ManagerOp op) const {
        if (detail::LocalDict* local = local_dict()) {
            std::vector<std::byte> bytes;
            local->sequence(op != detail::ManagerOp::dict_values,
                            op != detail::ManagerOp::dict_keys, bytes);
            Sequence result;
            detail::decode(bytes, result);
            return result;
        }
        return call(op).template value<Sequence>();
    }
};

// A list in the manager's server: append, at, set, size, to_vector. Indices out of range
// throw std::out_of_range; every call is one round trip to the server; the other errors are as for
// DictProxy.
template <class T>
class ListProxy : public detail::ContainerProxy<detail::ContainerKind::list, T> {
  public:
    using value_type = T;

    ListProxy() = default;

    void append(const T& value) { call(detail::ManagerOp::list_append, value); }
    // Element i; std::out_of_range when i >= size().
    T at(std::size_t i) const {
        return call(detail::ManagerOp::list_at, static_cast<std::uint64_t>(i)).template value<T>();
    }
    // Element i = value; std::out_of_range when i >= size().
    void set(std::size_t i, const T& value) {
        call(detail::ManagerOp::list_set, static_cast<std::uint64_t>(i), value);
    }
    std::size_t size() const {
        return call(detail::ManagerOp::list_size).template value<std::uint64_t>();
    }
    bool empty() const { return size() == 0; }
    // Every element, in one round trip.
    std::vector<T> to_vector() const {
        return call(detail::ManagerOp::list_items).template value<std::vector<T>>();
    }

  private:
    friend class Manager;
    using Base = detail::ContainerProxy<detail::ContainerKind::list, T>;
    using Base::Base;
    // Names of a dependent base, which unqualified calls would not find.
    using Base::call;
    using Base::endpoint;
    using Base::id;
    using Base::signature;
    using Base::start;
};

// One value in the manager's server: get, set, and update, which runs a sendable f in the
// server atomically, as DictProxy::update does over TCP (f takes the current T).
template <class T>
class ValueProxy : public detail::ContainerProxy<detail::ContainerKind::value, T> {
  public:
    using value_type = T;

    ValueProxy() = default;

    T get() const { return call(detail::ManagerOp::value_get).template value<T>(); }
    void set(const T& value) { call(detail::ManagerOp::value_set, value); }
    // Atomically value = f(value, args...); returns the new value. RemoteError when f throws
    // (the value is then unchanged); StateError from a process of another build.
    template <class F, class... Args>
    T update(F f, Args&&... args) {
        static_assert(detail::update_function_for<F, T, Args...>,
                      "mproc: ValueProxy<T>::update(f, args...) needs f(T, args...) returning a "
                      "T");
        detail::require_sendable<F>();
        const auto [entry, function] = detail::update_addresses<T, false, F, Args...>(f);
        detail::ManagerCall request(endpoint(), detail::ManagerOp::value_update, id(), signature(),
                                    entry, function);
        request.add(detail::as_wire(args)...);
        return request.send().template value<T>();
    }

  private:
    friend class Manager;
    using Base = detail::ContainerProxy<detail::ContainerKind::value, T>;
    using Base::Base;
    // Names of a dependent base, which unqualified calls would not find.
    using Base::call;
    using Base::endpoint;
    using Base::id;
    using Base::signature;
    using Base::start;
};

// A first-in first-out queue in the manager's server, with Queue<T>'s interface. Unlike
// Queue<T> it is reached through the server, so it works across machines and travels as
// plain bytes; a blocking get or put waits in the server without holding it up for others.
// A process that dies while it waits takes nothing from the queue.
template <class T>
class QueueProxy : public detail::ContainerProxy<detail::ContainerKind::queue, T> {
  public:
    using value_type = T;

    QueueProxy() = default;

    // Appends value, waiting while the queue is full. StateError once the queue is closed.
    void put(const T& value) { put_for(value, std::nullopt); }
    // The same, waiting at most timeout for room: Full past it.
    template <class Rep, class Period>
    void put(const T& value, std::chrono::duration<Rep, Period> timeout) {
        put_for(value, detail::to_timeout(timeout));
    }
    // Appends value if there is room now; never waits.
    bool try_put(const T& value) {
        try {
            put_for(value, std::chrono::nanoseconds(0));
            return true;
        } catch (const Full&) {
            return false;
        }
    }
    // Takes the oldest item, waiting while the queue is empty. StateError once the queue is
    // closed and empty.
    T get() { return get_for(std::nullopt); }
    // The same, waiting at most timeout: Empty past it.
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        return get_for(detail::to_timeout(timeout));
    }
    // The oldest item if there is one now; never waits.
    std::optional<T> try_get() {
        try {
            return get_for(std::chrono::nanoseconds(0));
        } catch (const Empty&) {
            return std::nullopt;
        }
    }
    // Items in the queue now; another process may change it at once.
    std::size_t qsize() const { return sizes().first; }
    bool empty() const { return qsize() == 0; }
    bool full() const {
        const auto [size, maxsize] = sizes();
        return maxsize != 0 && size >= maxsize;
    }
    std::size_t maxsize() const { return sizes().second; }
    // Refuses further puts (StateError) and wakes every waiting getter and putter; getters
    // take the items left, then get StateError.
    void close() { call(detail::ManagerOp::queue_close); }

  private:
    friend class Manager;
    using Base = detail::ContainerProxy<detail::ContainerKind::queue, T>;
    using Base::Base;
    // Names of a dependent base, which unqualified calls would not find.
    using Base::call;
    using Base::endpoint;
    using Base::id;
    using Base::signature;
    using Base::start;

    void put_for(const T& value, std::optional<std::chrono::nanoseconds> timeout) {
        detail::ManagerCall request = start(detail::ManagerOp::queue_put);
        request.add_timeout(timeout);
        request.add(value);
        request.send();
    }
    T get_for(std::optional<std::chrono::nanoseconds> timeout) {
        detail::ManagerCall request = start(detail::ManagerOp::queue_get);
        request.add_timeout(timeout);
        return request.send().template value<T>();
    }
    std::pair<std::size_t, std::size_t> sizes() const {
        detail::ManagerReply reply = call(detail::ManagerOp::queue_size);
        const auto size = reply.value<std::uint64_t>();
        const auto maxsize = reply.value<std::uint64_t>();
        return {static_cast<std::size_t>(size), static_cast<std::size_t>(maxsize)};
    }
};

// A lock in the manager's server, as Python's Manager().Lock(), usable with std::lock_guard
// and std::unique_lock (Lockable and TimedLockable). It is held by the thread that acquired
// it (its connection): only that thread may release it, and if that thread's process dies
// (or the thread ends) while it holds the lock, the lock is released for the others.
class LockProxy : public detail::ProxyBase {
  public:
    LockProxy() = default;

    // Waits until the lock is this thread's. StateError when this thread already holds it
    // (it would wait for itself for ever).
    void acquire() { acquire_for(std::nullopt); }
    // Waits at most timeout; true when the lock is this thread's.
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) {
        return acquire_for(detail::to_timeout(timeout));
    }
    // StateError when this thread does not hold the lock.
    void release();

    void lock() { acquire(); }
    bool try_lock() { return acquire_for(std::chrono::nanoseconds(0)); }
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return acquire(timeout);
    }
    template <class Clock, class Duration>
    bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) {
        return acquire(deadline - Clock::now());
    }
    void unlock() { release(); }

  private:
    friend class Manager;
    using ProxyBase::ProxyBase;

    bool acquire_for(std::optional<std::chrono::nanoseconds> timeout);
};

struct ManagerOptions {
    // Where the server listens:
    //   ""            a Unix socket in the abstract namespace, with a random name, that only
    //                 processes of this user can connect to (the default);
    //   "host:port"   TCP on IPv4, for other machines: "0.0.0.0:50000", "localhost:0";
    //                 port 0 lets the system pick a free port (address() tells it);
    //   "unix:@name"  a Unix socket in the abstract namespace with this name.
    std::string address{};
    // The key a connection must prove it knows (by HMAC-SHA256 on a random challenge) before
    // the server reads a request; any bytes. Empty picks 32 random bytes (authkey() tells
    // them).
    std::string authkey{};
};

// A manager: the server process that holds shared containers, or a client of one on another
// process or machine (Manager::connect). Containers are made by dict(), list(), queue(),
// value() and lock(), which return proxies; the named forms return the same container to
// every caller. A container lives as long as its server (a dict's shared memory is freed when
// the server and every process that used the dict have let go of it).
//
// The server is forked when the Manager is made; it serves every connection from one thread,
// without blocking on any, and ends when this Manager is destroyed (or shutdown() is called),
// or when the process that made it dies. Proxies used after that throw mproc::Error.
// Movable, not copyable.
class Manager {
  public:
    // Starts a server on a private local socket. mproc::Error if it cannot start.
    Manager();
    // Starts a server as options say. mproc::Error when the address does not parse or cannot
    // be bound (in use, not an address of this machine).
    explicit Manager(ManagerOptions options);
    // A client of the server at address ("host:port", or the address() of a local manager).
    // Connects at once: AuthenticationError when the key is wrong, mproc::Error when no
    // manager answers there.
    static Manager connect(const std::string& address, const std::string& authkey);

    // For a server: stops it and waits for it to end (at most a few seconds, then kills it).
    ~Manager();
    Manager(Manager&& other) noexcept;
    Manager& operator=(Manager&& other) noexcept;
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;

    // Where the server listens: "host:port" (the bound port when 0 was asked for), or
    // "unix:@name" for a local socket. Manager::connect takes it.
    const std::string& address() const noexcept;
    const std::string& authkey() const noexcept;
    // The server's pid; 0 for a client made by connect().
    int pid() const noexcept;
    // Stops the server now and waits for it; later calls do nothing. StateError on a client.
    void shutdown();

    // A new dict, or the dict of that name (made on first request). ContainerTypeError when
    // a container of that name exists with other types or of another kind.
    template <class K, class V>
    DictProxy<K, V> dict() {
        return dict<K, V>(std::string_view());
    }
    template <class K, class V>
    DictProxy<K, V> dict(std::string_view name) {
        return DictProxy<K, V>(
            endpoint_, create(detail::ContainerKind::dict, DictProxy<K, V>::signature(), name,
                              {typeid(K).name(), typeid(V).name()}));
    }
    template <class T>
    ListProxy<T> list() {
        return list<T>(std::string_view());
    }
    template <class T>
    ListProxy<T> list(std::string_view name) {
        return ListProxy<T>(endpoint_, create(detail::ContainerKind::list,
                                              ListProxy<T>::signature(), name, {typeid(T).name()}));
    }
    // maxsize 0: unbounded.
    template <class T>
    QueueProxy<T> queue(std::size_t maxsize = 0) {
        return queue<T>(std::string_view(), maxsize);
    }
    template <class T>
    QueueProxy<T> queue(std::string_view name, std::size_t maxsize = 0) {
        return QueueProxy<T>(endpoint_,
                             create(detail::ContainerKind::queue, QueueProxy<T>::signature(), name,
                                    {typeid(T).name()}, maxsize));
    }
    // A value that starts as init; for a named value, the first caller's init.
    template <class T>
    ValueProxy<T> value(const T& init = T{}) {
        return value<T>(std::string_view(), init);
    }
    template <class T>
    ValueProxy<T> value(std::string_view name, const T& init) {
        std::vector<std::byte> encoded;
        detail::encode(encoded, init);
        return ValueProxy<T>(endpoint_,
                             create(detail::ContainerKind::value, ValueProxy<T>::signature(), name,
                                    {typeid(T).name()}, 0, encoded));
    }
    LockProxy lock() { return lock(std::string_view()); }
    LockProxy lock(std::string_view name);

  private:
    struct Server;
    Manager(std::shared_ptr<detail::ManagerEndpoint> endpoint, std::unique_ptr<Server> server);
    // Closes this thread's connection and, in the process that started it, stops the server.
    void release() noexcept;

    std::uint64_t create(detail::ContainerKind kind, std::uint64_t signature, std::string_view name,
                         std::initializer_list<const char*> types, std::uint64_t maxsize = 0,
                         std::span<const std::byte> init = {});

    std::shared_ptr<detail::ManagerEndpoint> endpoint_;
    std::unique_ptr<Server> server_;
};

}  // namespace mproc
