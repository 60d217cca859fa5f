#include "os/memory_usage.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

namespace mproc::detail {

namespace {

// The statm descriptor of one process. /proc/self resolves when the file is opened, so a
// descriptor inherited through fork still names the parent: the pid it was opened for says
// whether it is this process's.
struct StatmFile {
    int fd = -1;
    pid_t pid = 0;
    // What the descriptor was opened on. A forked child may have closed its inherited
    // descriptors and reused the number for something of its own, which must not be closed.
    dev_t device = 0;
    ino_t inode = 0;

    StatmFile() = default;
    StatmFile(const StatmFile&) = delete;
    StatmFile& operator=(const StatmFile&) = delete;
    ~StatmFile() {
        if (fd >= 0 && pid == ::getpid()) ::close(fd);
    }
};

bool still_refers_to(const StatmFile& file) {
    struct stat now {};
    return ::fstat(file.fd, &now) == 0 && now.st_dev == file.device && now.st_ino == file.inode;
}

void open_for(StatmFile& file, pid_t pid) {
    if (file.fd >= 0 && still_refers_to(file)) ::close(file.fd);
    file.fd = -1;
    file.pid = pid;
    const std::string path = "/proc/" + std::to_string(pid) + "/statm";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat opened {};
    if (::fstat(fd, &opened) != 0) {
        ::close(fd);
        return;
    }
    file.fd = fd;
    file.device = opened.st_dev;
    file.inode = opened.st_ino;
}

// The resident pages: the second number of "size resident shared text lib data dt".
std::size_t resident_pages(const char* text, std::size_t length) {
    const char* const end = text + length;
    const char* word = text;
    while (word != end && *word != ' ') ++word;
    if (word == end) return 0;
    ++word;
    std::size_t pages = 0;
    const auto [after, error] = std::from_chars(word, end, pages);
    if (error != std::errc{} || after == word) return 0;
    return pages;
}

}  // namespace

std::size_t resident_bytes() {
    // One descriptor per thread rather than one behind a lock: a lock held by another thread
    // when the process forks would stay locked for ever in the child.
    thread_local StatmFile file;
    static const auto page_size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

    const pid_t pid = ::getpid();
    if (file.pid != pid) open_for(file, pid);
    if (file.fd < 0) return 0;
    char text[128];
    ssize_t length = 0;
    do {
        length = ::pread(file.fd, text, sizeof text, 0);
    } while (length < 0 && errno == EINTR);
    if (length <= 0) return 0;
    return resident_pages(text, static_cast<std::size_t>(length)) * page_size;
}

}  // namespace mproc::detail
