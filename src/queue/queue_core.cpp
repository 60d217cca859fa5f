#include "mproc/detail/queue_core.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <string>

#include "mproc/detail/shared_region.hpp"
#include "mproc/errors.hpp"
#include "os/futex.hpp"
#include "os/robust_mutex.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t header_magic = 0x6d70726f63517565;  // "mprocQue"
constexpr std::size_t initial_ring_bytes = 64 * 1024;
using ItemSize = std::uint64_t;

// The processes that sleep on one futex word, and the wake-ups sent to them. Changed only under
// the queue's mutex.
//
// A waker wakes one sleeper only while more sleepers are registered than wake-ups are on their
// way (waiting > woken). The puts that follow a wake-up, made before the woken getter has taken
// the lock again, so skip a futex_wake that would find nobody asleep.
//
// Why no wake-up is lost, whoever dies wherever. Call D the registered sleepers that died, and R
// the live ones that a bump of the word has reached since they registered and that have not yet
// relocked (woken, or bound to find the word changed when they call futex_wait). Then
// woken <= |D| + |R| always:
// - a wake-up adds one to woken, and either moves a sleeper from the kernel into R, or, finding
//   none asleep there, follows waiting > woken with every live registered sleeper in R;
// - a sleeper that relocks having seen the word change leaves R and takes one from woken;
// - a sleeper that dies moves into D for good, still counted in waiting.
// As waiting is at least the number asleep in the kernel plus |R| plus |D|, waiting - woken is
// at least the number asleep in the kernel: while one is, the next put wakes one. A process that
// dies holding the mutex may leave woken too high; repair() sets it to 0, which the invariant
// always allows.
struct Sleepers {
    std::atomic<std::uint32_t> word;  // the futex; each wake-up bumps it
    std::uint32_t waiting;            // registered sleepers, dead ones included
    std::uint32_t woken;              // wake-ups not yet acknowledged by a sleeper
};

// Lives at the start of the header region. Every field but the futex words changes only under
// the mutex; a put or get changes `used` and `count` last, so a process that dies in the middle
// of one leaves the queue as it was before it, and repair() mends the one gap between them.
struct QueueHeader {
    // What every put and get writes shares one cache line with the mutex, so that an item's
    // passage from a producer on one CPU to a consumer on another moves one line of the header
    // back and forth, not two.
    pthread_mutex_t mutex;
    std::uint64_t count;
    std::uint64_t head;  // ring offset of the oldest item
    std::uint64_t used;  // bytes of items in the ring
    // Read by every put and get, written seldom: these lines stay in both CPUs' caches.
    std::uint64_t magic;
    Sleepers getters;  // wait for an item
    Sleepers putters;  // wait for room in a full queue
    Sleepers joiners;  // JoinableQueue::join waits for the last task_done
    std::uint32_t closed;
    std::uint64_t maxsize;
    std::uint64_t capacity;  // bytes in the ring
    std::uint64_t unfinished;
};
static_assert(offsetof(QueueHeader, magic) == 64, "the hot fields fill the mutex's cache line");

std::size_t round_to_pages(std::size_t bytes) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
}

}  // namespace

struct QueueCore::Impl {
    std::shared_ptr<SharedRegion> header_region;
    UniqueFd ring;
    std::byte* ring_bytes = nullptr;
    std::size_t mapped = 0;

    QueueHeader& header() const { return *reinterpret_cast<QueueHeader*>(header_region->data()); }

    ~Impl() {
        if (ring_bytes != nullptr) ::munmap(ring_bytes, mapped);
    }

    // Takes the queue's mutex; the caller must hold it to call anything below.
    void lock() {
        if (lock_robust(header().mutex) == LockOutcome::acquired_from_dead_owner) repair();
    }
    void unlock() noexcept { unlock_robust(header().mutex); }

