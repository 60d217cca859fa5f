#include "manager/shared_dict.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "mproc/detail/manager_protocol.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"
#include "os/robust_mutex.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t dict_magic = 0x6d70726f63446963;  // "mprocDic"
constexpr std::uint64_t min_capacity = 8;
constexpr std::uint64_t min_heap_bytes = 4096;

// Index slot values; entry i is i + first_entry.
constexpr std::uint32_t empty_slot = 0;
constexpr std::uint32_t erased_slot = 1;
constexpr std::uint32_t first_entry = 2;

// The first page of the memfd, mapped on its own so that it never moves: the robust mutex's
// address is on its holder's robust list, which a mremap of the data would make stale.
struct DictHeader {
    std::uint64_t magic;
    std::uint64_t signature;
    pthread_mutex_t mutex;
    std::uint64_t file_bytes;  // the memfd's length, as the last holder grew it
    std::uint64_t block;       // file offset of the current Block; switched with one store
    // Set while a repair is due: the robust mutex reports a dead holder only once, so a repair
    // that fails (no memory to map the file) must leave word for the next holder.
    std::uint64_t needs_repair;
};

// A table: this head, the hash index (u32 slots), the entry list (EntryRef, in insertion
// order) and the heap of entries, in one page-aligned stretch of the memfd. A rebuild writes a
// new block elsewhere in the file and switches `DictHeader::block` to it.
struct Block {
    std::uint64_t at;        // file offset of this block
    std::uint64_t bytes;     // its length, whole pages
    std::uint64_t slots;     // index slots, a power of two
    std::uint64_t capacity;  // entry refs
    std::uint64_t used;      // entry refs appended, live or erased: an insert's last store
    std::uint64_t live;      // entry refs with an offset; repair recounts it
    std::uint64_t index_at;
    std::uint64_t entries_at;
    std::uint64_t heap_top;
    std::uint64_t heap_end;
};

struct EntryRef {
    std::uint64_t hash;
    std::uint64_t offset;  // file offset of the entry's bytes; 0 once erased
};

// In the heap: this head, the key bytes, the value bytes, padding to 8.
struct EntryHead {
    std::uint64_t key_bytes;
    std::uint64_t value_bytes;
};

std::uint64_t page_bytes() noexcept {
    static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return page;
}

constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t to) noexcept {
    return (n + to - 1) / to * to;
}

// FNV-1a, then a 64-bit finaliser so that the low bits, which pick the slot, depend on every
// byte. Fixed here rather than std::hash, which may differ between the builds that share a
// dict.
std::uint64_t hash_key(std::span<const std::byte> key) noexcept {
    std::uint64_t h = fnv1a(0xcbf29ce484222325, key.data(), key.size());
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccd;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53;
    h ^= h >> 33;
    return h;
}

std::uint64_t entry_bytes(std::uint64_t key_bytes, std::uint64_t value_bytes) noexcept {
    return round_up(sizeof(EntryHead) + key_bytes + value_bytes, 8);
}

// The store that makes a change visible: the compiler may not move the writes before it past
// it, so a process killed at any point has either done it, with everything it publishes
// written, or not.
void publish(std::uint64_t& field, std::uint64_t value) noexcept {
    std::atomic_ref<std::uint64_t>(field).store(value, std::memory_order_release);
}
void publish(std::uint32_t& field, std::uint32_t value) noexcept {
    std::atomic_ref<std::uint32_t>(field).store(value, std::memory_order_release);
}

// Held from a remap until its new address is stored, and across fork(): a child forked by
// another thread in between would inherit the moved mapping with the old address, and could
// never follow the dict's growth again.
std::mutex& remap_mutex() {
    static std::mutex* instance = [] {
        auto* created = new std::mutex;
        ::pthread_atfork([] { remap_mutex().lock(); }, [] { remap_mutex().unlock(); },
                         [] { remap_mutex().unlock(); });
        return created;
    }();
    return *instance;
}

// Every offset and length that the table reads from the shared memory is checked against the
// mapping before use: a process that wrote into it other than through this code (a bug, a
// stray pointer) must make the others fail, not fault or loop forever.
[[noreturn]] void corrupt() {
    throw SerializationError(
        "mproc: a manager dict's shared memory is corrupt (a process wrote into it other than "
        "through the dict); the dict cannot be used any more");
}

}  // namespace

struct SharedDict::Impl {
    UniqueFd fd;
    DictHeader* header = nullptr;
    std::byte* data = nullptr;  // the whole memfd
    std::uint64_t mapped = 0;

