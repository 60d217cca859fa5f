#include "mproc/detail/queue_core.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <string>

#include "mproc/detail/shared_region.hpp"
#include "mproc/errors.hpp"
#include "os/futex.hpp"
#include "os/robust_mutex.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

void (*queue_sleeper_woken_hook)() noexcept = nullptr;

namespace {

constexpr std::uint64_t header_magic = 0x6d70726f63517532;  // "mprocQu2": the two-lock layout
constexpr std::size_t initial_ring_bytes = 64 * 1024;
constexpr std::size_t cache_line = 64;
using ItemSize = std::uint64_t;

// The processes that sleep on one futex word, and the wake-ups sent to them. The counts change
// only under the get lock; putters also read them without it.
//
// A waker wakes one sleeper only while more sleepers are registered than wake-ups are on their
// way (waiting > woken). The puts that follow a wake-up, made before the woken getter has taken
// the get lock again, so skip a futex_wake that would find nobody asleep.
//
// Why a waker always finds a sleeper left to wake, whoever dies wherever. Call D the registered
// sleepers that died, and R the live ones that a bump of the word has reached since they registered
// and that have not yet relocked (woken, or bound to find the word changed when they call
// futex_wait). Then woken <= |D| + |R| always:
// - a wake-up adds one to woken, and either moves a sleeper from the kernel into R, or, finding
//   none asleep there, follows waiting > woken with every live registered sleeper in R;
// - a sleeper that relocks having seen the word change leaves R and takes one from woken;
// - a sleeper that dies moves into D for good, still counted in waiting.
// As waiting is at least the number asleep in the kernel plus |R| plus |D|, waiting - woken is
// at least the number asleep in the kernel: while one is, the next waker wakes one.
//
// That needs every waker to see every sleeper it must wake. Putters of a full queue and joiners
// register under the get lock, after checking under it what they wait for, and their wakers
// (gets, task_done) change that under the get lock too. Getters cannot: a put does not take the
// get lock. But a put publishes its tail, then reads the getters' tally, all under the put lock,
// so a getter registers, lets the get lock go, passes through the put lock, and only then reads
// the tail to decide to sleep: each put's hold of the put lock comes wholly before that passage,
// and the getter finds its item, or wholly after, and the putter finds the getter registered
// (the tally it reads may be newer, but until a bump reaches the getter, the invariant keeps
// waiting > woken in it), takes the get lock and wakes it. No put pays for a fence; a getter
// going to sleep pays one passage through the put lock, small beside the sleep.
//
// That is not enough for every wake-up to arrive, which this argument once claimed: it bounds
// woken, and says nothing of a wake-up that a sleeper in R takes with it when it dies before it
// relocks. That sleeper holds no lock, so nobody learns of the death, and a quiet queue sends no
// later waker to the sleepers beside it: a queue of maxsize 1 that a get emptied, the putter it
// woke killed, the other putters asleep beside the room for good (an item and the getters, the
// same). So no sleep lasts longer than recheck_period: a sleeper that nobody woke looks again
// on its own, and finds the room or the item within that time. Joiners do not need it (every
// wake-up of theirs wakes them all) but pay no more than a look each period.
//
// A process that dies holding the get lock may leave woken too high (it counted a wake-up it did
// not send); one that dies holding the put lock may have published an item without waking a
// getter, or counted a wake-up it had not yet sent (a putter sends it after letting the get lock
// go, still holding the put lock). The first process to take that lock afterwards sets every
// woken to 0, which the invariant always allows, and wakes every sleeper.
struct Sleepers {
    std::atomic<std::uint32_t> word;  // the futex; each wake-up bumps it
    // Registered sleepers, dead ones included, in the high half; wake-ups not yet acknowledged
    // by a sleeper in the low half. One word, so that one load outside the get lock tells a
    // putter whether a getter needs waking, and the puts that follow a wake-up skip the lock.
    std::atomic<std::uint64_t> tally;

