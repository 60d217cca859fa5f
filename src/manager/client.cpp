#include "manager/client.hpp"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "manager/auth.hpp"
#include "manager/server_life.hpp"
#include "mproc/detail/error_info.hpp"
#include "mproc/manager.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

using namespace std::chrono_literals;

// How long a connection may take to open and authenticate.
constexpr auto handshake_timeout = 30s;
// Buffers that grew past this for one large value are given back after the call.
constexpr std::size_t kept_buffer_bytes = std::size_t{1} << 20;
constexpr std::size_t read_block = 64 * 1024;

struct ClientRegistry {
    std::mutex mutex;
    std::map<std::tuple<std::string, std::string, std::uint64_t>, std::weak_ptr<ManagerEndpoint>>
        endpoints;
    std::unordered_set<ManagerChannel*> channels;
    std::uint64_t next_serial = 1;
};

// The address this process serves, in a manager's server process; read on every call, so
// without the registry's lock.
std::atomic<const std::string*> serving_address{nullptr};

ClientRegistry& registry();

}  // namespace

// The fork handlers: the registry's lock is held across fork(), so the child finds it in a
// consistent state; in the child every inherited connection is closed (they belong to the
// parent's threads) and the thread's channels reconnect on their next call.
struct ChannelForkHandlers {
    static void prepare() noexcept { registry().mutex.lock(); }
    static void parent() noexcept { registry().mutex.unlock(); }
    static void child() noexcept {
        auto& r = registry();
        for (ManagerChannel* channel : r.channels) {
            channel->socket_.reset();
            channel->busy = false;
        }
        r.mutex.unlock();
    }
};

namespace {

ClientRegistry& registry() {
    // Never destroyed: channels of threads that end late may still unregister.
    static ClientRegistry* instance = [] {
        auto* created = new ClientRegistry;
        ::pthread_atfork(&ChannelForkHandlers::prepare, &ChannelForkHandlers::parent,
                         &ChannelForkHandlers::child);
        return created;
    }();
    return *instance;
}

struct CachedChannel {
    std::uint64_t serial;
    std::weak_ptr<ManagerEndpoint> endpoint;
    std::unique_ptr<ManagerChannel> channel;
};

std::vector<CachedChannel>& thread_channels() {
    thread_local std::vector<CachedChannel> channels;
    return channels;
}

}  // namespace

std::mutex& client_registry_mutex() {
    return registry().mutex;
}