    // Another process grew the ring since this one mapped it.
    void follow_growth() {
        const std::size_t capacity = header().capacity;
        if (capacity == mapped) return;
        void* moved =
            ring_bytes == nullptr
                ? ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, ring.get(), 0)
                : ::mremap(ring_bytes, mapped, capacity, MREMAP_MAYMOVE);
        if (moved == MAP_FAILED) throw_system_error("mapping a queue's ring");
        ring_bytes = static_cast<std::byte*>(moved);
        mapped = capacity;
    }

    void copy_in(std::uint64_t at, const void* from, std::size_t bytes) {
        const std::uint64_t capacity = header().capacity;
        at %= capacity;
        const std::size_t first = std::min<std::size_t>(bytes, capacity - at);
        std::memcpy(ring_bytes + at, from, first);
        std::memcpy(ring_bytes, static_cast<const std::byte*>(from) + first, bytes - first);
    }
    void copy_out(std::uint64_t at, void* to, std::size_t bytes) const {
        const std::uint64_t capacity = header().capacity;
        at %= capacity;
        const std::size_t first = std::min<std::size_t>(bytes, capacity - at);
        std::memcpy(to, ring_bytes + at, first);
        std::memcpy(static_cast<std::byte*>(to) + first, ring_bytes, bytes - first);
    }

    // Makes room for `need` more bytes: the file grows, and the part of the items that wrapped
    // around to the ring's start moves to just after the old end, so that they stay contiguous
    // in ring order. The new capacity is published last.
    void grow(std::size_t need) {
        QueueHeader& h = header();
        const std::size_t old_capacity = h.capacity;
        const std::size_t capacity = round_to_pages(std::max(2 * old_capacity, h.used + need));
        if (::ftruncate(ring.get(), static_cast<off_t>(capacity)) != 0) {
            throw_system_error("growing a queue to " + std::to_string(capacity) + " bytes");
        }
        void* moved = ::mremap(ring_bytes, mapped, capacity, MREMAP_MAYMOVE);
        if (moved == MAP_FAILED) throw_system_error("mapping a queue's grown ring");
        ring_bytes = static_cast<std::byte*>(moved);
        mapped = capacity;
        const std::uint64_t end = h.head + h.used;
        if (end > old_capacity)
            std::memcpy(ring_bytes + old_capacity, ring_bytes, end - old_capacity);
        h.capacity = capacity;
    }

    // After a holder died: count the whole items between head and head + used, which is what
    // `count` should say. The holder may also have died between counting a wake-up as sent and
    // sending it, so every sleeper is woken and none counted as on its way.
    void repair() {
        QueueHeader& h = header();
        follow_growth();
        std::uint64_t offset = 0;
        std::uint64_t items = 0;
        while (offset + sizeof(ItemSize) <= h.used) {
            ItemSize size = 0;
            copy_out(h.head + offset, &size, sizeof size);
            if (offset + sizeof size + size > h.used) break;
            offset += sizeof size + size;
            ++items;
        }
        h.used = offset;
        h.count = items;
        for (Sleepers* sleepers : {&h.getters, &h.putters, &h.joiners}) {
            sleepers->woken = 0;
            wake_all(*sleepers);
        }
    }

    // Sleeps until woken or the deadline, with the mutex released meanwhile.
    bool sleep_on(Sleepers& sleepers, const Deadline& deadline) {
        const std::uint32_t seen = sleepers.word.load();
        ++sleepers.waiting;
        unlock();
        bool woken = true;
        try {
            woken = futex_wait(sleepers.word, seen, deadline);
        } catch (...) {
            lock();
            settle(sleepers, seen);
            throw;
        }
        lock();
        settle(sleepers, seen);
        return woken;
    }

    // A sleeper back under the lock: no longer waiting, and, if a bump reached it, one wake-up
    // fewer on its way (it may have been another sleeper's; then that one's acknowledgement
    // finds woken already 0, which only risks a needless wake-up later).
    static void settle(Sleepers& sleepers, std::uint32_t seen) {
        --sleepers.waiting;
        if (sleepers.word.load() != seen && sleepers.woken > 0) --sleepers.woken;
    }

    static void wake_one(Sleepers& sleepers) {
        if (sleepers.waiting <= sleepers.woken) return;
        ++sleepers.woken;
        sleepers.word.fetch_add(1);
        futex_wake(sleepers.word, 1);
    }

    // Leaves `woken` alone: every sleeper it wakes acknowledges a bump, which keeps the
    // invariant above.
    static void wake_all(Sleepers& sleepers) {
        if (sleepers.waiting == 0) return;
        sleepers.word.fetch_add(1);
        futex_wake(sleepers.word);
    }
};

// Holds a queue's lock for a scope, and brings this process's view of the ring up to date.
class QueueLock {
  public:
    explicit QueueLock(QueueCore::Impl& impl) : impl_(impl) {
        impl_.lock();
        try {
            impl_.follow_growth();
        } catch (...) {
            impl_.unlock();
            throw;
        }
    }
    ~QueueLock() { impl_.unlock(); }
    QueueLock(const QueueLock&) = delete;
    QueueLock& operator=(const QueueLock&) = delete;

  private:
    QueueCore::Impl& impl_;
};