    static constexpr std::uint64_t one_waiting = std::uint64_t{1} << 32;
    static std::uint32_t waiting(std::uint64_t tally) { return tally >> 32; }
    static std::uint32_t woken(std::uint64_t tally) { return static_cast<std::uint32_t>(tally); }
    bool need_waking() const {
        const std::uint64_t now = tally.load();
        return waiting(now) > woken(now);
    }
};

// Items are put and got at byte positions that only grow; position p lives at ring offset
// (p - base) % capacity. Each side publishes its position with one store, made after the item's
// bytes are written (tail) or read (head), and keeps an item count beside it: puts goes up before
// tail, so every item a getter can see is counted (task_done and join rely on it), and gets
// after head. A process that dies between the two stores leaves one count off by one, which the
// next holder of both locks mends from the positions (repair_counts).
struct alignas(cache_line) ProducerSide {
    pthread_mutex_t put_mutex;
    std::atomic<std::uint64_t> tail;  // where the next item goes
    std::atomic<std::uint64_t> puts;
};
struct alignas(cache_line) ConsumerSide {
    pthread_mutex_t get_mutex;
    std::atomic<std::uint64_t> head;  // where the oldest item is
    std::atomic<std::uint64_t> gets;
    std::uint64_t tasks_done;  // task_done calls, under the get lock
};

// Which side's counts a process that died holding its lock may have left off by one. Set by the
// first process to take that lock after the death, cleared once both locks are held and the
// counts repaired, so that a process dying in between leaves the work to the next.
enum Unrepaired : std::uint32_t { put_side = 1, get_side = 2 };

// Lives at the start of the header region. A put writes only the producer's line and a get only
// the consumer's, so while the producer runs ahead of the consumer nothing of the header moves
// between their CPUs per item: each reads the other's line again only when it looks out of room
// (the producer) or out of items (the consumer).
struct QueueHeader {
    // Read by every put and get, written seldom: this line stays in both CPUs' caches. capacity
    // and base change only under both locks.
    std::uint64_t magic;
    std::uint64_t maxsize;
    std::uint64_t capacity;  // bytes in the ring
    std::uint64_t base;      // the position at ring offset 0, give or take whole capacities
    std::atomic<std::uint32_t> closed;  // set under both locks
    std::atomic<std::uint32_t> unrepaired;
    ProducerSide producer;
    ConsumerSide consumer;
    // Written when a getter goes to sleep or is woken; read by every put.
    alignas(cache_line) Sleepers getters;
    alignas(cache_line) Sleepers putters;  // wait for room in a full queue
    Sleepers joiners;                      // JoinableQueue::join waits for the last task_done
};

// How long a sleeper waits, at most, before it looks again for what a dead sleeper's wake-up was
// meant to give it (see Sleepers). Rare enough to cost nothing beside a sleep.
constexpr std::chrono::milliseconds recheck_period{100};

// Sleeps on sleepers' word until woken, the deadline or recheck_period; callers look again at
// what they wait for and at their deadline either way.
bool sleep_a_while(Sleepers& sleepers, std::uint32_t seen, const Deadline& deadline) {
    const auto left = deadline.remaining();
    const bool woken =
        futex_wait(sleepers.word, seen,
                   left && *left <= recheck_period ? deadline : Deadline::after(recheck_period));
    if (woken && queue_sleeper_woken_hook != nullptr) queue_sleeper_woken_hook();
    return woken;
}

static_assert(sizeof(ProducerSide) == cache_line && sizeof(ConsumerSide) == cache_line,
              "each side's lock and positions fill one cache line");

std::size_t round_to_pages(std::size_t bytes) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
}

std::uint64_t ring_offset(const QueueHeader& h, std::uint64_t position) {
    return (position - h.base) % h.capacity;
}
// The offset of the payload after an item's size, without a second division.
std::uint64_t payload_offset(const QueueHeader& h, std::uint64_t size_at) {
    const std::uint64_t at = size_at + sizeof(ItemSize);
    return at >= h.capacity ? at - h.capacity : at;
}

// One process's mapping of the ring. A process keeps one for putting and one for getting, each
// remapped only under its side's lock, so that a thread that puts and one that gets never see
// the mapping move under them.
class RingView {
  public:
    RingView() = default;
    RingView(const RingView&) = delete;
    RingView& operator=(const RingView&) = delete;
    ~RingView() {
        if (bytes_ != nullptr) ::munmap(bytes_, mapped_);
    }

