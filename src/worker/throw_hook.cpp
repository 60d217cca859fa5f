// Replaces two functions of the C++ runtime: __cxa_throw, through which every `throw`
// expression passes, to record the stack while the thrower's frames still exist (by the time a
// catch block runs the stack is unwound, so this is the only moment it can be taken); and
// __cxa_free_exception, to forget a record when its exception object is freed, so that a later
// exception allocated at the same address never inherits it.
//
// The replacements win because the executable (or libmproc.so, loaded before libstdc++.so)
// comes earlier in the dynamic linker's search order than libstdc++.so, and libstdc++ itself
// reaches both functions through its PLT. Under AddressSanitizer, whose runtime also replaces
// __cxa_throw, the next definition is ASan's, which in turn calls the real one.
//
// This file must not include <cxxabi.h>: it declares these functions in namespace __cxxabiv1,
// and two declarations of one C function must agree to the letter.

#include "worker/throw_hook.hpp"

#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

// The same types as <cxxabi.h>'s declarations, so that the two agree should both be seen.
extern "C" [[noreturn]] void __cxa_throw(void* object, std::type_info* type,
                                         void (*destroy)(void*));
extern "C" void __cxa_free_exception(void* object) noexcept;

namespace mproc::detail::throw_hook {

namespace {

using CxaThrow = void (*)(void*, std::type_info*, void (*)(void*));
using CxaFreeException = void (*)(void*);

// Room for the frames of the hook itself (backtrace's interceptor under ASan, record(),
// __cxa_throw), which are cut off before the record is kept.
constexpr int kHookFrames = 4;

// The records are shared by all threads, not thread_local, so that an exception thrown on one
// thread and rethrown on another through a std::exception_ptr (std::async, std::promise)
// still finds its own. A record lives until its exception is freed or until kSlots newer
// throws reuse its slot.
constexpr unsigned kSlots = 16;

// A seqlock: a writer makes `version` odd, fills the slot and makes it even again; a reader
// trusts what it copied only when `version` was the same even number before and after. Every
// field is atomic so that a torn read is detected, not undefined behaviour. The fields are
// written with release and read with acquire instead of fences (which ThreadSanitizer does not
// model): a reader that sees any field of a newer write then sees that write's odd version.
struct Slot {
    std::atomic<unsigned> version;
    std::atomic<const void*> object;
    std::atomic<const std::type_info*> type;
    std::atomic<int> depth;
    std::atomic<void*> frames[kMaxFrames];
};

Slot g_slots[kSlots];
std::atomic<unsigned> g_next_slot{0};

std::atomic<bool> g_enabled{false};
std::atomic<CxaThrow> g_real_cxa_throw{nullptr};
std::atomic<CxaFreeException> g_real_cxa_free_exception{nullptr};

[[noreturn]] void die(const char* why) noexcept {
    (void)!::write(STDERR_FILENO, why, std::strlen(why));
    std::abort();
}

// The definition of `name` that ours hides: ASan's or libstdc++'s. With a static libstdc++
// there is none to find, but such a program does not link in the first place (two definitions
// of each function), so the abort below is for a runtime that is missing them altogether.
template <class Function>
Function resolve_next(std::atomic<Function>& cache, const char* name) noexcept {
    Function next = cache.load(std::memory_order_relaxed);
    if (next != nullptr) [[likely]]
        return next;
    void* symbol = ::dlsym(RTLD_NEXT, name);
    if (symbol == nullptr)
        die("mproc: the C++ runtime has no __cxa_throw or __cxa_free_exception\n");
    next = reinterpret_cast<Function>(symbol);
    cache.store(next, std::memory_order_relaxed);
    return next;
}

CxaThrow real_cxa_throw() noexcept {
    return resolve_next(g_real_cxa_throw, "__cxa_throw");
}

CxaFreeException real_cxa_free_exception() noexcept {
    return resolve_next(g_real_cxa_free_exception, "__cxa_free_exception");
}

// Resolved before main so that the first throw does not call dlsym. A throw from a static
// constructor that runs earlier still works: both resolve on demand too.
[[gnu::constructor]] void resolve_before_main() noexcept {
    real_cxa_throw();
    real_cxa_free_exception();
}

// noinline so that its frame, and only its frame, sits between backtrace() and __cxa_throw.
[[gnu::noinline]] void record(const void* object, const std::type_info* type,
                              const void* thrower) noexcept {
    void* frames[kMaxFrames + kHookFrames];
    const int depth = ::backtrace(frames, kMaxFrames + kHookFrames);

    // Start at the thrower: the frame whose return address is the one __cxa_throw returns to.
    int first = 0;
    for (int i = 0; i < depth && i <= kHookFrames; ++i) {
        if (frames[i] == thrower) {
            first = i;
            break;
        }
    }
    const int kept = depth - first < kMaxFrames ? depth - first : kMaxFrames;

    Slot& slot = g_slots[g_next_slot.fetch_add(1, std::memory_order_relaxed) % kSlots];
    unsigned version = slot.version.load(std::memory_order_relaxed);
    // Another thread is writing this slot (kSlots throws raced past it): drop this record
    // rather than wait inside a throw.
    if ((version & 1) != 0 ||
        !slot.version.compare_exchange_strong(version, version + 1, std::memory_order_relaxed)) {
        return;
    }
    slot.object.store(object, std::memory_order_release);
    slot.type.store(type, std::memory_order_release);
    slot.depth.store(kept, std::memory_order_release);
    for (int i = 0; i < kept; ++i) {
        slot.frames[i].store(frames[first + i], std::memory_order_release);
    }
    slot.version.store(version + 2, std::memory_order_release);
}

void forget(const void* object) noexcept {
    for (Slot& slot : g_slots) {
        const void* expected = object;
        slot.object.compare_exchange_strong(expected, nullptr, std::memory_order_relaxed);
    }
}

}  // namespace

void enable() noexcept {
    real_cxa_throw();
    real_cxa_free_exception();
    // glibc loads libgcc_s, and allocates, on the first backtrace() of the process; take that
    // first call here rather than inside a throw.
    void* frame = nullptr;
    ::backtrace(&frame, 1);
    g_enabled.store(true, std::memory_order_relaxed);
}

int recorded_frames(const void* object, const std::type_info* type, void** frames,
                    int capacity) noexcept {
    if (object == nullptr || type == nullptr) return 0;
    for (Slot& slot : g_slots) {
        const unsigned before = slot.version.load(std::memory_order_acquire);
        if ((before & 1) != 0 || slot.object.load(std::memory_order_acquire) != object) continue;
        const std::type_info* recorded_type = slot.type.load(std::memory_order_acquire);
        int count = slot.depth.load(std::memory_order_acquire);
        if (count > capacity) count = capacity;
        for (int i = 0; i < count; ++i) frames[i] = slot.frames[i].load(std::memory_order_acquire);
        if (slot.version.load(std::memory_order_relaxed) != before) continue;
        // The caller holds the exception, so it cannot have been freed and this record is its
        // own; the type is checked all the same, in case an object was freed by a path that
        // bypassed __cxa_free_exception.
        if (recorded_type != nullptr && *recorded_type == *type) return count;
    }
    return 0;
}

}  // namespace mproc::detail::throw_hook

// When recording is off, as in the parent, each costs one relaxed load and an indirect call.

extern "C" [[noreturn]] void __cxa_throw(void* object, std::type_info* type,
                                         void (*destroy)(void*)) {
    using namespace mproc::detail::throw_hook;
    if (g_enabled.load(std::memory_order_relaxed)) {
        record(object, type, __builtin_return_address(0));
    }
    real_cxa_throw()(object, type, destroy);
    __builtin_unreachable();
}

extern "C" void __cxa_free_exception(void* object) noexcept {
    using namespace mproc::detail::throw_hook;
    if (g_enabled.load(std::memory_order_relaxed)) forget(object);
    real_cxa_free_exception()(object);
}
