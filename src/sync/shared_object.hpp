#pragma once

// What every synchronisation object of sync.hpp keeps at the start of its shared block, and how
// a block is made and checked. A block received from another process is checked before it is
// used, because the descriptor in a frame could be any memfd: one of another kind would
// otherwise be read as this kind's state.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

#include "mproc/detail/shared_region.hpp"

namespace mproc::detail {

enum class SyncKind : std::uint32_t {
    lock = 1,
    rlock,
    semaphore,
    event,
    condition,
    barrier,
};

struct SyncHeader {
    std::uint32_t magic;
    SyncKind kind;
    // Random, the same for every handle to the object in any process; a process that maps one
    // block twice (received twice) can tell that the two mappings are one object.
    std::uint64_t id;
};

inline constexpr std::uint32_t sync_magic = 0x6d707379;  // "mpsy"

// A new random object id.
std::uint64_t new_object_id() noexcept;

// A new zero-filled block of `bytes` bytes (at least sizeof(State)) with a State constructed at
// its start and its header filled in. State is a standard-layout struct whose first member is a
// SyncHeader named header. Throws mproc::Error when the kernel refuses the memory.
template <class State>
std::shared_ptr<SharedRegion> create_shared_state(SyncKind kind,
                                                  std::size_t bytes = sizeof(State)) {
    static_assert(std::is_standard_layout_v<State>);
    std::shared_ptr<SharedRegion> region =
        SharedRegion::create(bytes < sizeof(State) ? sizeof(State) : bytes);
    State* state = ::new (region->data()) State{};
    state->header = SyncHeader{sync_magic, kind, new_object_id()};
    return region;
}

// The State at the start of a block made by create_shared_state<State>.
template <class State>
State& shared_state(const SharedRegion& region) noexcept {
    return *std::launder(reinterpret_cast<State*>(region.data()));
}

// Throws SerializationError, saying that the descriptor received as a `what` is none, unless
// region holds at least min_bytes and begins with a header of this kind.
void check_shared_state(const SharedRegion& region, SyncKind kind, std::size_t min_bytes,
                        const char* what);

// Who the calling thread is, as the owner word of a lock records it: never 0, unique among the
// live threads of every process (its thread id is part of it), and new after fork, so that a
// child never passes for the parent's thread that forked it.
std::uint64_t caller_identity() noexcept;

}  // namespace mproc::detail
