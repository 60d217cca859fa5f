#pragma once

// A large frame kept in an anonymous memfd instead of the socket's stream: the sender writes
// the frame into the file's mapping once, the descriptor rides with the frame's header
// (SCM_RIGHTS), and the receiver decodes straight from its own mapping. No byte of the payload
// is copied into or out of a socket, and none lands on either side's heap.
//
// The file holds the whole frame, header first. Its first four bytes (the header's magic) say
// whether a receiver may still read it: the sender writes the magic with the frame, and the
// receiver zeroes it when it lets go of the frame, handing the file back: the sender may then
// write another frame into it (see payload_file_reuse.hpp).

#include <cstddef>
#include <memory>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail {

class PayloadFile {
  public:
    // A new file of `capacity` bytes, mapped read-write, for a frame being written. Throws
    // mproc::Error when the kernel refuses (EMFILE, ENOMEM, ...), having released what it took.
    static std::unique_ptr<PayloadFile> create(std::size_t capacity);

    // Takes a received descriptor that claims to hold a frame of `expected_bytes` bytes and maps
    // it read-only. Throws SerializationError, fd closed, unless it is a memfd of exactly that
    // size whose size is sealed: without the seal the sender could shrink it under the mapping,
    // and reading the lost pages would kill the receiver with SIGBUS.
    static std::shared_ptr<const PayloadFile> adopt(UniqueFd fd, std::size_t expected_bytes);

    ~PayloadFile();
    PayloadFile(const PayloadFile&) = delete;
    PayloadFile& operator=(const PayloadFile&) = delete;

    std::byte* data() noexcept { return data_; }
    const std::byte* data() const noexcept { return data_; }
    // The bytes mapped: the capacity while the frame is written, its size once sealed.
    std::size_t size() const noexcept { return size_; }
    const UniqueFd& fd() const noexcept { return fd_; }

    // Makes the file and its mapping `capacity` bytes long, keeping what was written. The pages
    // stay where they are; only the mapping may move, so data() may change.
    void grow(std::size_t capacity);
    // Cuts the file to the frame's `bytes` and seals its size, so that it can be sent.
    void seal(std::size_t bytes);

    // Whether every receiver of the frame in it has let go of it (or it was never sent).
    bool handed_back() const noexcept;
    // Tells the sender that this process will not read the file any more.
    void hand_back() const noexcept;

  private:
    friend class PayloadFileReuse;

    PayloadFile(UniqueFd fd, std::size_t size) noexcept;
    void map(int protection);

    UniqueFd fd_;
    std::size_t size_;
    std::byte* data_ = nullptr;
    int owner_pid_ = 0;      // the process that made or received it; not a child forked since
    bool received_ = false;  // adopted from a sender, to whom it is handed back
    // Counted as held by a pool: bookkeeping of PayloadFileReuse, under its lock, on a file that
    // frames share as const.
    mutable bool lent_ = false;
};

}  // namespace mproc::detail