    // Another process (or this one, through the other view) grew the ring since this mapping.
    void follow(int ring, std::size_t capacity) {
        if (capacity == mapped_) return;
        void* moved = bytes_ == nullptr
                          ? ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, ring, 0)
                          : ::mremap(bytes_, mapped_, capacity, MREMAP_MAYMOVE);
        if (moved == MAP_FAILED) throw_system_error("mapping a queue's ring");
        bytes_ = static_cast<std::byte*>(moved);
        mapped_ = capacity;
    }

    // Copy to and from ring offsets (see ring_offset), wrapping at the end.
    void copy_in(const QueueHeader& h, std::uint64_t at, const void* from, std::size_t bytes) {
        const std::size_t first = std::min<std::size_t>(bytes, h.capacity - at);
        std::memcpy(bytes_ + at, from, first);
        std::memcpy(bytes_, static_cast<const std::byte*>(from) + first, bytes - first);
    }
    void copy_out(const QueueHeader& h, std::uint64_t at, void* to, std::size_t bytes) const {
        const std::size_t first = std::min<std::size_t>(bytes, h.capacity - at);
        std::memcpy(to, bytes_ + at, first);
        std::memcpy(static_cast<std::byte*>(to) + first, bytes_, bytes - first);
    }
    std::byte* bytes() const noexcept { return bytes_; }

  private:
    std::byte* bytes_ = nullptr;
    std::size_t mapped_ = 0;
};

}  // namespace

// Locks are always taken put first, then get, never the other way round.
struct QueueCore::Impl {
    std::shared_ptr<SharedRegion> header_region;
    UniqueFd ring;
    RingView put_view;  // used under the put lock
    RingView get_view;  // used under the get lock
    // This process's last sight of the other side: lower bounds, as positions and counts only
    // grow, read again only when they say the queue is full or empty.
    std::uint64_t seen_head = 0;  // under the put lock
    std::uint64_t seen_gets = 0;  // under the put lock
    std::uint64_t seen_tail = 0;  // under the get lock

    QueueHeader& header() const { return *reinterpret_cast<QueueHeader*>(header_region->data()); }

    // Takes the put lock and maps the ring as it is now.
    void lock_put() {
        QueueHeader& h = header();
        if (lock_robust(h.producer.put_mutex) == LockOutcome::acquired_from_dead_owner) {
            h.unrepaired.fetch_or(put_side);
            try {
                lock_get_holding_put();
                unlock_get();
            } catch (...) {
                unlock_put();
                throw;
            }
        }
        try {
            put_view.follow(ring.get(), h.capacity);
        } catch (...) {
            unlock_put();
            throw;
        }
    }
    void unlock_put() noexcept { unlock_robust(header().producer.put_mutex); }

    // Takes the get lock and maps the ring as it is now. The counts a dead getter left off wait
    // for the next holder of both locks: no get relies on them.
    void lock_get() {
        QueueHeader& h = header();
        if (lock_robust(h.consumer.get_mutex) == LockOutcome::acquired_from_dead_owner) {
            h.unrepaired.fetch_or(get_side);
            wake_every_sleeper();
        }
        try {
            get_view.follow(ring.get(), h.capacity);
        } catch (...) {
            unlock_get();
            throw;
        }
    }
    void lock_get_holding_put() {
        lock_get();
        if (header().unrepaired.load() == 0) return;
        try {
            repair_counts();
        } catch (...) {
            unlock_get();
            throw;
        }
    }
    void unlock_get() noexcept { unlock_robust(header().consumer.get_mutex); }

    // With both locks: the positions are right, as each is published in one store, and the
    // counts are mended from the whole items between them. A dead putter may have counted one
    // put too many, a dead getter one get too few; when both sides died and the counts are one
    // off, which of the two it was cannot be told, and the put side is taken to be.
    void repair_counts() {
        QueueHeader& h = header();
        put_view.follow(ring.get(), h.capacity);
        const std::uint64_t tail = h.producer.tail.load();
        std::uint64_t items = 0;
        for (std::uint64_t at = h.consumer.head.load(); at < tail; ++items) {
            ItemSize size = 0;
            put_view.copy_out(h, ring_offset(h, at), &size, sizeof size);
            at += sizeof size + size;
        }
        std::uint64_t puts = h.producer.puts.load();
        if ((h.unrepaired.load() & put_side) != 0 && puts > h.consumer.gets.load() + items) --puts;
        h.producer.puts.store(puts);
        h.consumer.gets.store(puts - items);
        h.unrepaired.store(0);
        wake_every_sleeper();
    }

    // Under the get lock, after a death: whoever died may have counted a wake-up it did not
    // send, or not woken a getter for the item it put.
    void wake_every_sleeper() {
        QueueHeader& h = header();
        for (Sleepers* sleepers : {&h.getters, &h.putters, &h.joiners}) {
            sleepers->tally.store(Sleepers::one_waiting * Sleepers::waiting(sleepers->tally));
            wake_all(*sleepers);
        }
    }

