// Shared blocks of memory as anonymous memfds: no name in any file system, so nothing to unlink
// and nothing left behind in /dev/shm when a process dies; the kernel frees the block when its
// last descriptor and mapping are gone.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cerrno>
#include <limits>
#include <string>

#include "mproc/detail/shared_region.hpp"
#include "mproc/errors.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

// The name shows in /proc/<pid>/maps and /proc/<pid>/fd, so a user can tell what a mapping is.
constexpr const char* memfd_name = "mproc-shared-array";

// Sealing the size lets a receiver trust the size it reads: no holder can shrink the block under
// another's mapping, which would make touching the lost pages fault with SIGBUS.
constexpr int size_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

std::string describe(std::size_t bytes) {
    return "a shared block of " + std::to_string(bytes) + " bytes";
}

// RAM plus swap, or 0 when the kernel will not say. A memfd's pages are allocated when first
// touched, so a block larger than this would be accepted here and end in an out-of-memory kill
// later; refusing it now gives the user an error they can act on instead.
unsigned long long machine_memory() noexcept {
    struct sysinfo info {};
    if (::sysinfo(&info) != 0) return 0;
    return (static_cast<unsigned long long>(info.totalram) + info.totalswap) * info.mem_unit;
}

void check_size(std::size_t bytes) {
    if (bytes > static_cast<unsigned long long>(std::numeric_limits<off_t>::max())) {
        throw Error("mproc: " + describe(bytes) + " is larger than a file can be");
    }
    unsigned long long memory = machine_memory();
    if (memory != 0 && bytes > memory) {
        throw Error("mproc: " + describe(bytes) + " is more than this machine's memory and swap (" +
                    std::to_string(memory) + " bytes); ask for less");
    }
}

}  // namespace

std::shared_ptr<SharedRegion> SharedRegion::create(std::size_t bytes) {
    check_size(bytes);
    UniqueFd fd(::memfd_create(memfd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) throw_system_error("memfd_create for " + describe(bytes));
    // ftruncate gives zeroes: the pages of a memfd read as zero until written.
    while (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
        if (errno != EINTR) throw_system_error("ftruncate of " + describe(bytes));
    }
    if (::fcntl(fd.get(), F_ADD_SEALS, size_seals) != 0) {
        throw_system_error("sealing the size of " + describe(bytes));
    }
    std::shared_ptr<SharedRegion> region(new SharedRegion(std::move(fd), bytes));
    region->map();
    return region;
}

std::shared_ptr<SharedRegion> SharedRegion::adopt(UniqueFd fd) {
    if (!fd) throw Error("mproc: cannot adopt a shared block from an empty descriptor");
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) throw_system_error("fstat of a received shared block");
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (!S_ISREG(status.st_mode) || seals < 0) {
        throw Error("mproc: a received descriptor is not a shared block (a memfd)");
    }
    // Without the seal, the sender could shrink the block later and this mapping would fault.
    if ((seals & F_SEAL_SHRINK) == 0) {
        throw Error("mproc: a received shared block does not have its size sealed");
    }
    if (status.st_size < 0) throw Error("mproc: a received shared block has a negative size");
    std::shared_ptr<SharedRegion> region(
        new SharedRegion(std::move(fd), static_cast<std::size_t>(status.st_size)));
    region->map();
    return region;
}

SharedRegion::SharedRegion(UniqueFd fd, std::size_t size) noexcept
    : fd_(std::move(fd)), size_(size) {}

SharedRegion::~SharedRegion() {
    if (data_ != nullptr) ::munmap(data_, size_);
}

void SharedRegion::map() {
    // mmap rejects a length of 0, and an empty block has nothing to map.
    if (size_ == 0) return;
    void* address = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (address == MAP_FAILED) throw_system_error("mmap of " + describe(size_));
    data_ = static_cast<std::byte*>(address);
}

}  // namespace mproc::detail