    ~Impl() {
        if (data != nullptr) ::munmap(data, mapped);
        if (header != nullptr) ::munmap(header, page_bytes());
    }

    // ----------------------------------------------------------------------- addressing

    Block& block() const noexcept { return *reinterpret_cast<Block*>(data + header->block); }
    std::uint32_t* index(const Block& b) const noexcept {
        return reinterpret_cast<std::uint32_t*>(data + b.index_at);
    }
    EntryRef* entries(const Block& b) const noexcept {
        return reinterpret_cast<EntryRef*>(data + b.entries_at);
    }
    const EntryHead& entry(std::uint64_t offset) const noexcept {
        return *reinterpret_cast<const EntryHead*>(data + offset);
    }
    std::span<const std::byte> key_of(std::uint64_t offset) const noexcept {
        return {data + offset + sizeof(EntryHead), entry(offset).key_bytes};
    }
    std::span<const std::byte> value_of(std::uint64_t offset) const noexcept {
        const EntryHead& head = entry(offset);
        return {data + offset + sizeof(EntryHead) + head.key_bytes, head.value_bytes};
    }
    std::uint64_t bytes_of(std::uint64_t offset) const noexcept {
        return entry_bytes(entry(offset).key_bytes, entry(offset).value_bytes);
    }
    static std::uint64_t heap_begin(const Block& b) noexcept {
        return b.entries_at + b.capacity * sizeof(EntryRef);
    }

    // The current block's head and the regions it names lie in the mapping, in order and
    // aligned, so that the table code may follow them without further checks.
    void check_block() const {
        const std::uint64_t at = header->block;
        if (at < page_bytes() || at % 8 != 0 || at > mapped || mapped - at < sizeof(Block)) {
            corrupt();
        }
        const Block& b = block();
        if (b.at != at || b.bytes > mapped - at) corrupt();
        const std::uint64_t end = at + b.bytes;
        if (!std::has_single_bit(b.slots) || b.index_at < at + sizeof(Block) ||
            b.index_at % 8 != 0 || b.index_at > end || (end - b.index_at) / 4 < b.slots) {
            corrupt();
        }
        if (b.entries_at < b.index_at + b.slots * 4 || b.entries_at % 8 != 0 ||
            b.entries_at > end || (end - b.entries_at) / sizeof(EntryRef) < b.capacity ||
            b.capacity >= b.slots) {
            corrupt();
        }
        if (b.heap_top < heap_begin(b) || b.heap_top % 8 != 0 || b.heap_top > b.heap_end ||
            b.heap_end > end || b.used > b.capacity || b.live > b.used) {
            corrupt();
        }
    }

    // An entry of the checked block b: whole below the heap's top, where every published
    // entry is.
    void check_entry(const Block& b, std::uint64_t offset) const {
        if (offset < heap_begin(b) || offset % 8 != 0 || offset > b.heap_top ||
            b.heap_top - offset < sizeof(EntryHead)) {
            corrupt();
        }
        const EntryHead& head = entry(offset);
        const std::uint64_t room = b.heap_top - offset - sizeof(EntryHead);
        if (head.key_bytes > room || head.value_bytes > room - head.key_bytes) corrupt();
    }

    // ----------------------------------------------------------------------- the file

