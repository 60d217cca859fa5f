#pragma once

// A manager's dict as a local client works on it: the dict lives in shared memory that the
// server sent this process once (SCM_RIGHTS on the local socket), and every operation is done
// here, under the dict's process-shared lock, without a request. Clients of a server reached
// over TCP get no LocalDict and send requests, which the server runs on the same memory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/wire_archive.hpp"

namespace mproc::detail {

class SharedDict;
class ServerLife;

// One dict, mapped once per process and kept while the process has a proxy of its server.
// Every operation throws mproc::Error when the server has ended (as a request would), and
// mproc::Error when the dict cannot grow (no memory).
class LocalDict {
  public:
    LocalDict(std::shared_ptr<SharedDict> dict, std::shared_ptr<ServerLife> life,
              std::uint64_t signature) noexcept;
    ~LocalDict();
    LocalDict(const LocalDict&) = delete;
    LocalDict& operator=(const LocalDict&) = delete;

    std::uint64_t signature() const noexcept { return signature_; }

    // Keys and values are their encodings, as a request would carry them.
    void set(std::span<const std::byte> key, std::span<const std::byte> value);
    // Appends the value of key to out; false when key is absent. key may lie in out: it is
    // read before out grows.
    bool get(std::span<const std::byte> key, std::vector<std::byte>& out);
    bool contains(std::span<const std::byte> key);
    bool erase(std::span<const std::byte> key);
    std::uint64_t size();
    void clear();
    // Appends the encoding of the entries' vector (keys and values), of keys or of values.
    void sequence(bool keys, bool values, std::vector<std::byte>& out);
    // Runs entry (an update entry, as the server would) on the current value of key, under the
    // dict's lock, and stores the value it encodes into result, which it also appends there.
    // RemoteError when the function throws, with the entry unchanged; also when the function
    // uses this same dict (it would wait for itself), holding the StateError it got.
    void update(std::span<const std::byte> key, UpdateEntryFn entry, std::uint64_t function,
                std::span<const std::byte> arguments, std::vector<std::byte>& result);

  private:
    void require_server();

    std::shared_ptr<SharedDict> dict_;
    std::shared_ptr<ServerLife> life_;
    std::uint64_t signature_;
};

// The dict `id` of endpoint's server, for a proxy of this type signature: nullptr when the
// server is not on this machine (TCP). The first call in a process asks the server for the
// dict's memory (one round trip); later ones find it in the endpoint. ContainerTypeError when
// the dict holds other types; mproc::Error when the server has ended or cannot be reached.
LocalDict* local_dict(ManagerEndpoint& endpoint, std::uint64_t id, std::uint64_t signature);

// A buffer for a dict operation's encoded key and value, reused by each thread so that an
// operation allocates nothing once the thread has made one.
class ScratchBytes {
  public:
    ScratchBytes();
    ~ScratchBytes();
    ScratchBytes(const ScratchBytes&) = delete;
    ScratchBytes& operator=(const ScratchBytes&) = delete;

    std::vector<std::byte>& bytes() noexcept { return *bytes_; }
    // Appends the encoding of value, and returns where it starts.
    template <class T>
    std::size_t add(const T& value) {
        const std::size_t at = bytes_->size();
        encode(*bytes_, value);
        return at;
    }
    std::span<const std::byte> span(std::size_t from, std::size_t to) const noexcept {
        return std::span<const std::byte>(*bytes_).subspan(from, to - from);
    }
    std::span<const std::byte> span_from(std::size_t from) const noexcept {
        return std::span<const std::byte>(*bytes_).subspan(from);
    }

  private:
    std::unique_ptr<std::vector<std::byte>> bytes_;
};

}  // namespace mproc::detail