QueueCore::QueueCore(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
QueueCore::~QueueCore() = default;

std::shared_ptr<QueueCore> QueueCore::create(std::size_t maxsize) {
    auto impl = std::make_unique<Impl>();
    impl->header_region = SharedRegion::create(sizeof(QueueHeader));
    impl->ring = UniqueFd(::memfd_create("mproc-queue", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!impl->ring) throw_system_error("memfd_create for a queue");
    // Any holder may grow the ring, none may shrink it under another's mapping.
    if (::fcntl(impl->ring.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        throw_system_error("sealing a queue's ring");
    }
    if (::ftruncate(impl->ring.get(), initial_ring_bytes) != 0)
        throw_system_error("sizing a queue");
    QueueHeader& header = *new (impl->header_region->data()) QueueHeader{};
    init_robust_mutex(header.mutex);
    header.maxsize = maxsize;
    header.capacity = initial_ring_bytes;
    header.magic = header_magic;
    impl->follow_growth();
    return std::shared_ptr<QueueCore>(new QueueCore(std::move(impl)));
}

std::shared_ptr<QueueCore> QueueCore::adopt(UniqueFd header, UniqueFd ring) {
    auto impl = std::make_unique<Impl>();
    impl->header_region = SharedRegion::adopt(std::move(header));
    if (impl->header_region->size() != sizeof(QueueHeader) ||
        impl->header().magic != header_magic) {
        throw SerializationError("mproc: a Queue arrived whose shared header is not a queue's");
    }
    struct stat status {};
    if (::fstat(ring.get(), &status) != 0 ||
        static_cast<std::uint64_t>(status.st_size) < impl->header().capacity) {
        throw SerializationError("mproc: a Queue arrived whose ring is not a queue's");
    }
    impl->ring = std::move(ring);
    QueueLock lock(*impl);
    return std::shared_ptr<QueueCore>(new QueueCore(std::move(impl)));
}

bool QueueCore::put(std::span<const std::byte> item, Timeout timeout) {
    const Deadline deadline = Deadline::from(timeout);
    Impl& impl = *impl_;
    QueueLock lock(impl);
    QueueHeader& h = impl.header();
    while (true) {
        if (h.closed != 0) throw StateError("mproc: put() on a closed queue");
        if (h.maxsize == 0 || h.count < h.maxsize) break;
        if (!impl.sleep_on(h.putters, deadline) && deadline.passed() && h.count >= h.maxsize) {
            return false;
        }
        impl.follow_growth();
    }
    const std::size_t need = sizeof(ItemSize) + item.size();
    if (h.capacity - h.used < need) impl.grow(need);
    const ItemSize size = item.size();
    const std::uint64_t tail = h.head + h.used;
    impl.copy_in(tail, &size, sizeof size);
    impl.copy_in(tail + sizeof size, item.data(), item.size());
    h.used += need;
    h.count += 1;
    h.unfinished += 1;
    Impl::wake_one(h.getters);
    return true;
}

bool QueueCore::get(Timeout timeout, std::vector<std::byte>& out) {
    const Deadline deadline = Deadline::from(timeout);
    Impl& impl = *impl_;
    QueueLock lock(impl);
    QueueHeader& h = impl.header();
    while (h.count == 0) {
        if (h.closed != 0) throw StateError("mproc: get() on a queue that is closed and empty");
        if (!impl.sleep_on(h.getters, deadline) && deadline.passed() && h.count == 0) {
            return false;
        }
        impl.follow_growth();
    }
    ItemSize size = 0;
    impl.copy_out(h.head, &size, sizeof size);
    out.resize(size);
    impl.copy_out(h.head + sizeof size, out.data(), size);
    h.head = (h.head + sizeof size + size) % h.capacity;
    h.used -= sizeof size + size;
    h.count -= 1;
    if (h.count == 0) h.head = 0;  // keeps the next items from wrapping needlessly
    Impl::wake_one(h.putters);
    return true;
}

std::size_t QueueCore::size() const {
    QueueLock lock(*impl_);
    return impl_->header().count;
}

std::size_t QueueCore::maxsize() const noexcept {
    return impl_->header().maxsize;
}

void QueueCore::close() {
    QueueLock lock(*impl_);
    QueueHeader& h = impl_->header();
    h.closed = 1;
    Impl::wake_all(h.getters);
    Impl::wake_all(h.putters);
}

bool QueueCore::closed() const {
    QueueLock lock(*impl_);
    return impl_->header().closed != 0;
}

void QueueCore::task_done() {
    QueueLock lock(*impl_);
    QueueHeader& h = impl_->header();
    if (h.unfinished == 0) {
        throw StateError("mproc: task_done() called more times than items were put");
    }
    if (--h.unfinished == 0) Impl::wake_all(h.joiners);
}

bool QueueCore::join(Timeout timeout) {
    const Deadline deadline = Deadline::from(timeout);
    QueueLock lock(*impl_);
    QueueHeader& h = impl_->header();
    while (h.unfinished != 0) {
        if (!impl_->sleep_on(h.joiners, deadline) && deadline.passed() && h.unfinished != 0) {
            return false;
        }
    }
    return true;
}

const UniqueFd& QueueCore::header_fd() const noexcept {
    return impl_->header_region->fd();
}
const UniqueFd& QueueCore::ring_fd() const noexcept {
    return impl_->ring;
}

}  // namespace mproc::detail
