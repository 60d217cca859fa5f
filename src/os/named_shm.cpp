// Named POSIX shared memory (shm_open): the one shared object in mproc that has a name in a file
// system, /dev/shm, and so the one a user must unlink.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cerrno>
#include <limits>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/shared_memory.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

// shm_open's limit: the name is one file name under /dev/shm.
constexpr std::size_t max_name_bytes = 255;

std::string quoted(const std::string& name) {
    return "'" + name + "'";
}

// The name without its leading '/'. Throws mproc::Error for a name shm_open would refuse or
// would not treat as one object directly under /dev/shm.
std::string normalize_name(std::string name) {
    const std::string given = name;
    if (!name.empty() && name.front() == '/') name.erase(0, 1);
    if (name.empty() || name == "." || name == "..") {
        throw Error("mproc: " + quoted(given) +
                    " is not a name for shared memory: give a name such as \"my-block\"");
    }
    if (name.find('/') != std::string::npos) {
        throw Error("mproc: the shared memory name " + quoted(given) +
                    " holds a '/' other than a leading one; a name is one file name in /dev/shm");
    }
    if (name.find('\0') != std::string::npos) {
        throw Error("mproc: the shared memory name " + quoted(given) + " holds a NUL byte");
    }
    if (name.size() > max_name_bytes) {
        throw Error("mproc: the shared memory name " + quoted(given) + " is longer than " +
                    std::to_string(max_name_bytes) + " bytes");
    }
    return name;
}

std::string path_of(const std::string& name) {
    return "/" + name;
}

std::string describe(const std::string& name) {
    return "shared memory " + quoted(name);
}

// RAM plus swap, or 0 when the kernel will not say.
unsigned long long machine_memory() noexcept {
    struct sysinfo info {};
    if (::sysinfo(&info) != 0) return 0;
    return (static_cast<unsigned long long>(info.totalram) + info.totalswap) * info.mem_unit;
}

// Refuses a size no memory can hold, before any name is made.
void check_size(const std::string& name, std::size_t bytes) {
    const std::string what = describe(name) + " of " + std::to_string(bytes) + " bytes";
    if (bytes == 0) throw Error("mproc: " + describe(name) + " needs a size of at least 1 byte");
    if (bytes > static_cast<unsigned long long>(std::numeric_limits<off_t>::max())) {
        throw Error("mproc: " + what + " is larger than a file can be");
    }
    const unsigned long long memory = machine_memory();
    if (memory != 0 && bytes > memory) {
        throw Error("mproc: " + what + " is more than this machine's memory and swap (" +
                    std::to_string(memory) + " bytes); ask for less");
    }
}

std::string no_room(const std::string& name, std::size_t bytes, const std::string& why) {
    return "mproc: " + describe(name) + " of " + std::to_string(bytes) +
           " bytes does not fit in /dev/shm" + why +
           "; ask for less, unlink what is not needed, or enlarge /dev/shm (a container's is "
           "often 64 MiB: docker --shm-size)";
}

// Refuses, before any page is reserved, a size larger than the file system of fd has free.
void check_room(int fd, const std::string& name, std::size_t bytes) {
    struct statvfs room {};
    if (::fstatvfs(fd, &room) != 0 || room.f_blocks == 0) return;  // no limit known
    const auto free = static_cast<unsigned long long>(room.f_bavail) * room.f_frsize;
    if (bytes > free) {
        throw Error(no_room(name, bytes, ", which has " + std::to_string(free) + " bytes free"));
    }
}

// Removes a name this process created, unless release() says the creation succeeded.
class CreatedName {
  public:
    explicit CreatedName(std::string path) : path_(std::move(path)) {}
    ~CreatedName() {
        if (!released_) ::shm_unlink(path_.c_str());
    }
    CreatedName(const CreatedName&) = delete;
    CreatedName& operator=(const CreatedName&) = delete;
    void release() noexcept { released_ = true; }

  private:
    std::string path_;
    bool released_ = false;
};

}  // namespace