    // Under the put lock.
    bool below_maxsize() {
        const QueueHeader& h = header();
        if (h.maxsize == 0) return true;
        const std::uint64_t puts = h.producer.puts.load(std::memory_order_relaxed);
        if (puts - seen_gets < h.maxsize) return true;
        seen_gets = h.consumer.gets.load(std::memory_order_acquire);
        return puts - seen_gets < h.maxsize;
    }

    // Under the put lock, the queue full: sleeps until a get may have made room, with both locks
    // released meanwhile. False if the deadline passed with the queue still full.
    bool wait_for_room(const Deadline& deadline) {
        QueueHeader& h = header();
        lock_get_holding_put();
        seen_gets = h.consumer.gets.load();
        if (h.producer.puts.load() - seen_gets < h.maxsize) {
            unlock_get();
            return true;
        }
        bool woken = true;
        try {
            woken = sleep_holding_both(h.putters, deadline);
        } catch (...) {
            unlock_get();
            throw;
        }
        unlock_get();
        return woken || !deadline.passed() || below_maxsize();
    }

    // Under both locks, for a putter or a joiner, which register under both (see Sleepers):
    // sleeps on sleepers until woken or the deadline, with both locks released meanwhile, and
    // holds both again when it returns or throws. False if the deadline passed.
    bool sleep_holding_both(Sleepers& sleepers, const Deadline& deadline) {
        const std::uint32_t seen = sleepers.word.load();
        sleepers.tally.fetch_add(Sleepers::one_waiting);
        unlock_get();
        unlock_put();
        bool woken = true;
        std::exception_ptr failed;
        try {
            woken = sleep_a_while(sleepers, seen, deadline);
        } catch (...) {
            failed = std::current_exception();
        }
        lock_put();
        try {
            lock_get_holding_put();
        } catch (...) {
            unlock_put();
            throw;
        }
        settle(sleepers, seen);
        if (failed) std::rethrow_exception(failed);
        return woken;
    }

    // Under the put lock: copies the item in after the last, then publishes it.
    void append(std::span<const std::byte> item) {
        QueueHeader& h = header();
        const std::size_t need = sizeof(ItemSize) + item.size();
        const std::uint64_t tail = h.producer.tail.load(std::memory_order_relaxed);
        if (tail - seen_head + need > h.capacity) {
            seen_head = h.consumer.head.load(std::memory_order_acquire);
            if (tail - seen_head + need > h.capacity) make_room(need);
        }
        const ItemSize size = item.size();
        const std::uint64_t at = ring_offset(h, tail);
        put_view.copy_in(h, at, &size, sizeof size);
        put_view.copy_in(h, payload_offset(h, at), item.data(), item.size());
        h.producer.puts.store(h.producer.puts.load(std::memory_order_relaxed) + 1,
                              std::memory_order_release);
        h.producer.tail.store(tail + need, std::memory_order_release);
        if (!h.getters.need_waking()) return;
        lock_get_holding_put();
        const bool counted = count_wake_up(h.getters);
        unlock_get();
        // Sent once the get lock is free, so that the getter woken does not find it held. A
        // putter that dies before sending it still holds the put lock: the next putter wakes
        // every sleeper.
        if (counted) futex_wake(h.getters.word, 1);
    }

    // Under the put lock: with the get lock too, so that head stays put and no getter reads the
    // ring while it moves.
    void make_room(std::size_t need) {
        lock_get_holding_put();
        try {
            QueueHeader& h = header();
            seen_head = h.consumer.head.load();
            if (h.producer.tail.load() - seen_head + need > h.capacity) grow(need);
        } catch (...) {
            unlock_get();
            throw;
        }
        unlock_get();
    }

    // Under both locks: the file grows, and the part of the items that wrapped around to the
    // ring's start moves to just after the old end, so that they stay contiguous in ring order.
    void grow(std::size_t need) {
        QueueHeader& h = header();
        const std::uint64_t head = h.consumer.head.load();
        const std::uint64_t used = h.producer.tail.load() - head;
        const std::size_t old_capacity = h.capacity;
        std::size_t capacity = round_to_pages(std::max(2 * old_capacity, used + need));
        // A grower that died after ftruncate left the file longer than the capacity it
        // published, and the file is sealed against shrinking.
        struct stat status {};
        if (::fstat(ring.get(), &status) != 0) throw_system_error("sizing a queue's ring");
        capacity = std::max(capacity, static_cast<std::size_t>(status.st_size));
        if (::ftruncate(ring.get(), static_cast<off_t>(capacity)) != 0) {
            throw_system_error("growing a queue to " + std::to_string(capacity) + " bytes");
        }
        put_view.follow(ring.get(), capacity);
        const std::uint64_t start = (head - h.base) % old_capacity;
        if (start + used > old_capacity) {
            std::memcpy(put_view.bytes() + old_capacity, put_view.bytes(),
                        start + used - old_capacity);
        }
        // The new base is the old one plus whole old capacities, so it moves no item while the
        // old capacity stands: a grower that dies between these two stores leaves the ring whole.
        h.base = head - start;
        h.capacity = capacity;
    }

