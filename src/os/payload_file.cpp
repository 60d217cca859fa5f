#include "mproc/detail/payload_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>

#include "mproc/errors.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

// The name shows in /proc/<pid>/maps and /proc/<pid>/fd, so a user (and the tests) can tell a
// frame's file from a SharedArray's block.
constexpr const char* memfd_name = "mproc-frame";

void truncate(int fd, std::size_t bytes) {
    while (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
        if (errno != EINTR) throw_system_error("ftruncate of a frame's file");
    }
}

SerializationError refused(const std::string& why) {
    return SerializationError("mproc: a frame's payload file " + why + "; the frame is refused");
}

}  // namespace

std::unique_ptr<PayloadFile> PayloadFile::create(std::size_t capacity) {
    UniqueFd fd(::memfd_create(memfd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        throw_system_error("memfd_create for a frame of " + std::to_string(capacity) + " bytes");
    // The pages read as zero and are allocated only when written.
    truncate(fd.get(), capacity);
    std::unique_ptr<PayloadFile> file(new PayloadFile(std::move(fd), capacity));
    file->owner_pid_ = ::getpid();
    file->map(PROT_READ | PROT_WRITE);
    return file;
}

std::shared_ptr<const PayloadFile> PayloadFile::adopt(UniqueFd fd, std::size_t expected_bytes) {
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) throw_system_error("fstat of a frame's payload file");
    // Only a memfd (among regular files) answers F_GET_SEALS.
    const int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (!S_ISREG(status.st_mode) || seals < 0) throw refused("is not a memfd");
    if ((seals & F_SEAL_SHRINK) == 0) throw refused("does not have its size sealed");
    if (static_cast<std::size_t>(status.st_size) != expected_bytes) {
        throw refused("holds " + std::to_string(status.st_size) + " bytes but its header claims " +
                      std::to_string(expected_bytes));
    }
    std::shared_ptr<PayloadFile> file(new PayloadFile(std::move(fd), expected_bytes));
    file->map(PROT_READ);
    file->received_ = true;
    file->owner_pid_ = ::getpid();
    return file;
}

PayloadFile::PayloadFile(UniqueFd fd, std::size_t size) noexcept
    : fd_(std::move(fd)), size_(size) {}

PayloadFile::~PayloadFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
    // A forked child's copy of a received frame is not the reader the sender waits for.
    if (received_ && owner_pid_ == ::getpid()) hand_back();
}

bool PayloadFile::handed_back() const noexcept {
    return std::atomic_ref(*reinterpret_cast<std::uint32_t*>(data_))
               .load(std::memory_order_acquire) == 0;
}

void PayloadFile::hand_back() const noexcept {
    // Through the descriptor, which a received file's read-only mapping cannot write; the
    // system call orders every read of the frame before it. A file that cannot be written (a
    // forger's) is simply never handed back.
    const std::uint32_t zero = 0;
    [[maybe_unused]] const ssize_t written = ::pwrite(fd_.get(), &zero, sizeof zero, 0);
}

void PayloadFile::map(int protection) {
    // Not MAP_POPULATE: a reader's faults map 16 pages each (fault-around), which measured
    // faster than populating page by page.
    void* address = ::mmap(nullptr, size_, protection, MAP_SHARED, fd_.get(), 0);
    if (address == MAP_FAILED) throw_system_error("mmap of a frame's payload file");
    data_ = static_cast<std::byte*>(address);
}

void PayloadFile::grow(std::size_t capacity) {
    truncate(fd_.get(), capacity);
    void* moved = ::mremap(data_, size_, capacity, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) throw_system_error("mremap of a frame's payload file");
    data_ = static_cast<std::byte*>(moved);
    size_ = capacity;
}

void PayloadFile::seal(std::size_t bytes) {
    // The mapping shrinks first, so that no page of it lies past the end of the file.
    void* kept = ::mremap(data_, size_, bytes, 0);
    if (kept == MAP_FAILED) throw_system_error("mremap of a frame's payload file");
    size_ = bytes;
    truncate(fd_.get(), bytes);
    if (::fcntl(fd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        throw_system_error("sealing the size of a frame's payload file");
    }
}

}  // namespace mproc::detail
