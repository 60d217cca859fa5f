#include "os/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "os/system_error.hpp"

namespace mproc::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                const Deadline& deadline) {
    timespec relative{};
    timespec* timeout = nullptr;
    if (auto left = deadline.remaining()) {
        if (left->count() == 0) return false;
        relative.tv_sec = static_cast<time_t>(left->count() / 1'000'000'000);
        relative.tv_nsec = static_cast<long>(left->count() % 1'000'000'000);
        timeout = &relative;
    }
    // Not FUTEX_PRIVATE_FLAG: the word lives in memory that other processes map.
    const long result = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT,
                                  expected, timeout, nullptr, 0);
    if (result == 0) return true;
    if (errno == ETIMEDOUT) return false;
    if (errno == EAGAIN || errno == EINTR) return true;
    throw_system_error("futex wait");
}

void futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count, nullptr,
              nullptr, 0);
}

}  // namespace mproc::detail