    // Under the get lock.
    bool has_item() {
        const std::uint64_t head = header().consumer.head.load(std::memory_order_relaxed);
        if (head < seen_tail) return true;
        seen_tail = header().producer.tail.load(std::memory_order_acquire);
        return head < seen_tail;
    }

    // Under the get lock, the queue empty: a putter is often about to put, on another CPU or
    // preempted on this one, and a sleep costs two system calls and a wake-up, and on one CPU
    // lets the getter preempt the putter for every item. So first let the putter run.
    void yield_to_putters() {
        unlock_get();
        ::sched_yield();
        lock_get();
    }

    // Under the get lock, the queue empty: sleeps until a put may have brought an item, with the
    // get lock released meanwhile. False if the deadline passed.
    bool wait_for_item(const Deadline& deadline) {
        if (deadline.passed()) return false;
        QueueHeader& h = header();
        const std::uint32_t seen = h.getters.word.load();
        const std::uint64_t head = h.consumer.head.load(std::memory_order_relaxed);
        h.getters.tally.fetch_add(Sleepers::one_waiting);
        unlock_get();
        bool woken = true;
        try {
            // Orders the registration before the next put, or the last put before reading the
            // tail: see Sleepers.
            lock_put();
            unlock_put();
            if (h.producer.tail.load(std::memory_order_acquire) <= head) {
                woken = sleep_a_while(h.getters, seen, deadline);
            }
        } catch (...) {
            lock_get();
            settle(h.getters, seen);
            throw;
        }
        lock_get();
        settle(h.getters, seen);
        return woken;
    }

    // Under the get lock: takes the oldest item into out, then publishes that it is gone.
    void take(std::vector<std::byte>& out) {
        QueueHeader& h = header();
        const std::uint64_t head = h.consumer.head.load(std::memory_order_relaxed);
        ItemSize size = 0;
        const std::uint64_t at = ring_offset(h, head);
        get_view.copy_out(h, at, &size, sizeof size);
        out.resize(size);
        get_view.copy_out(h, payload_offset(h, at), out.data(), size);
        h.consumer.head.store(head + sizeof size + size, std::memory_order_release);
        h.consumer.gets.store(h.consumer.gets.load(std::memory_order_relaxed) + 1,
                              std::memory_order_release);
        wake_one(h.putters);
    }

    // Under the get lock. JoinableQueue's tasks not yet done; a dead putter's repair may have
    // taken back a put that a task_done too many had already answered.
    std::uint64_t unfinished() const {
        const QueueHeader& h = header();
        const std::uint64_t puts = h.producer.puts.load();
        return puts > h.consumer.tasks_done ? puts - h.consumer.tasks_done : 0;
    }

    // A sleeper back under the get lock: no longer waiting, and, if a bump reached it, one
    // wake-up fewer on its way (it may have been another sleeper's; then that one's
    // acknowledgement finds woken already 0, which only risks a needless wake-up later).
    static void settle(Sleepers& sleepers, std::uint32_t seen) {
        std::uint64_t tally = sleepers.tally.load() - Sleepers::one_waiting;
        if (sleepers.word.load() != seen && Sleepers::woken(tally) > 0) --tally;
        sleepers.tally.store(tally);
    }

    static void wake_one(Sleepers& sleepers) {
        if (count_wake_up(sleepers)) futex_wake(sleepers.word, 1);
    }
    // A wake-up counted and the word bumped, to be followed by a futex_wake of one sleeper.
    static bool count_wake_up(Sleepers& sleepers) {
        if (!sleepers.need_waking()) return false;
        sleepers.tally.fetch_add(1);
        sleepers.word.fetch_add(1);
        return true;
    }

    // Leaves `woken` alone: every sleeper it wakes acknowledges a bump, which keeps the
    // invariant above.
    static void wake_all(Sleepers& sleepers) {
        if (Sleepers::waiting(sleepers.tally.load()) == 0) return;
        sleepers.word.fetch_add(1);
        futex_wake(sleepers.word);
    }
};

