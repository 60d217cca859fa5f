#include "manager/store.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "manager/protocol.hpp"
#include "manager/server_life.hpp"
#include "manager/shared_dict.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/errors.hpp"
#include "worker/exception_capture.hpp"

namespace mproc::detail {

namespace {

// A key or a value: the bytes a client encoded. std::string for its hash and its small-size
// buffer.
using Bytes = std::string;

Bytes to_bytes(std::span<const std::byte> span) {
    return Bytes(reinterpret_cast<const char*>(span.data()), span.size());
}
std::span<const std::byte> as_span(const Bytes& bytes) noexcept {
    return std::as_bytes(std::span(bytes.data(), bytes.size()));
}

// A request that fails with a status other than bad_request.
class ReplyError : public std::runtime_error {
  public:
    ReplyError(ReplyStatus status, const std::string& message)
        : std::runtime_error(message), status(status) {}
    ReplyStatus status;
};

// An update function that threw: the reply carries its error.
struct RemoteFailure {
    ErrorInfo error;
};

struct Parked {
    ClientId client;
    std::uint64_t sequence;
    std::optional<StoreClock::time_point> deadline;
    Bytes item;  // what a waiting put will put
};

// In shared memory, which local clients map and work on directly (shared_dict.hpp); the
// server works on it the same way for its TCP clients.
struct Dict {
    std::shared_ptr<SharedDict> shared;
};

struct List {
    std::vector<Bytes> items;
};

struct Value {
    Bytes value;
};

struct Queue {
    std::deque<Bytes> items;
    std::uint64_t maxsize = 0;
    bool closed = false;
    std::deque<Parked> getters;  // only while the queue is empty
    std::deque<Parked> putters;  // only while it is full
};

struct Lock {
    ClientId holder = 0;
    std::deque<Parked> waiters;
};

struct Container {
    ContainerKind kind;
    std::uint64_t signature;
    std::string name;
    std::string description;
    std::variant<Dict, List, Value, Queue, Lock> data;
};

WireTimeout read_timeout(std::span<const std::byte> item) {
    WireTimeout timeout = 0;
    decode(item, timeout);
    return timeout;
}

std::uint64_t read_u64(std::span<const std::byte> item) {
    std::uint64_t value = 0;
    decode(item, value);
    return value;
}

std::optional<StoreClock::time_point> deadline_of(WireTimeout timeout) {
    if (timeout < 0) return std::nullopt;
    return StoreClock::now() + std::chrono::nanoseconds(timeout);
}

const char* kind_name(ContainerKind kind) {
    switch (kind) {
        case ContainerKind::dict:
            return "dict";
        case ContainerKind::list:
            return "list";
        case ContainerKind::value:
            return "value";
        case ContainerKind::queue:
            return "queue";
        case ContainerKind::lock:
            return "lock";
    }
    return "container";
}

}  // namespace

struct Store::Impl {
    // Held for the life of the store, which in a server is the life of the process: local
    // clients tell by it that the server still runs (server_life.hpp).
    std::shared_ptr<ServerLife> life = ServerLife::hold();
    std::vector<std::unique_ptr<Container>> containers;  // id - 1
    std::unordered_map<std::string, std::uint64_t> named;
    std::unordered_map<ClientId, std::uint64_t> parked_in;  // client -> container
    std::unordered_map<ClientId, std::vector<std::uint64_t>> held_locks;
    std::set<std::uint64_t> waiting;  // containers with parked requests
    std::optional<StoreClock::time_point> earliest;
    std::vector<Completion> completions;

    // ------------------------------------------------------------------------- dispatch

