#pragma once

#include <utility>

namespace mproc::detail {

// Owns one file descriptor and closes it when it goes away, so no error path can leak one.
class UniqueFd {
  public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    // Closes the descriptor held, if any, and holds fd instead.
    void reset(int fd = -1) noexcept;
    // A new descriptor for the same open file (close-on-exec); throws mproc::Error on failure.
    UniqueFd duplicate() const;

  private:
    int fd_ = -1;
};

}  // namespace mproc::detail
