#pragma once

// A manager's dict in shared memory: one growable memfd that the server creates and that every
// local client maps, so that a dict operation is a few memory accesses under a process-shared
// lock instead of a round trip to the server. The server runs its TCP clients' requests on the
// same memory with the same code, so there is one implementation of the dict.
//
// Keys and values are the bytes the clients encoded; the table compares keys as bytes and
// never decodes anything. Entries keep their insertion order, as a Python dict does.
//
// Crash safety: a process may be killed at any instruction while it holds the lock. Every
// change writes its new bytes where no reader looks yet and makes them visible with one final
// store (an entry's offset, the count of appended entries, the current block's offset), so the
// next holder, told by the robust mutex that the previous one died, only has to rebuild the
// hash index and the live count from the entry list (repair). Overwritten and erased entries
// are garbage that the next rebuild, which also grows the table, leaves behind; the memory of
// the block it replaces is given back to the kernel (a hole punched in the memfd).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

class SharedDict {
  public:
    // A new empty dict in a new memfd, for a container of this type signature. mproc::Error
    // when the kernel refuses the memory.
    static std::shared_ptr<SharedDict> create(std::uint64_t signature);
    // Maps the dict that fd holds (sent by the server). SerializationError when fd is not a
    // dict's memfd, or holds a dict of another type signature; mproc::Error when it cannot be
    // mapped.
    static std::shared_ptr<SharedDict> adopt(UniqueFd fd, std::uint64_t signature);

    // Unmaps the dict and closes the descriptor; the memory lives on in the other holders.
    ~SharedDict();
    SharedDict(const SharedDict&) = delete;
    SharedDict& operator=(const SharedDict&) = delete;

    // The memfd, for the server to send to a local client.
    const UniqueFd& fd() const noexcept;

    class Access;

  private:
    struct Impl;
    explicit SharedDict(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

// The dict's lock, held for a scope; every operation goes through one. Taking it repairs the
// dict when its previous holder died, and maps what another process grew. Spans returned point
// into the shared memory and are valid until the next change through this Access (or its end).
class SharedDict::Access {
  public:
    // Waits for the lock. StateError when this thread already holds it (an update function
    // that uses its own dict); mproc::Error when the mapping cannot follow the dict's growth.
    // SerializationError, from here or from any operation, when the shared memory holds
    // offsets or lengths that no holder wrote (corrupt): the dict stays unusable, but no
    // process faults on it.
    explicit Access(SharedDict& dict);
    ~Access();
    Access(const Access&) = delete;
    Access& operator=(const Access&) = delete;

    // The value of key, or nullopt.
    std::optional<std::span<const std::byte>> find(std::span<const std::byte> key) const;
    // d[key] = value; an existing key keeps its place in the order. mproc::Error when the dict
    // cannot grow (no memory), with the dict as it was.
    void set(std::span<const std::byte> key, std::span<const std::byte> value);
    // Removes key; false when it was absent.
    bool erase(std::span<const std::byte> key);
    std::uint64_t size() const;
    void clear();
    // Appends the encoding of the vector of entries (keys and values), of keys, or of values,
    // in insertion order: the count, then the stored bytes laid end to end.
    void append_sequence(std::vector<std::byte>& out, bool keys, bool values) const;

  private:
    Impl& impl_;
};

}  // namespace mproc::detail