    Outcome dispatch(const ClientInfo& client, const Request& request, std::vector<std::byte>& out,
                     std::vector<UniqueFd>* descriptors) {
        const std::uint64_t sequence = request.header.sequence;
        if (request.op() == ManagerOp::create) return create(request, out);
        Container& c = container(request.head.container);
        if (c.signature != request.head.signature) {
            throw ReplyError(ReplyStatus::type_mismatch,
                             "mproc: the manager's container " + label(c) + " is a " +
                                 c.description +
                                 "; this proxy was made for other types (or another kind)");
        }
        switch (request.op()) {
            case ManagerOp::queue_put:
            case ManagerOp::queue_get:
            case ManagerOp::queue_size:
            case ManagerOp::queue_close:
                return queue_op(client, request.head.container, as<Queue>(c), request, out);
            case ManagerOp::lock_acquire:
            case ManagerOp::lock_release:
                return lock_op(client, request.head.container, as<Lock>(c), request, out);
            default:
                break;
        }
        const std::size_t start = out.size();
        ReplyWriter reply(out, sequence);
        switch (request.op()) {
            case ManagerOp::dict_attach:
                attach_dict(client, as<Dict>(c), descriptors, reply);
                reply.finish();
                set_descriptor_count(out, start, 2);
                return Outcome::answered;
            case ManagerOp::dict_set:
            case ManagerOp::dict_get:
            case ManagerOp::dict_contains:
            case ManagerOp::dict_erase:
            case ManagerOp::dict_size:
            case ManagerOp::dict_items:
            case ManagerOp::dict_keys:
            case ManagerOp::dict_values:
            case ManagerOp::dict_clear:
            case ManagerOp::dict_update:
                dict_op(client, *as<Dict>(c).shared, request, reply);
                break;
            case ManagerOp::list_append:
            case ManagerOp::list_at:
            case ManagerOp::list_set:
            case ManagerOp::list_size:
            case ManagerOp::list_items:
                list_op(as<List>(c), request, reply);
                break;
            case ManagerOp::value_get:
            case ManagerOp::value_set:
            case ManagerOp::value_update:
                value_op(client, as<Value>(c), request, reply);
                break;
            default:
                throw SerializationError("mproc: a manager request names the unknown operation " +
                                         std::to_string(request.head.op));
        }
        reply.finish();
        return Outcome::answered;
    }

    Container& container(std::uint64_t id) {
        if (id == 0 || id > containers.size()) {
            throw SerializationError("mproc: a manager request names container " +
                                     std::to_string(id) + ", which this manager does not have");
        }
        return *containers[id - 1];
    }

    template <class T>
    static T& as(Container& c) {
        T* data = std::get_if<T>(&c.data);
        if (data == nullptr) {
            throw SerializationError("mproc: a manager request's operation does not apply to a " +
                                     std::string(kind_name(c.kind)));
        }
        return *data;
    }

    static std::string label(const Container& c) {
        return c.name.empty() ? "(unnamed)" : "'" + c.name + "'";
    }

    Outcome create(const Request& request, std::vector<std::byte>& out) {
        CreateSpec spec;
        decode(request.item(0), spec);
        if (spec.kind < static_cast<std::uint8_t>(ContainerKind::dict) ||
            spec.kind > static_cast<std::uint8_t>(ContainerKind::lock) || spec.signature == 0) {
            throw SerializationError("mproc: a manager request asks for an unknown container kind");
        }
        const auto kind = static_cast<ContainerKind>(spec.kind);
        std::uint64_t id = 0;
        if (!spec.name.empty()) {
            if (auto found = named.find(spec.name); found != named.end()) {
                const Container& existing = *containers[found->second - 1];
                if (existing.kind != kind || existing.signature != spec.signature) {
                    throw ReplyError(ReplyStatus::type_mismatch,
                                     "mproc: the manager's container '" + spec.name + "' is a " +
                                         existing.description + ", not a " + spec.description);
                }
                id = found->second;
            }
        }
        if (id == 0) {
            auto made = std::make_unique<Container>(
                Container{kind, spec.signature, spec.name, spec.description, List{}});
            switch (kind) {
                case ContainerKind::dict:
                    made->data = Dict{SharedDict::create(spec.signature)};
                    break;
                case ContainerKind::list:
                    made->data = List{};
                    break;
                case ContainerKind::value:
                    made->data = Value{to_bytes(request.item(1))};
                    break;
                case ContainerKind::queue: {
                    Queue queue;
                    queue.maxsize = spec.maxsize;
                    made->data = std::move(queue);
                    break;
                }
                case ContainerKind::lock:
                    made->data = Lock{};
                    break;
            }
            containers.push_back(std::move(made));
            id = containers.size();
            if (!spec.name.empty()) {
                try {
                    named.emplace(spec.name, id);
                } catch (...) {
                    containers.pop_back();
                    throw;
                }
            }
        }
        ReplyWriter reply(out, request.header.sequence);
        reply.ok();
        reply.add(id);
        reply.finish();
        return Outcome::answered;
    }

    // ------------------------------------------------------------------------- dict, list, value