namespace {

ManagerChannel& channel_for(ManagerEndpoint& endpoint) {
    auto& cache = thread_channels();
    for (auto& cached : cache) {
        if (cached.serial != endpoint.serial) continue;
        if (!cached.channel->is_open()) cached.channel->open(endpoint);
        return *cached.channel;
    }
    // Connections to servers that no proxy refers to any more are closed here.
    std::erase_if(cache, [](const CachedChannel& cached) { return cached.endpoint.expired(); });
    auto channel = std::make_unique<ManagerChannel>(endpoint.address);
    channel->open(endpoint);
    cache.push_back({endpoint.serial, endpoint.weak_from_this(), std::move(channel)});
    return *cache.back().channel;
}

ManagerChannel& begin_call(ManagerEndpoint& endpoint) {
    const std::string* serving = serving_address.load(std::memory_order_relaxed);
    if (serving != nullptr && *serving == endpoint.address) {
        throw StateError(
            "mproc: a proxy was used inside its own manager's server (in an update "
            "function); the server would wait for itself. Pass values as the update's "
            "arguments instead");
    }
    ManagerChannel& channel = channel_for(endpoint);
    if (channel.busy) {
        throw StateError(
            "mproc: a manager call was made while this thread was in the middle of another "
            "to the same manager (from a value's save() or load()?)");
    }
    channel.busy = true;
    channel.out().clear();
    return channel;
}

std::string status_message(std::span<const std::byte> item) {
    return std::string(reinterpret_cast<const char*>(item.data()) + 1, item.size() - 1);
}

[[noreturn]] void throw_reply_error(ReplyStatus status, std::span<const std::byte> item) {
    switch (status) {
        case ReplyStatus::type_mismatch:
            throw ContainerTypeError(status_message(item));
        case ReplyStatus::out_of_range:
            throw std::out_of_range(status_message(item));
        case ReplyStatus::empty:
            throw Empty(status_message(item));
        case ReplyStatus::full:
            throw Full(status_message(item));
        case ReplyStatus::closed:
        case ReplyStatus::misuse:
            throw StateError(status_message(item));
        case ReplyStatus::remote_error: {
            ErrorInfo info;
            decode(item.subspan(1), info);
            throw RemoteError(std::move(info.type_name), std::move(info.message),
                              std::move(info.traceback));
        }
        case ReplyStatus::bad_request:
            throw SerializationError(status_message(item));
        case ReplyStatus::ok:
            break;
    }
    throw SerializationError("mproc: a manager reply has the unknown status " +
                             std::to_string(static_cast<int>(status)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

ManagerChannel::ManagerChannel(std::string address) : address_(std::move(address)) {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    r.channels.insert(this);
}

ManagerChannel::~ManagerChannel() {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    r.channels.erase(this);
    socket_.reset();
}

void ManagerChannel::close() noexcept {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    socket_.reset();
}

void ManagerChannel::fail(const std::string& why) {
    close();
    throw Error("mproc: the connection to the manager at " + address_ + " failed: " + why);
}

std::uint64_t ManagerChannel::open(const ManagerEndpoint& endpoint) {
    const Deadline deadline = Deadline::after(handshake_timeout);
    UniqueFd socket = connect_to(endpoint.parsed, endpoint.address, deadline);
    Hello hello{};
    if (!read_exact(socket.get(), &hello, sizeof hello, deadline)) {
        throw Error("mproc: the manager at " + address_ +
                    " closed the connection before the handshake (it has ended, or it "
                    "refuses connections from this user)");
    }
    if (hello.magic != handshake_magic || hello.version != handshake_version) {
        throw Error("mproc: what listens at " + address_ +
                    " is not an mproc manager of this protocol version");
    }
    Answer answer{client_proof(endpoint.authkey, hello.challenge), random_challenge(),
                  code_identity()};
    Verdict verdict{};
    if (!write_all(socket.get(), &answer, sizeof answer) ||
        !read_exact(socket.get(), &verdict, sizeof verdict, deadline)) {
        throw Error("mproc: the manager at " + address_ +
                    " closed the connection during the "
                    "handshake");
    }
    if (verdict.accepted != 1) {
        throw AuthenticationError("mproc: the manager at " + address_ +
                                  " refused the connection: the authkey is wrong");
    }
    const Sha256Digest expected =
        server_proof(endpoint.authkey, answer.challenge, hello.challenge, verdict.incarnation);
    if (!digests_equal(verdict.proof, expected)) {
        throw AuthenticationError("mproc: the server at " + address_ +
                                  " did not prove that it knows the authkey");
    }
    if (endpoint.incarnation != 0 && verdict.incarnation != endpoint.incarnation) {
        throw Error("mproc: the manager now at " + address_ +
                    " is not the one this proxy's container lived in; that manager has ended");
    }
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    socket_ = std::move(socket);
    return verdict.incarnation;
}

void ManagerChannel::receive_at_least(std::size_t bytes) {
    while (in_end_ < bytes) {
        // The buffer grows with what arrives (doubling), never at once to what a header
        // claims: a corrupt length costs no more memory than the bytes that really came.
        if (in_end_ == in_.size()) {
            in_.resize(std::max(read_block, std::min(bytes, 2 * in_.size())));
        }
        ssize_t got = 0;
        try {
            // A response's descriptors (a dict's memory) come with its first bytes.
            got = receive_packet(socket_.get(), in_.data() + in_end_, in_.size() - in_end_, in_fds_,
                                 true);
        } catch (const std::exception& e) {
            fail(e.what());
        }
        if (got <= 0) fail("the manager closed the connection (it has ended)");
        in_end_ += static_cast<std::size_t>(got);
    }
}

std::span<const std::byte> ManagerChannel::round_trip() {
    if (!write_all(socket_.get(), out_.data(), out_.size())) {
        fail("the manager closed the connection (it has ended)");
    }
    in_end_ = 0;
    in_fds_.clear();
    if (in_.size() > kept_buffer_bytes) in_ = {};
    receive_at_least(sizeof(FrameHeader));
    FrameHeader header;
    std::memcpy(&header, in_.data(), sizeof header);
    try {
        check_header(header);
    } catch (const SerializationError&) {
        close();
        throw;
    }
    if (header.kind != static_cast<std::uint16_t>(FrameKind::response) ||
        header.sequence != sequence_) {
        close();
        throw SerializationError("mproc: the manager at " + address_ +
                                 " sent a frame that is not the response to the request");
    }
    const std::size_t whole = sizeof header + header.payload_bytes;
    receive_at_least(whole);
    if (in_end_ != whole) {
        close();
        throw SerializationError("mproc: the manager at " + address_ +
                                 " sent more than the response to the request");
    }
    if (in_fds_.size() != header.fd_count) {
        close();
        throw SerializationError("mproc: the manager at " + address_ +
                                 " sent a response whose descriptors do not match its header");
    }
    return std::span<const std::byte>(in_).first(whole);
}

// ---------------------------------------------------------------------------------------------

std::shared_ptr<ManagerEndpoint> manager_endpoint(const std::string& address,
                                                  const std::string& authkey,
                                                  std::uint64_t incarnation) {
    ManagerAddress parsed = parse_manager_address(address);
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    auto& slot = r.endpoints[{address, authkey, incarnation}];
    if (auto existing = slot.lock()) return existing;
    auto endpoint = std::make_shared<ManagerEndpoint>(address, authkey, incarnation,
                                                      std::move(parsed), r.next_serial++);
    slot = endpoint;
    std::erase_if(r.endpoints, [](const auto& entry) { return entry.second.expired(); });
    return endpoint;
}

const std::string& endpoint_address(const ManagerEndpoint& endpoint) noexcept {
    return endpoint.address;
}

const std::string& endpoint_authkey(const ManagerEndpoint& endpoint) noexcept {
    return endpoint.authkey;
}

std::uint64_t endpoint_incarnation(const ManagerEndpoint& endpoint) noexcept {
    return endpoint.incarnation;
}

std::shared_ptr<ManagerEndpoint> connect_manager(const std::string& address,
                                                 const std::string& authkey) {
    // A probe learns the server's incarnation; its connection then serves the endpoint.
    const ManagerEndpoint probe(address, authkey, 0, parse_manager_address(address), 0);
    auto channel = std::make_unique<ManagerChannel>(address);
    const std::uint64_t incarnation = channel->open(probe);
    auto endpoint = manager_endpoint(address, authkey, incarnation);
    auto& cache = thread_channels();
    std::erase_if(cache, [&](const CachedChannel& cached) {
        return cached.serial == endpoint->serial || cached.endpoint.expired();
    });
    cache.push_back({endpoint->serial, endpoint, std::move(channel)});
    return endpoint;
}

void disconnect_endpoint(const ManagerEndpoint& endpoint) noexcept {
    std::erase_if(thread_channels(),
                  [&](const CachedChannel& cached) { return cached.serial == endpoint.serial; });
}

void mark_serving(const std::string& address) {
    // Kept for the life of the server process.
    serving_address.store(new std::string(address), std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------

ManagerCall::ManagerCall(ManagerEndpoint& endpoint, ManagerOp op, std::uint64_t container,
                         std::uint64_t signature, std::uint64_t entry, std::uint64_t function)
    : channel_(begin_call(endpoint)),
      appender_(channel_.out(), FrameKind::request, channel_.next_sequence(), entry, function) {
    const RequestHead head{static_cast<std::uint32_t>(op), 0, container, signature};
    appender_.add_bytes(&head, sizeof head);
}

ManagerCall::~ManagerCall() {
    channel_.busy = false;
    if (channel_.out().capacity() > kept_buffer_bytes) channel_.out() = {};
}

std::vector<UniqueFd> ManagerCall::take_descriptors() noexcept {
    return channel_.take_descriptors();
}

ManagerReply ManagerCall::send() {
    appender_.finish();
    const std::span<const std::byte> frame = channel_.round_trip();
    const std::span<const std::byte> payload = frame.subspan(sizeof(FrameHeader));
    ItemReader items(payload);
    const std::span<const std::byte> status_item = items.next();
    if (status_item.empty()) throw SerializationError("mproc: a manager reply without a status");
    const auto status = static_cast<ReplyStatus>(status_item[0]);
    if (status != ReplyStatus::ok) throw_reply_error(status, status_item);
    return ManagerReply(
        payload.subspan(item_prefix_bytes(status_item.size()) + status_item.size()));
}

}  // namespace mproc::detail

namespace mproc {

namespace detail {

const std::string& ProxyBase::address() const {
    return endpoint().address;
}

ManagerEndpoint& ProxyBase::endpoint() const {
    if (!endpoint_) {
        throw StateError(
            "mproc: this proxy refers to no container (it was made by default or moved "
            "from); get one from a Manager");
    }
    return *endpoint_;
}

}  // namespace detail

bool LockProxy::acquire_for(std::optional<std::chrono::nanoseconds> timeout) {
    detail::ManagerCall request(endpoint(), detail::ManagerOp::lock_acquire, id(),
                                detail::container_signature<>(detail::ContainerKind::lock));
    request.add_timeout(timeout);
    return request.send().value<bool>();
}

void LockProxy::release() {
    detail::ManagerCall request(endpoint(), detail::ManagerOp::lock_release, id(),
                                detail::container_signature<>(detail::ContainerKind::lock));
    request.send();
}

}  // namespace mproc
