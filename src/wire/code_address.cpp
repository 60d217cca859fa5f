#include "mproc/detail/code_address.hpp"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {

// A code address travels as (module tag, offset in that module): the tag in the top bits is a
// hash of the module's name (empty for the program itself), so the same function has the same
// wire address in every process that runs the same program, wherever the loader put it.
constexpr int offset_bits = 44;
constexpr std::uint64_t offset_mask = (std::uint64_t{1} << offset_bits) - 1;

std::uint64_t module_tag(std::string_view name) noexcept {
    std::uint64_t hash = 0xcbf29ce484222325;  // FNV-1a
    for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3;
    return (hash ^ (hash >> offset_bits)) & ((std::uint64_t{1} << (64 - offset_bits)) - 1);
}

struct Module {
    std::uint64_t tag;
    std::uintptr_t bias;  // the loader's offset for this module
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> segments;  // loaded [begin, end)
};

// The loaded modules, as an immutable snapshot that readers use without a lock: a worker
// forked while another thread was rebuilding the table must not inherit a held lock. A rebuild
// (after a dlopen) publishes a new snapshot and keeps the old one alive, since a reader may
// still hold it.
class ModuleTable {
  public:
    const std::vector<Module>& current() {
        if (auto* table = snapshot_.load(std::memory_order_acquire)) return *table;
        return rebuild();
    }
    const std::vector<Module>& rebuild() {
        std::lock_guard lock(mutex_);
        auto table = std::make_unique<std::vector<Module>>();
        dl_iterate_phdr(
            [](dl_phdr_info* info, std::size_t, void* out) {
                Module module{
                    module_tag(info->dlpi_name ? info->dlpi_name : ""), info->dlpi_addr, {}};
                for (int i = 0; i < info->dlpi_phnum; ++i) {
                    const auto& header = info->dlpi_phdr[i];
                    if (header.p_type != PT_LOAD) continue;
                    const std::uintptr_t begin = info->dlpi_addr + header.p_vaddr;
                    module.segments.emplace_back(begin, begin + header.p_memsz);
                }
                static_cast<std::vector<Module>*>(out)->push_back(std::move(module));
                return 0;
            },
            table.get());
        snapshot_.store(table.get(), std::memory_order_release);
        retired_.push_back(std::move(table));
        return *retired_.back();
    }

  private:
    std::mutex mutex_;
    std::atomic<const std::vector<Module>*> snapshot_{nullptr};
    std::vector<std::unique_ptr<std::vector<Module>>> retired_;
};

ModuleTable& modules() {
    static ModuleTable table;
    return table;
}

const Module* module_containing(const std::vector<Module>& table, std::uintptr_t address) {
    for (const auto& module : table) {
        for (const auto& [begin, end] : module.segments) {
            if (address >= begin && address < end) return &module;
        }
    }
    return nullptr;
}

const Module* module_tagged(const std::vector<Module>& table, std::uint64_t tag) {
    for (const auto& module : table) {
        if (module.tag == tag) return &module;
    }
    return nullptr;
}

std::uint64_t to_wire(const void* code) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(code);
    const Module* module = module_containing(modules().current(), address);
    if (module == nullptr) module = module_containing(modules().rebuild(), address);
    if (module == nullptr) return 0;  // not code of any module: decodes to an error
    return (module->tag << offset_bits) | ((address - module->bias) & offset_mask);
}

const void* from_wire(std::uint64_t address) noexcept {
    const std::uint64_t tag = address >> offset_bits;
    const Module* module = module_tagged(modules().current(), tag);
    if (module == nullptr) module = module_tagged(modules().rebuild(), tag);
    if (module == nullptr) return nullptr;
    return reinterpret_cast<const void*>(module->bias + (address & offset_mask));
}

// Entries register during static initialisation (and when a library is loaded) and are looked
// up once per chunk: a sorted snapshot, read without a lock for the same reason as above.
class EntryTable {
  public:
    void add(std::uint64_t address) {
        std::lock_guard lock(mutex_);
        const auto* old = snapshot_.load(std::memory_order_acquire);
        auto table = old ? std::make_unique<std::vector<std::uint64_t>>(*old)
                         : std::make_unique<std::vector<std::uint64_t>>();
        auto at = std::lower_bound(table->begin(), table->end(), address);
        if (at != table->end() && *at == address) return;
        table->insert(at, address);
        snapshot_.store(table.get(), std::memory_order_release);
        retired_.push_back(std::move(table));
    }
    bool contains(std::uint64_t address) const {
        const auto* table = snapshot_.load(std::memory_order_acquire);
        return table && std::binary_search(table->begin(), table->end(), address);
    }

  private:
    std::mutex mutex_;
    std::atomic<const std::vector<std::uint64_t>*> snapshot_{nullptr};
    std::vector<std::unique_ptr<std::vector<std::uint64_t>>> retired_;
};

EntryTable& entry_table() {
    static EntryTable table;
    return table;
}

}  // namespace

std::uint64_t register_entry(EntryFn entry) {
    const std::uint64_t address = to_wire(reinterpret_cast<const void*>(entry));
    entry_table().add(address);
    return address;
}

EntryFn find_entry(std::uint64_t address) {
    const void* entry = entry_table().contains(address) ? from_wire(address) : nullptr;
    if (entry == nullptr) {
        throw SerializationError(
            "mproc: a task names an entry that this program does not have; "
            "the frame is corrupt or comes from another build");
    }
    return reinterpret_cast<EntryFn>(const_cast<void*>(entry));
}

std::uint64_t encode_function_address(const void* function) noexcept {
    return to_wire(function);
}

const void* decode_function_address(std::uint64_t address) {
    // Every frame of a map names the same function, and dladdr costs more than a chunk of tiny
    // tasks: the address checked last is remembered. (A module unloaded since is the user's
    // own dlclose of code they still send tasks to.)
    thread_local std::uint64_t checked_address = 0;
    thread_local const void* checked_function = nullptr;
    if (address == checked_address && checked_function != nullptr) return checked_function;
    const void* function = from_wire(address);
    Dl_info info{};
    if (function == nullptr || ::dladdr(function, &info) == 0) {
        throw SerializationError(
            "mproc: a task names a function at an address outside the "
            "program's code; the frame is corrupt or comes from another build");
    }
    checked_address = address;
    checked_function = function;
    return function;
}

}  // namespace mproc::detail