    // Runs an update entry and returns the new value's bytes. RemoteFailure when the
    // function (or the decoding of its arguments) threw.
    static Bytes run_update(const ClientInfo& client, const Request& request,
                            std::optional<std::span<const std::byte>> current,
                            std::span<const std::byte> arguments) {
        if (!client.same_code) {
            throw ReplyError(
                ReplyStatus::misuse,
                "mproc: an update function runs in the manager's server, which finds it by its "
                "code address; this process does not run the server's build at the same "
                "addresses. Use get and set from here, or update from a process of the "
                "server's own program");
        }
        const UpdateEntryFn entry = find_update_entry(request.header.entry);
        std::vector<std::byte> result;
        UpdateCall call;
        call.current = current.value_or(std::span<const std::byte>());
        call.present = current.has_value();
        call.arguments = arguments;
        call.function = request.header.function;
        call.result = &result;
        try {
            entry(call);
        } catch (...) {
            throw RemoteFailure{capture_current_exception()};
        }
        return Bytes(reinterpret_cast<const char*>(result.data()), result.size());
    }

    static void add_sequence(ReplyWriter& reply, std::uint64_t count, const auto& for_each_piece) {
        FrameAppender& appender = reply.appender();
        appender.begin_item();
        encode(appender.buffer(), count);
        for_each_piece([&appender](const Bytes& piece) {
            appender.buffer().insert(
                appender.buffer().end(), reinterpret_cast<const std::byte*>(piece.data()),
                reinterpret_cast<const std::byte*>(piece.data()) + piece.size());
        });
        appender.end_item();
    }

    // Sends a local client the dict's memfd and the server's life block, so that it works on
    // the dict directly from then on. The signature was checked as for any request.
    void attach_dict(const ClientInfo& client, Dict& dict, std::vector<UniqueFd>* descriptors,
                     ReplyWriter& reply) {
        if (!client.local || descriptors == nullptr) {
            throw ReplyError(ReplyStatus::misuse,
                             "mproc: a dict's shared memory is sent only over a local "
                             "connection");
        }
        descriptors->push_back(dict.shared->fd().duplicate());
        descriptors->push_back(life->fd().duplicate());
        reply.ok();
    }

    static void set_descriptor_count(std::vector<std::byte>& out, std::size_t frame_start,
                                     std::uint32_t count) {
        FrameHeader header;
        std::memcpy(&header, out.data() + frame_start, sizeof header);
        header.fd_count = count;
        std::memcpy(out.data() + frame_start, &header, sizeof header);
    }

    // A TCP client's dict request, run on the same shared memory that local clients use.
    static void dict_op(const ClientInfo& client, SharedDict& dict, const Request& request,
                        ReplyWriter& reply) {
        SharedDict::Access access(dict);
        switch (request.op()) {
            case ManagerOp::dict_set:
                access.set(request.item(0), request.item(1));
                reply.ok();
                return;
            case ManagerOp::dict_get: {
                const auto value = access.find(request.item(0));
                reply.ok();
                if (value) reply.add_bytes(*value);
                return;
            }
            case ManagerOp::dict_contains: {
                const bool present = access.find(request.item(0)).has_value();
                reply.ok();
                reply.add(present);
                return;
            }
            case ManagerOp::dict_erase: {
                const bool present = access.erase(request.item(0));
                reply.ok();
                reply.add(present);
                return;
            }
            case ManagerOp::dict_size:
                reply.ok();
                reply.add(access.size());
                return;
            case ManagerOp::dict_items:
            case ManagerOp::dict_keys:
            case ManagerOp::dict_values: {
                reply.ok();
                FrameAppender& appender = reply.appender();
                appender.begin_item();
                access.append_sequence(appender.buffer(), request.op() != ManagerOp::dict_values,
                                       request.op() != ManagerOp::dict_keys);
                appender.end_item();
                return;
            }
            case ManagerOp::dict_clear:
                access.clear();
                reply.ok();
                return;
            case ManagerOp::dict_update: {
                const auto key = request.item(0);
                const Bytes next = run_update(client, request, access.find(key), request.item(1));
                access.set(key, as_span(next));
                reply.ok();
                reply.add_bytes(as_span(next));
                return;
            }
            default:
                throw SerializationError("mproc: not a dict operation");
        }
    }

