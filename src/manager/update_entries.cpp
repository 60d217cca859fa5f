// The registry of update entries (run_update<F, V, Args, ...>), which a manager's server
// looks up by the wire address an update request names. Like the pool's entry table, it
// refuses any address that no entry registered, so a request never jumps into other code.

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "mproc/detail/code_address.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {

struct UpdateEntryTable {
    std::mutex mutex;
    std::vector<std::uint64_t> addresses;  // sorted
};

UpdateEntryTable& table() {
    // Held across fork() so that the server, a fork, never inherits it locked.
    static UpdateEntryTable* instance = [] {
        auto* created = new UpdateEntryTable;
        ::pthread_atfork([] { table().mutex.lock(); }, [] { table().mutex.unlock(); },
                         [] { table().mutex.unlock(); });
        return created;
    }();
    return *instance;
}

}  // namespace

std::uint64_t register_update_entry(UpdateEntryFn entry) {
    const std::uint64_t address = encode_function_address(reinterpret_cast<const void*>(entry));
    auto& t = table();
    std::lock_guard lock(t.mutex);
    auto at = std::lower_bound(t.addresses.begin(), t.addresses.end(), address);
    if (at == t.addresses.end() || *at != address) t.addresses.insert(at, address);
    return address;
}

UpdateEntryFn find_update_entry(std::uint64_t address) {
    {
        auto& t = table();
        std::lock_guard lock(t.mutex);
        if (address == 0 || !std::binary_search(t.addresses.begin(), t.addresses.end(), address)) {
            throw SerializationError(
                "mproc: an update names an entry that this program does not have; the request "
                "is corrupt or comes from another build");
        }
    }
    return reinterpret_cast<UpdateEntryFn>(const_cast<void*>(decode_function_address(address)));
}

}  // namespace mproc::detail
