#include "mproc/detail/code_address.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {

// Entries register during static initialisation and are looked up once per chunk; a sorted
// vector keeps the lookup cheap and allocation-free.
struct EntryTable {
    std::mutex mutex;
    std::vector<std::uint64_t> addresses;
};

EntryTable& entry_table() {
    static EntryTable table;
    return table;
}

// Under fork every process shares the parent's layout, so an address is its own name.
std::uint64_t to_wire(const void* address) noexcept { return reinterpret_cast<std::uintptr_t>(address); }
const void* from_wire(std::uint64_t address) noexcept {
    return reinterpret_cast<const void*>(static_cast<std::uintptr_t>(address));
}

}  // namespace

std::uint64_t register_entry(EntryFn entry) {
    const std::uint64_t address = to_wire(reinterpret_cast<const void*>(entry));
    auto& table = entry_table();
    std::lock_guard lock(table.mutex);
    auto at = std::lower_bound(table.addresses.begin(), table.addresses.end(), address);
    if (at == table.addresses.end() || *at != address) table.addresses.insert(at, address);
    return address;
}

EntryFn find_entry(std::uint64_t address) {
    auto& table = entry_table();
    std::lock_guard lock(table.mutex);
    if (!std::binary_search(table.addresses.begin(), table.addresses.end(), address)) {
        throw SerializationError("mproc: a task names an entry that this program does not have; "
                                 "the frame is corrupt or comes from another build");
    }
    return reinterpret_cast<EntryFn>(const_cast<void*>(from_wire(address)));
}

std::uint64_t encode_function_address(const void* function) noexcept { return to_wire(function); }

const void* decode_function_address(std::uint64_t address) {
    const void* function = from_wire(address);
    Dl_info info{};
    if (function == nullptr || ::dladdr(function, &info) == 0) {
        throw SerializationError("mproc: a task names a function at an address outside the "
                                 "program's code; the frame is corrupt or comes from another build");
    }
    return function;
}

}  // namespace mproc::detail