    static void list_op(List& list, const Request& request, ReplyWriter& reply) {
        auto checked_index = [&list](std::span<const std::byte> item) {
            const std::uint64_t index = read_u64(item);
            if (index >= list.items.size()) {
                throw ReplyError(ReplyStatus::out_of_range, "mproc: ListProxy index " +
                                                                std::to_string(index) +
                                                                " is out of range for a list of " +
                                                                std::to_string(list.items.size()));
            }
            return static_cast<std::size_t>(index);
        };
        switch (request.op()) {
            case ManagerOp::list_append:
                list.items.push_back(to_bytes(request.item(0)));
                reply.ok();
                return;
            case ManagerOp::list_at: {
                const std::size_t index = checked_index(request.item(0));
                reply.ok();
                reply.add_bytes(as_span(list.items[index]));
                return;
            }
            case ManagerOp::list_set: {
                const std::size_t index = checked_index(request.item(0));
                list.items[index] = to_bytes(request.item(1));
                reply.ok();
                return;
            }
            case ManagerOp::list_size:
                reply.ok();
                reply.add(static_cast<std::uint64_t>(list.items.size()));
                return;
            case ManagerOp::list_items:
                reply.ok();
                add_sequence(reply, list.items.size(), [&](const auto& append) {
                    for (const Bytes& item : list.items) append(item);
                });
                return;
            default:
                throw SerializationError("mproc: not a list operation");
        }
    }

    static void value_op(const ClientInfo& client, Value& value, const Request& request,
                         ReplyWriter& reply) {
        switch (request.op()) {
            case ManagerOp::value_get:
                reply.ok();
                reply.add_bytes(as_span(value.value));
                return;
            case ManagerOp::value_set:
                value.value = to_bytes(request.item(0));
                reply.ok();
                return;
            case ManagerOp::value_update: {
                Bytes next = run_update(client, request, as_span(value.value), request.item(0));
                reply.ok();
                reply.add_bytes(as_span(next));
                value.value = std::move(next);
                return;
            }
            default:
                throw SerializationError("mproc: not a value operation");
        }
    }

    // ------------------------------------------------------------------------- waiting

    void park(ClientId client, std::uint64_t id, std::deque<Parked>& waiters, Parked parked) {
        if (parked.deadline && (!earliest || *parked.deadline < *earliest)) {
            earliest = parked.deadline;
        }
        waiters.push_back(std::move(parked));
        parked_in[client] = id;
        waiting.insert(id);
    }

    void complete(const Parked& parked, std::vector<std::byte> response) {
        parked_in.erase(parked.client);
        completions.push_back({parked.client, std::move(response)});
    }

    void complete_ok(const Parked& parked, const Bytes* item) {
        std::vector<std::byte> response;
        ReplyWriter reply(response, parked.sequence);
        reply.ok();
        if (item != nullptr) reply.add_bytes(as_span(*item));
        reply.finish();
        complete(parked, std::move(response));
    }

    void complete_bool(const Parked& parked, bool value) {
        std::vector<std::byte> response;
        ReplyWriter reply(response, parked.sequence);
        reply.ok();
        reply.add(value);
        reply.finish();
        complete(parked, std::move(response));
    }

    void complete_error(const Parked& parked, ReplyStatus status, std::string_view message) {
        std::vector<std::byte> response;
        write_error_reply(response, parked.sequence, status, message);
        complete(parked, std::move(response));
    }

    static void answer_ok(std::vector<std::byte>& out, std::uint64_t sequence,
                          const Bytes* item = nullptr) {
        ReplyWriter reply(out, sequence);
        reply.ok();
        if (item != nullptr) reply.add_bytes(as_span(*item));
        reply.finish();
    }