    // Maps what another process grew since this one last looked.
    void follow_growth() {
        const std::uint64_t length = header->file_bytes;
        if (length == mapped) return;
        // A mapping past the file's end would fault (SIGBUS) where a block said to lie.
        struct stat status {};
        if (::fstat(fd.get(), &status) != 0) throw_system_error("sizing a manager dict");
        if (length < mapped || length > static_cast<std::uint64_t>(status.st_size)) corrupt();
        std::lock_guard remapping(remap_mutex());
        void* moved = data == nullptr
                          ? ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0)
                          : ::mremap(data, mapped, length, MREMAP_MAYMOVE);
        if (moved == MAP_FAILED) throw_system_error("mapping a manager dict");
        data = static_cast<std::byte*>(moved);
        mapped = length;
    }

    void grow_file(std::uint64_t length) {
        if (length <= header->file_bytes) return;
        while (::ftruncate(fd.get(), static_cast<off_t>(length)) != 0) {
            if (errno != EINTR) {
                throw_system_error("growing a manager dict to " + std::to_string(length) +
                                   " bytes");
            }
        }
        header->file_bytes = length;
        follow_growth();
    }

    // Gives the pages of a stretch that no block uses back to the kernel. Best effort: a
    // failure only keeps the memory longer.
    void release(std::uint64_t at, std::uint64_t bytes) noexcept {
        if (bytes == 0) return;
        ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(at),
                    static_cast<off_t>(bytes));
    }

    // ----------------------------------------------------------------------- the lock

    void lock() {
        const LockOutcome outcome = lock_robust(header->mutex);
        try {
            if (outcome == LockOutcome::acquired_from_dead_owner) header->needs_repair = 1;
            if (header->needs_repair != 0) {
                repair();
                header->needs_repair = 0;
            }
            follow_growth();
            check_block();
        } catch (...) {
            unlock_robust(header->mutex);
            throw;
        }
    }

    // After a holder died: every published entry is whole, but the index and the live count
    // may lag behind the entry list, and a rebuild may have left a half-written block or an
    // old one unreleased. Rebuilds the index from the list, in place, and releases every page
    // outside the current block. Running it again (its own holder killed) does no harm.
    void repair() {
        struct stat status {};
        if (::fstat(fd.get(), &status) == 0 &&
            static_cast<std::uint64_t>(status.st_size) > header->file_bytes) {
            header->file_bytes = static_cast<std::uint64_t>(status.st_size);
        }
        follow_growth();
        check_block();
        Block& b = block();
        std::uint32_t* slots = index(b);
        std::memset(slots, 0, b.slots * sizeof(std::uint32_t));
        const EntryRef* refs = entries(b);
        std::uint64_t live = 0;
        for (std::uint64_t i = 0; i < b.used; ++i) {
            if (refs[i].offset == 0) continue;
            slots[free_slot(b, refs[i].hash)] = static_cast<std::uint32_t>(i + first_entry);
            ++live;
        }
        b.live = live;
        const std::uint64_t first = page_bytes();
        release(first, b.at - first);
        release(b.at + b.bytes, header->file_bytes - (b.at + b.bytes));
    }

    // ----------------------------------------------------------------------- the table

    struct Probe {
        std::uint64_t slot;   // where the key is, or where it would go
        std::uint64_t entry;  // its entry ref, or `absent`
    };
    static constexpr std::uint64_t absent = ~std::uint64_t{0};

    Probe probe(const Block& b, std::span<const std::byte> key, std::uint64_t hash) const {
        const std::uint32_t* slots = index(b);
        const EntryRef* refs = entries(b);
        const std::uint64_t mask = b.slots - 1;
        std::uint64_t reusable = absent;
        // An index always has an empty slot (it has more slots than entry refs); probing one
        // that has none, which is corrupt, stops after one round.
        std::uint64_t i = hash & mask;
        for (std::uint64_t n = 0; n < b.slots; ++n, i = (i + 1) & mask) {
            const std::uint32_t slot = slots[i];
            if (slot == empty_slot) return {reusable != absent ? reusable : i, absent};
            if (slot == erased_slot) {
                if (reusable == absent) reusable = i;
                continue;
            }
            const std::uint64_t e = slot - first_entry;
            if (e >= b.used) corrupt();
            if (refs[e].hash != hash) continue;
            check_entry(b, refs[e].offset);
            const std::span<const std::byte> stored = key_of(refs[e].offset);
            if (stored.size() == key.size() &&
                std::memcmp(stored.data(), key.data(), key.size()) == 0) {
                return {i, e};
            }
        }
        corrupt();
    }

    // An empty slot for hash, in an index that holds no erased slots (a new or repaired one).
    std::uint64_t free_slot(const Block& b, std::uint64_t hash) const noexcept {
        const std::uint32_t* slots = index(b);
        const std::uint64_t mask = b.slots - 1;
        std::uint64_t i = hash & mask;
        while (slots[i] != empty_slot) i = (i + 1) & mask;
        return i;
    }

    // Writes an entry at the heap's top, which must have room, and returns its offset. Until
    // that offset is published somewhere it is garbage that a rebuild drops.
    std::uint64_t write_entry(Block& b, std::span<const std::byte> key,
                              std::span<const std::byte> value) noexcept {
        const std::uint64_t at = b.heap_top;
        const EntryHead head{key.size(), value.size()};
        std::memcpy(data + at, &head, sizeof head);
        std::memcpy(data + at + sizeof head, key.data(), key.size());
        if (!value.empty())
            std::memcpy(data + at + sizeof head + key.size(), value.data(), value.size());
        publish(b.heap_top, at + entry_bytes(key.size(), value.size()));
        return at;
    }

    // Copies the live entries (none when !keep), in order, into a new block with room for
    // extra_entries more entries and extra_heap more heap bytes, and at least twice what they
    // take, then switches to it and releases the old one. The new block goes at the start of
    // the data when it fits below the current one, else just above it, so that a dict of
    // steady size reuses the same two stretches of the file.
    void rebuild(std::uint64_t extra_entries, std::uint64_t extra_heap, bool keep) {
        const std::uint64_t old_at = header->block;
        std::uint64_t old_bytes = 0;
        std::uint64_t live = 0;
        std::uint64_t live_heap = 0;
        if (old_at != 0) {
            const Block& old = block();
            old_bytes = old.bytes;
            const EntryRef* refs = entries(old);
            for (std::uint64_t i = 0; keep && i < old.used; ++i) {
                if (refs[i].offset == 0) continue;
                check_entry(old, refs[i].offset);
                ++live;
                live_heap += bytes_of(refs[i].offset);
            }
        }
        const std::uint64_t capacity = std::max(min_capacity, 2 * (live + extra_entries));
        if (capacity + first_entry > UINT32_MAX) {
            throw Error("mproc: a manager dict cannot hold more than 2^31 entries");
        }
        const std::uint64_t slots = std::bit_ceil(capacity + capacity / 2);
        const std::uint64_t heap = std::max(min_heap_bytes, 2 * (live_heap + extra_heap));
        const std::uint64_t index_offset = round_up(sizeof(Block), 8);
        const std::uint64_t entries_offset = index_offset + round_up(slots * 4, 8);
        const std::uint64_t heap_offset = entries_offset + capacity * sizeof(EntryRef);
        const std::uint64_t bytes = round_up(heap_offset + heap, page_bytes());
        const std::uint64_t low = page_bytes();
        const std::uint64_t at =
            old_at == 0 || bytes <= old_at - low ? low : round_up(old_at + old_bytes, page_bytes());
        grow_file(at + bytes);

        Block& fresh = *reinterpret_cast<Block*>(data + at);
        fresh = Block{at,
                      bytes,
                      slots,
                      capacity,
                      0,
                      0,
                      at + index_offset,
                      at + entries_offset,
                      at + heap_offset,
                      at + bytes};
        std::memset(index(fresh), 0, slots * sizeof(std::uint32_t));
        if (live > 0) {
            const Block& old = *reinterpret_cast<const Block*>(data + old_at);
            const EntryRef* from = entries(old);
            EntryRef* to = entries(fresh);
            std::uint32_t* to_slots = index(fresh);
            for (std::uint64_t i = 0; i < old.used; ++i) {
                if (from[i].offset == 0) continue;
                const std::uint64_t size = bytes_of(from[i].offset);
                std::memcpy(data + fresh.heap_top, data + from[i].offset, size);
                to[fresh.used] = EntryRef{from[i].hash, fresh.heap_top};
                to_slots[free_slot(fresh, from[i].hash)] =
                    static_cast<std::uint32_t>(fresh.used + first_entry);
                fresh.heap_top += size;
                ++fresh.used;
            }
            fresh.live = fresh.used;
        }
        publish(header->block, at);
        if (old_at != 0) release(old_at, old_bytes);
    }

    void set(std::span<const std::byte> key, std::span<const std::byte> value) {
        const std::uint64_t hash = hash_key(key);
        const std::uint64_t need = entry_bytes(key.size(), value.size());
        Block* b = &block();
        Probe found = probe(*b, key, hash);
        const bool inserting = found.entry == absent;
        if (b->heap_end - b->heap_top < need || (inserting && b->used == b->capacity)) {
            rebuild(inserting ? 1 : 0, need, true);
            b = &block();
            found = probe(*b, key, hash);
        }
        const std::uint64_t offset = write_entry(*b, key, value);
        if (!inserting) {
            publish(entries(*b)[found.entry].offset, offset);
            return;
        }
        const std::uint64_t e = b->used;
        entries(*b)[e] = EntryRef{hash, offset};
        publish(b->used, e + 1);
        publish(index(*b)[found.slot], static_cast<std::uint32_t>(e + first_entry));
        b->live += 1;
    }

    bool erase(std::span<const std::byte> key) {
        Block& b = block();
        const Probe found = probe(b, key, hash_key(key));
        if (found.entry == absent) return false;
        publish(entries(b)[found.entry].offset, 0);
        publish(index(b)[found.slot], erased_slot);
        b.live -= 1;
        return true;
    }
};

