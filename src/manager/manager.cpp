#include "mproc/manager.hpp"

#include <unistd.h>

#include <array>

#include "manager/address.hpp"
#include "manager/auth.hpp"
#include "manager/client.hpp"
#include "manager/server.hpp"

namespace mproc {

// The server this Manager started, and the process that started it: a copy of the Manager's
// memory in a forked child must not stop its parent's server.
struct Manager::Server {
    detail::ServerProcess process;
    pid_t owner = 0;
};

namespace {

std::string random_authkey() {
    std::array<std::byte, 32> bytes;
    detail::fill_random(bytes);
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}
}  // namespace

Manager::Manager() : Manager(ManagerOptions{}) {}

Manager::Manager(ManagerOptions options) {
    std::string authkey = options.authkey.empty() ? random_authkey() : std::move(options.authkey);
    const std::string requested =
        options.address.empty() ? detail::private_manager_address() : options.address;
    const detail::ManagerAddress parsed = detail::parse_manager_address(requested);
    std::string bound;
    detail::UniqueFd listener = detail::listen_at(parsed, bound);
    const std::uint64_t incarnation = detail::random_incarnation();
    auto server = std::make_unique<Server>();
    server->owner = ::getpid();
    server->process = detail::start_manager_server(std::move(listener), parsed.is_unix(), bound,
                                                   authkey, incarnation);
    server_ = std::move(server);
    endpoint_ = detail::manager_endpoint(bound, authkey, incarnation);
}

Manager::Manager(std::shared_ptr<detail::ManagerEndpoint> endpoint, std::unique_ptr<Server> server)
    : endpoint_(std::move(endpoint)), server_(std::move(server)) {}

Manager Manager::connect(const std::string& address, const std::string& authkey) {
    return Manager(detail::connect_manager(address, authkey), nullptr);
}

Manager::~Manager() {
    release();
}

Manager::Manager(Manager&& other) noexcept = default;

Manager& Manager::operator=(Manager&& other) noexcept {
    if (this != &other) {
        release();
        endpoint_ = std::move(other.endpoint_);
        server_ = std::move(other.server_);
    }
    return *this;
}

const std::string& Manager::address() const noexcept {
    static const std::string none;
    return endpoint_ ? endpoint_->address : none;
}

const std::string& Manager::authkey() const noexcept {
    static const std::string none;
    return endpoint_ ? endpoint_->authkey : none;
}

int Manager::pid() const noexcept {
    return server_ ? server_->process.pid : 0;
}

void Manager::shutdown() {
    if (!server_) {
        throw StateError(
            "mproc: Manager::shutdown on a client (made by Manager::connect); only the "
            "Manager that started the server can stop it");
    }
    release();
}

std::uint64_t Manager::create(detail::ContainerKind kind, std::uint64_t signature,
                              std::string_view name, std::initializer_list<const char*> types,
                              std::uint64_t maxsize, std::span<const std::byte> init) {
    if (!endpoint_) throw StateError("mproc: a Manager that was moved from has no server");
    detail::CreateSpec spec;
    spec.kind = static_cast<std::uint8_t>(kind);
    spec.signature = signature;
    spec.name = std::string(name);
    spec.description = detail::describe_container(kind, types);
    spec.maxsize = maxsize;
    detail::ManagerCall request(*endpoint_, detail::ManagerOp::create, 0, 0);
    request.add(spec);
    if (kind == detail::ContainerKind::value) request.add_raw(init);
    return request.send().value<std::uint64_t>();
}

LockProxy Manager::lock(std::string_view name) {
    const std::uint64_t signature = detail::container_signature<>(detail::ContainerKind::lock);
    return LockProxy(endpoint_, create(detail::ContainerKind::lock, signature, name, {}));
}

void Manager::release() noexcept {
    // This thread's connection first, so that the server's end of it is closed too.
    if (endpoint_) detail::disconnect_endpoint(*endpoint_);
    if (!server_) return;
    if (server_->owner == ::getpid()) detail::stop_manager_server(server_->process);
    // A forked copy only lets go of its inherited descriptors.
    server_->process = detail::ServerProcess{};
}

}  // namespace mproc