    Outcome queue_op(const ClientInfo& client, std::uint64_t id, Queue& queue,
                     const Request& request, std::vector<std::byte>& out) {
        const std::uint64_t sequence = request.header.sequence;
        switch (request.op()) {
            case ManagerOp::queue_put: {
                const WireTimeout timeout = read_timeout(request.item(0));
                const auto item = request.item(1);
                if (queue.closed) {
                    throw ReplyError(ReplyStatus::closed, "mproc: put on a closed manager queue");
                }
                if (!queue.getters.empty()) {
                    // The queue is empty and someone waits: the item goes straight to them.
                    Parked getter = std::move(queue.getters.front());
                    queue.getters.pop_front();
                    const Bytes bytes = to_bytes(item);
                    complete_ok(getter, &bytes);
                } else if (queue.maxsize == 0 || queue.items.size() < queue.maxsize) {
                    queue.items.push_back(to_bytes(item));
                } else if (timeout == 0) {
                    throw ReplyError(ReplyStatus::full,
                                     "mproc: QueueProxy::put found the queue full until its "
                                     "timeout");
                } else {
                    park(client.id, id, queue.putters,
                         Parked{client.id, sequence, deadline_of(timeout), to_bytes(item)});
                    return Outcome::parked;
                }
                answer_ok(out, sequence);
                return Outcome::answered;
            }
            case ManagerOp::queue_get: {
                const WireTimeout timeout = read_timeout(request.item(0));
                if (!queue.items.empty()) {
                    const Bytes item = std::move(queue.items.front());
                    queue.items.pop_front();
                    if (!queue.putters.empty()) {
                        Parked putter = std::move(queue.putters.front());
                        queue.putters.pop_front();
                        queue.items.push_back(std::move(putter.item));
                        complete_ok(putter, nullptr);
                    }
                    answer_ok(out, sequence, &item);
                    return Outcome::answered;
                }
                if (queue.closed) {
                    throw ReplyError(ReplyStatus::closed,
                                     "mproc: get on a closed and empty manager queue");
                }
                if (timeout == 0) {
                    throw ReplyError(ReplyStatus::empty,
                                     "mproc: QueueProxy::get found the queue empty until its "
                                     "timeout");
                }
                park(client.id, id, queue.getters,
                     Parked{client.id, sequence, deadline_of(timeout), {}});
                return Outcome::parked;
            }
            case ManagerOp::queue_size: {
                ReplyWriter reply(out, sequence);
                reply.ok();
                reply.add(static_cast<std::uint64_t>(queue.items.size()));
                reply.add(queue.maxsize);
                reply.finish();
                return Outcome::answered;
            }
            case ManagerOp::queue_close: {
                queue.closed = true;
                for (const Parked& getter : queue.getters) {
                    complete_error(getter, ReplyStatus::closed,
                                   "mproc: the manager queue was closed while get waited");
                }
                for (const Parked& putter : queue.putters) {
                    complete_error(putter, ReplyStatus::closed,
                                   "mproc: the manager queue was closed while put waited");
                }
                queue.getters.clear();
                queue.putters.clear();
                answer_ok(out, sequence);
                return Outcome::answered;
            }
            default:
                throw SerializationError("mproc: not a queue operation");
        }
    }

    void give_lock(std::uint64_t id, Lock& lock, ClientId client) {
        lock.holder = client;
        held_locks[client].push_back(id);
    }

    void release_lock(std::uint64_t id, Lock& lock) {
        auto held = held_locks.find(lock.holder);
        if (held != held_locks.end()) {
            std::erase(held->second, id);
            if (held->second.empty()) held_locks.erase(held);
        }
        lock.holder = 0;
        if (!lock.waiters.empty()) {
            Parked next = std::move(lock.waiters.front());
            lock.waiters.pop_front();
            give_lock(id, lock, next.client);
            complete_bool(next, true);
        }
    }

    Outcome lock_op(const ClientInfo& client, std::uint64_t id, Lock& lock, const Request& request,
                    std::vector<std::byte>& out) {
        const std::uint64_t sequence = request.header.sequence;
        const std::size_t start = out.size();
        ReplyWriter reply(out, sequence);
        switch (request.op()) {
            case ManagerOp::lock_acquire: {
                const WireTimeout timeout = read_timeout(request.item(0));
                if (lock.holder == 0) {
                    give_lock(id, lock, client.id);
                    reply.ok();
                    reply.add(true);
                } else if (lock.holder == client.id && timeout < 0) {
                    throw ReplyError(ReplyStatus::misuse,
                                     "mproc: LockProxy::acquire by the thread that holds the "
                                     "lock would wait for itself for ever");
                } else if (timeout == 0) {
                    reply.ok();
                    reply.add(false);
                } else {
                    out.resize(start);
                    park(client.id, id, lock.waiters,
                         Parked{client.id, sequence, deadline_of(timeout), {}});
                    return Outcome::parked;
                }
                break;
            }
            case ManagerOp::lock_release:
                if (lock.holder != client.id) {
                    throw ReplyError(ReplyStatus::misuse,
                                     "mproc: LockProxy::release by a thread that does not hold "
                                     "the lock");
                }
                release_lock(id, lock);
                reply.ok();
                break;
            default:
                throw SerializationError("mproc: not a lock operation");
        }
        reply.finish();
        return Outcome::answered;
    }

