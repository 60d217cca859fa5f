#include "mproc/detail/unique_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "os/system_error.hpp"

namespace mproc::detail {

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

UniqueFd UniqueFd::duplicate() const {
    int copy = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) throw_system_error("dup");
    return UniqueFd(copy);
}

}  // namespace mproc::detail