// ---------------------------------------------------------------------------------------------

SharedDict::SharedDict(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
SharedDict::~SharedDict() = default;

std::shared_ptr<SharedDict> SharedDict::create(std::uint64_t signature) {
    static_assert(sizeof(DictHeader) <= 4096);
    auto impl = std::make_unique<Impl>();
    impl->fd = UniqueFd(::memfd_create("mproc-manager-dict", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!impl->fd) throw_system_error("memfd_create for a manager dict");
    // Any holder may grow the dict; none may shrink it under another's mapping.
    if (::fcntl(impl->fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        throw_system_error("sealing a manager dict");
    }
    if (::ftruncate(impl->fd.get(), static_cast<off_t>(page_bytes())) != 0) {
        throw_system_error("sizing a manager dict");
    }
    void* header =
        ::mmap(nullptr, page_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, impl->fd.get(), 0);
    if (header == MAP_FAILED) throw_system_error("mapping a manager dict");
    impl->header = new (header) DictHeader{};
    init_robust_mutex(impl->header->mutex);
    impl->header->signature = signature;
    impl->header->file_bytes = page_bytes();
    impl->follow_growth();
    impl->rebuild(0, 0, false);
    impl->header->magic = dict_magic;
    return std::shared_ptr<SharedDict>(new SharedDict(std::move(impl)));
}

std::shared_ptr<SharedDict> SharedDict::adopt(UniqueFd fd, std::uint64_t signature) {
    struct stat status {};
    const int seals = fd ? ::fcntl(fd.get(), F_GET_SEALS) : -1;
    if (!fd || ::fstat(fd.get(), &status) != 0 || !S_ISREG(status.st_mode) || seals < 0 ||
        (seals & F_SEAL_SHRINK) == 0 || static_cast<std::uint64_t>(status.st_size) < page_bytes()) {
        throw SerializationError("mproc: the manager sent a descriptor that is not a dict's");
    }
    auto impl = std::make_unique<Impl>();
    impl->fd = std::move(fd);
    void* header =
        ::mmap(nullptr, page_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, impl->fd.get(), 0);
    if (header == MAP_FAILED) throw_system_error("mapping a manager dict");
    impl->header = static_cast<DictHeader*>(header);
    if (impl->header->magic != dict_magic) {
        throw SerializationError("mproc: the manager sent a descriptor that is not a dict's");
    }
    if (impl->header->signature != signature) {
        throw SerializationError("mproc: the manager sent a dict of other types than asked for");
    }
    return std::shared_ptr<SharedDict>(new SharedDict(std::move(impl)));
}

const UniqueFd& SharedDict::fd() const noexcept {
    return impl_->fd;
}

// ---------------------------------------------------------------------------------------------

SharedDict::Access::Access(SharedDict& dict) : impl_(*dict.impl_) {
    impl_.lock();
}

SharedDict::Access::~Access() {
    unlock_robust(impl_.header->mutex);
}

std::optional<std::span<const std::byte>> SharedDict::Access::find(
    std::span<const std::byte> key) const {
    const Block& b = impl_.block();
    const Impl::Probe found = impl_.probe(b, key, hash_key(key));
    if (found.entry == Impl::absent) return std::nullopt;
    return impl_.value_of(impl_.entries(b)[found.entry].offset);
}

void SharedDict::Access::set(std::span<const std::byte> key, std::span<const std::byte> value) {
    impl_.set(key, value);
}

bool SharedDict::Access::erase(std::span<const std::byte> key) {
    return impl_.erase(key);
}

std::uint64_t SharedDict::Access::size() const {
    return impl_.block().live;
}

void SharedDict::Access::clear() {
    impl_.rebuild(0, 0, false);
}

void SharedDict::Access::append_sequence(std::vector<std::byte>& out, bool keys,
                                         bool values) const {
    const Block& b = impl_.block();
    encode(out, b.live);
    const EntryRef* refs = impl_.entries(b);
    for (std::uint64_t i = 0; i < b.used; ++i) {
        if (refs[i].offset == 0) continue;
        impl_.check_entry(b, refs[i].offset);
        const EntryHead& head = impl_.entry(refs[i].offset);
        const std::byte* from = impl_.data + refs[i].offset + sizeof(EntryHead);
        const std::uint64_t first = keys ? 0 : head.key_bytes;
        const std::uint64_t last = head.key_bytes + (values ? head.value_bytes : 0);
        out.insert(out.end(), from + first, from + last);
    }
}

}  // namespace mproc::detail