    // Each parked request's list, for the containers that can hold one.
    template <class F>
    static void for_each_wait_list(Container& c, F&& f) {
        if (auto* queue = std::get_if<Queue>(&c.data)) {
            f(queue->getters, ReplyStatus::empty);
            f(queue->putters, ReplyStatus::full);
        } else if (auto* lock = std::get_if<Lock>(&c.data)) {
            f(lock->waiters, ReplyStatus::ok);
        }
    }

    void expire(StoreClock::time_point now) {
        if (!earliest || now < *earliest) return;
        earliest.reset();
        for (auto it = waiting.begin(); it != waiting.end();) {
            Container& c = *containers[*it - 1];
            bool any = false;
            for_each_wait_list(c, [&](std::deque<Parked>& waiters, ReplyStatus timeout_status) {
                for (auto p = waiters.begin(); p != waiters.end();) {
                    if (p->deadline && *p->deadline <= now) {
                        if (timeout_status == ReplyStatus::ok) {
                            complete_bool(*p, false);  // a lock not acquired in time
                        } else if (timeout_status == ReplyStatus::empty) {
                            complete_error(*p, timeout_status,
                                           "mproc: QueueProxy::get found the queue empty until "
                                           "its timeout");
                        } else {
                            complete_error(*p, timeout_status,
                                           "mproc: QueueProxy::put found the queue full until "
                                           "its timeout");
                        }
                        p = waiters.erase(p);
                        continue;
                    }
                    if (p->deadline && (!earliest || *p->deadline < *earliest)) {
                        earliest = p->deadline;
                    }
                    any = true;
                    ++p;
                }
            });
            it = any ? std::next(it) : waiting.erase(it);
        }
    }

    void forget_client(ClientId client) {
        if (auto parked = parked_in.find(client); parked != parked_in.end()) {
            Container& c = *containers[parked->second - 1];
            for_each_wait_list(c, [client](std::deque<Parked>& waiters, ReplyStatus) {
                std::erase_if(waiters, [client](const Parked& p) { return p.client == client; });
            });
            parked_in.erase(parked);
        }
        if (auto held = held_locks.find(client); held != held_locks.end()) {
            const std::vector<std::uint64_t> locks = held->second;
            for (const std::uint64_t id : locks) {
                release_lock(id, std::get<Lock>(containers[id - 1]->data));
            }
        }
    }
};

Store::Store() : impl_(std::make_unique<Impl>()) {}
Store::~Store() = default;

Store::Outcome Store::execute(const ClientInfo& client, std::span<const std::byte> frame,
                              std::vector<std::byte>& out, std::vector<UniqueFd>* descriptors) {
    FrameHeader header{};
    if (frame.size() >= sizeof header) std::memcpy(&header, frame.data(), sizeof header);
    const std::size_t start = out.size();
    const std::size_t descriptors_before = descriptors ? descriptors->size() : 0;
    auto fail = [&](ReplyStatus status, std::string_view message) {
        out.resize(start);
        if (descriptors)
            descriptors->erase(descriptors->begin() + descriptors_before, descriptors->end());
        write_error_reply(out, header.sequence, status, message);
        return Outcome::answered;
    };
    try {
        const Request request = decode_request(frame);
        return impl_->dispatch(client, request, out, descriptors);
    } catch (const ReplyError& e) {
        return fail(e.status, e.what());
    } catch (const RemoteFailure& failure) {
        out.resize(start);
        write_remote_error_reply(out, header.sequence, failure.error);
        return Outcome::answered;
    } catch (const std::bad_alloc&) {
        return fail(ReplyStatus::bad_request,
                    "mproc: the manager ran out of memory for this request");
    } catch (const std::exception& e) {
        return fail(ReplyStatus::bad_request, e.what());
    } catch (...) {
        return fail(ReplyStatus::bad_request, "mproc: the manager could not run this request");
    }
}

void Store::expire(StoreClock::time_point now) {
    impl_->expire(now);
}

std::optional<StoreClock::time_point> Store::next_deadline() const noexcept {
    return impl_->earliest;
}

void Store::forget_client(ClientId client) {
    impl_->forget_client(client);
}

std::vector<Store::Completion> Store::take_completions() {
    return std::exchange(impl_->completions, {});
}

std::size_t Store::container_count() const noexcept {
    return impl_->containers.size();
}

}  // namespace mproc::detail
