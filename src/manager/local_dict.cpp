// A local client's side of a shared dict (mproc/detail/local_dict.hpp): the per-process cache
// of mapped dicts, the request that fetches one, and the operations, each under the dict's
// lock (shared_dict.hpp).

#include "mproc/detail/local_dict.hpp"

#include <mutex>

#include "manager/client.hpp"
#include "manager/server_life.hpp"
#include "manager/shared_dict.hpp"
#include "mproc/errors.hpp"
#include "worker/exception_capture.hpp"

namespace mproc::detail {

namespace {

// Buffers that grew past this for one large value are not kept for the next operation.
constexpr std::size_t kept_scratch_bytes = std::size_t{1} << 20;

LocalDict* attach(ManagerEndpoint& endpoint, std::uint64_t id, std::uint64_t signature) {
    std::vector<UniqueFd> descriptors;
    {
        ManagerCall request(endpoint, ManagerOp::dict_attach, id, signature);
        request.send();
        descriptors = request.take_descriptors();
    }
    if (descriptors.size() != 2) {
        throw SerializationError("mproc: the manager answered a dict's attach without its memory");
    }
    auto dict = SharedDict::adopt(std::move(descriptors[0]), signature);
    auto life = ServerLife::watch(std::move(descriptors[1]));
    std::lock_guard lock(client_registry_mutex());
    // One life block per server is enough; the one that came with a later dict is dropped.
    if (!endpoint.server_life) endpoint.server_life = std::move(life);
    auto& slot = endpoint.local_dicts[id];
    // Another thread may have attached it meanwhile; the server checked the signature, and a
    // container's never changes, so either serves.
    if (!slot) {
        slot = std::make_unique<LocalDict>(std::move(dict), endpoint.server_life, signature);
    }
    return slot.get();
}

}  // namespace

LocalDict* local_dict(ManagerEndpoint& endpoint, std::uint64_t id, std::uint64_t signature) {
    if (!endpoint.parsed.is_unix()) return nullptr;
    // The dict this thread used last: a dict is usually used many times in a row. Endpoint
    // serials are never reused in a process, so a remembered dict of an endpoint that has
    // gone is never matched again.
    struct LastUsed {
        std::uint64_t serial = 0;
        std::uint64_t id = 0;
        std::uint64_t signature = 0;
        LocalDict* dict = nullptr;
    };
    thread_local LastUsed last;
    if (last.serial == endpoint.serial && last.id == id && last.signature == signature) {
        return last.dict;
    }
    LocalDict* found = nullptr;
    {
        std::lock_guard lock(client_registry_mutex());
        auto cached = endpoint.local_dicts.find(id);
        if (cached != endpoint.local_dicts.end() && cached->second->signature() == signature) {
            found = cached->second.get();
        }
    }
    // Not mapped yet, or asked for with other types: the server answers (ContainerTypeError
    // for the latter).
    if (found == nullptr) found = attach(endpoint, id, signature);
    last = LastUsed{endpoint.serial, id, signature, found};
    return found;
}

// ---------------------------------------------------------------------------------------------

LocalDict::LocalDict(std::shared_ptr<SharedDict> dict, std::shared_ptr<ServerLife> life,
                     std::uint64_t signature) noexcept
    : dict_(std::move(dict)), life_(std::move(life)), signature_(signature) {}

LocalDict::~LocalDict() = default;

void LocalDict::require_server() {
    if (!life_->server_running()) {
        throw Error(
            "mproc: the manager that held this dict has ended; its proxies can no longer be "
            "used");
    }
}

void LocalDict::set(std::span<const std::byte> key, std::span<const std::byte> value) {
    require_server();
    SharedDict::Access access(*dict_);
    access.set(key, value);
}

bool LocalDict::get(std::span<const std::byte> key, std::vector<std::byte>& out) {
    require_server();
    SharedDict::Access access(*dict_);
    const auto value = access.find(key);
    if (!value) return false;
    out.insert(out.end(), value->begin(), value->end());
    return true;
}

bool LocalDict::contains(std::span<const std::byte> key) {
    require_server();
    SharedDict::Access access(*dict_);
    return access.find(key).has_value();
}

bool LocalDict::erase(std::span<const std::byte> key) {
    require_server();
    SharedDict::Access access(*dict_);
    return access.erase(key);
}

std::uint64_t LocalDict::size() {
    require_server();
    SharedDict::Access access(*dict_);
    return access.size();
}

void LocalDict::clear() {
    require_server();
    SharedDict::Access access(*dict_);
    access.clear();
}

void LocalDict::sequence(bool keys, bool values, std::vector<std::byte>& out) {
    require_server();
    SharedDict::Access access(*dict_);
    access.append_sequence(out, keys, values);
}

void LocalDict::update(std::span<const std::byte> key, UpdateEntryFn entry, std::uint64_t function,
                       std::span<const std::byte> arguments, std::vector<std::byte>& result) {
    require_server();
    SharedDict::Access access(*dict_);
    const auto current = access.find(key);
    const std::size_t start = result.size();
    UpdateCall call;
    call.current = current.value_or(std::span<const std::byte>());
    call.present = current.has_value();
    call.arguments = arguments;
    call.function = function;
    call.result = &result;
    try {
        entry(call);
    } catch (...) {
        // As from the server, so that an update fails alike wherever it ran.
        ErrorInfo error = capture_current_exception();
        throw RemoteError(std::move(error.type_name), std::move(error.message),
                          std::move(error.traceback));
    }
    access.set(key, std::span<const std::byte>(result).subspan(start));
}

// ---------------------------------------------------------------------------------------------

namespace {
thread_local std::unique_ptr<std::vector<std::byte>> spare_scratch;
}  // namespace

ScratchBytes::ScratchBytes()
    : bytes_(spare_scratch ? std::move(spare_scratch)
                           : std::make_unique<std::vector<std::byte>>()) {}

ScratchBytes::~ScratchBytes() {
    if (spare_scratch || bytes_->capacity() > kept_scratch_bytes) return;
    bytes_->clear();
    spare_scratch = std::move(bytes_);
}

}  // namespace mproc::detail