namespace {

// Holds one of a queue's locks for a scope, with this process's view of the ring up to date.
template <void (QueueCore::Impl::*lock)(), void (QueueCore::Impl::*unlock)() noexcept>
class SideLock {
  public:
    explicit SideLock(QueueCore::Impl& impl) : impl_(impl) { (impl_.*lock)(); }
    ~SideLock() { (impl_.*unlock)(); }
    SideLock(const SideLock&) = delete;
    SideLock& operator=(const SideLock&) = delete;

  private:
    QueueCore::Impl& impl_;
};
using PutLock = SideLock<&QueueCore::Impl::lock_put, &QueueCore::Impl::unlock_put>;
using GetLock = SideLock<&QueueCore::Impl::lock_get, &QueueCore::Impl::unlock_get>;

// Holds both locks, which mends whatever counts a dead holder left off.
class BothLocks {
  public:
    explicit BothLocks(QueueCore::Impl& impl) : put_(impl), impl_(impl) {
        impl_.lock_get_holding_put();
    }
    ~BothLocks() { impl_.unlock_get(); }
    BothLocks(const BothLocks&) = delete;
    BothLocks& operator=(const BothLocks&) = delete;

  private:
    PutLock put_;
    QueueCore::Impl& impl_;
};

}  // namespace

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
    init_robust_mutex(header.producer.put_mutex);
    init_robust_mutex(header.consumer.get_mutex);
    header.maxsize = maxsize;
    header.capacity = initial_ring_bytes;
    header.magic = header_magic;
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
    BothLocks lock(*impl);
    return std::shared_ptr<QueueCore>(new QueueCore(std::move(impl)));
}

bool QueueCore::put(std::span<const std::byte> item, Timeout timeout) {
    const Deadline deadline = Deadline::from(timeout);
    Impl& impl = *impl_;
    PutLock lock(impl);
    while (true) {
        if (impl.header().closed.load() != 0) throw StateError("mproc: put() on a closed queue");
        if (impl.below_maxsize()) break;
        if (!impl.wait_for_room(deadline)) return false;
    }
    impl.append(item);
    return true;
}

bool QueueCore::get(Timeout timeout, std::vector<std::byte>& out) {
    const Deadline deadline = Deadline::from(timeout);
    Impl& impl = *impl_;
    GetLock lock(impl);
    bool yielded = false;
    while (!impl.has_item()) {
        if (impl.header().closed.load() != 0) {
            throw StateError("mproc: get() on a queue that is closed and empty");
        }
        if (!yielded && !deadline.passed()) {
            impl.yield_to_putters();
            yielded = true;
            continue;
        }
        if (!impl.wait_for_item(deadline) && deadline.passed() && !impl.has_item()) {
            return false;
        }
    }
    impl.take(out);
    return true;
}

// Approximate, as Python's: read without the locks, gets after puts, so that a get in between
// can only make it smaller, never more than maxsize.
std::size_t QueueCore::size() const {
    const QueueHeader& h = impl_->header();
    const std::uint64_t puts = h.producer.puts.load();
    const std::uint64_t gets = h.consumer.gets.load();
    return puts > gets ? puts - gets : 0;
}

std::size_t QueueCore::maxsize() const noexcept {
    return impl_->header().maxsize;
}

void QueueCore::close() {
    BothLocks lock(*impl_);
    QueueHeader& h = impl_->header();
    h.closed.store(1);
    Impl::wake_all(h.getters);
    Impl::wake_all(h.putters);
}

bool QueueCore::closed() const {
    return impl_->header().closed.load() != 0;
}

void QueueCore::task_done() {
    GetLock lock(*impl_);
    QueueHeader& h = impl_->header();
    if (impl_->unfinished() == 0) {
        throw StateError("mproc: task_done() called more times than items were put");
    }
    ++h.consumer.tasks_done;
    if (impl_->unfinished() == 0) Impl::wake_all(h.joiners);
}

// Takes the put lock as well, so that a putter that died in the middle of a put is mended
// before its count is trusted.
bool QueueCore::join(Timeout timeout) {
    const Deadline deadline = Deadline::from(timeout);
    Impl& impl = *impl_;
    QueueHeader& h = impl.header();
    BothLocks lock(impl);
    while (impl.unfinished() != 0) {
        const bool woken = impl.sleep_holding_both(h.joiners, deadline);
        if (!woken && deadline.passed() && impl.unfinished() != 0) return false;
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
