#include "sync/shared_object.hpp"

#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>

#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {

// splitmix64: spreads a counter or a clock reading over all 64 bits.
std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::uint64_t random_word() noexcept {
    std::uint64_t word = 0;
    ssize_t got = 0;
    do {
        got = ::getrandom(&word, sizeof word, GRND_NONBLOCK);
    } while (got < 0 && errno == EINTR);
    if (got == static_cast<ssize_t>(sizeof word)) return word;
    // Without the kernel's randomness (too early in boot), the clock, the thread and a counter
    // still make ids that differ between objects and threads.
    static std::atomic<std::uint64_t> counter{0};
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return mix(static_cast<std::uint64_t>(now) ^ (static_cast<std::uint64_t>(::gettid()) << 32) ^
               mix(counter.fetch_add(1, std::memory_order_relaxed)));
}

thread_local std::uint64_t this_thread_identity = 0;

// Runs in a forked child, in its only thread: the thread that called fork, whose identity the
// child must not keep (it would pass for the parent's thread as the holder of a lock).
void forget_identity() noexcept {
    this_thread_identity = 0;
}

const char* kind_name(SyncKind kind) noexcept {
    switch (kind) {
        case SyncKind::lock:
            return "Lock";
        case SyncKind::rlock:
            return "RLock";
        case SyncKind::semaphore:
            return "Semaphore";
        case SyncKind::event:
            return "Event";
        case SyncKind::condition:
            return "Condition";
        case SyncKind::barrier:
            return "Barrier";
    }
    return "unknown object";
}

}  // namespace

std::uint64_t new_object_id() noexcept {
    return random_word();
}

void check_shared_state(const SharedRegion& region, SyncKind kind, std::size_t min_bytes,
                        const char* what) {
    const std::string received = std::string("mproc: the descriptor received as a ") + what;
    if (region.size() < sizeof(SyncHeader) || region.size() < min_bytes) {
        throw SerializationError(received + " is a shared block of " +
                                 std::to_string(region.size()) + " bytes, too small to be one");
    }
    const auto& header = *reinterpret_cast<const SyncHeader*>(region.data());
    if (header.magic != sync_magic) {
        throw SerializationError(received + " is not a synchronisation object");
    }
    if (header.kind != kind) {
        throw SerializationError(received + " is a " + kind_name(header.kind) +
                                 "; the sender and the receiver disagree on its type");
    }
}

std::uint64_t caller_identity() noexcept {
    if (this_thread_identity == 0) {
        [[maybe_unused]] static const bool registered =
            ::pthread_atfork(nullptr, nullptr, forget_identity) == 0;
        // The thread id tells apart the threads alive now; the random half tells this thread
        // from a dead one that had the same id, whose identity a lock may still record.
        const auto tid = static_cast<std::uint64_t>(static_cast<std::uint32_t>(::gettid()));
        std::uint64_t low = 0;
        while (low == 0) low = random_word() & 0xffffffffULL;
        this_thread_identity = (tid << 32) | low;
    }
    return this_thread_identity;
}

}  // namespace mproc::detail