std::shared_ptr<NamedRegion> NamedRegion::create(std::string name, std::size_t bytes) {
    name = normalize_name(std::move(name));
    check_size(name, bytes);
    const std::string path = path_of(name);
    UniqueFd fd(::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (!fd) {
        if (errno == EEXIST) {
            throw Error("mproc: " + describe(name) + " already exists (/dev/shm/" + name +
                        "); attach to it, pick another name, or unlink it if a program that "
                        "ended left it behind");
        }
        throw_system_error("shm_open creating " + describe(name));
    }
    // From here on, a failure removes the name again: it is this call's, made with O_EXCL.
    CreatedName created(path);
    check_room(fd.get(), name, bytes);
    while (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
        if (errno != EINTR) throw_system_error("ftruncate of " + describe(name));
    }
    // tmpfs hands out pages when they are first touched, and one it has no room for then kills
    // the toucher with SIGBUS. Reserving them now turns that into an error the creator sees.
    int error;
    while ((error = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes))) == EINTR) {
    }
    if (error == ENOSPC) throw Error(no_room(name, bytes, ""));
    if (error != 0) throw_system_error("reserving the memory of " + describe(name), error);
    std::shared_ptr<NamedRegion> region(new NamedRegion(std::move(fd), std::move(name), bytes));
    region->map();
    created.release();
    return region;
}

std::shared_ptr<NamedRegion> NamedRegion::attach(std::string name) {
    name = normalize_name(std::move(name));
    UniqueFd fd(::shm_open(path_of(name).c_str(), O_RDWR | O_CLOEXEC, 0));
    if (!fd) {
        if (errno == ENOENT) {
            throw Error("mproc: no shared memory named " + quoted(name) + " (nothing at /dev/shm/" +
                        name + "); create it first");
        }
        throw_system_error("shm_open attaching to " + describe(name));
    }
    return adopt(std::move(fd), std::move(name));
}

std::shared_ptr<NamedRegion> NamedRegion::adopt(UniqueFd fd, std::string name) {
    name = normalize_name(std::move(name));
    if (!fd) throw Error("mproc: " + describe(name) + " arrived without a descriptor");
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) throw_system_error("fstat of " + describe(name));
    if (!S_ISREG(status.st_mode)) {
        throw Error("mproc: the descriptor for " + describe(name) + " is not shared memory");
    }
    // mmap refuses a length of 0; an empty object is one whose creator has not sized it yet.
    if (status.st_size <= 0) {
        throw Error("mproc: " + describe(name) +
                    " is empty; its creator may not have sized it yet");
    }
    std::shared_ptr<NamedRegion> region(
        new NamedRegion(std::move(fd), std::move(name), static_cast<std::size_t>(status.st_size)));
    region->map();
    return region;
}

NamedRegion::NamedRegion(UniqueFd fd, std::string name, std::size_t size) noexcept
    : fd_(std::move(fd)), name_(std::move(name)), size_(size) {}

NamedRegion::~NamedRegion() {
    if (data_ != nullptr) ::munmap(data_, size_);
}

void NamedRegion::map() {
    void* address = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (address == MAP_FAILED) throw_system_error("mmap of " + describe(name_));
    data_ = static_cast<std::byte*>(address);
}

void NamedRegion::unlink() const {
    const std::string path = path_of(name_);
    // The name may have been removed and given to new memory since this one was opened; that
    // memory is someone else's, so the name is removed only while it leads to this object.
    UniqueFd current(::shm_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0));
    if (!current) {
        if (errno == ENOENT) return;
        throw_system_error("shm_open checking " + describe(name_) + " before unlinking it");
    }
    struct stat mine {};
    struct stat named {};
    if (::fstat(fd_.get(), &mine) != 0 || ::fstat(current.get(), &named) != 0) {
        throw_system_error("fstat of " + describe(name_));
    }
    if (mine.st_dev != named.st_dev || mine.st_ino != named.st_ino) return;
    if (::shm_unlink(path.c_str()) != 0 && errno != ENOENT) {
        throw_system_error("shm_unlink of " + describe(name_));
    }
}

}  // namespace mproc::detail

namespace mproc {

SharedMemory SharedMemory::create(std::string name, std::size_t bytes) {
    return SharedMemory(detail::NamedRegion::create(std::move(name), bytes));
}

SharedMemory SharedMemory::attach(std::string name) {
    return SharedMemory(detail::NamedRegion::attach(std::move(name)));
}

const std::string& SharedMemory::name() const noexcept {
    static const std::string none;
    return region_ ? region_->name() : none;
}

void SharedMemory::unlink() const {
    if (!region_) throw StateError("mproc: an empty SharedMemory names nothing to unlink");
    region_->unlink();
}

}  // namespace mproc
