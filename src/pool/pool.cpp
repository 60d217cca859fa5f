#include "mproc/pool.hpp"

#include <algorithm>

namespace mproc {

namespace detail {

std::size_t default_chunksize(std::size_t tasks, std::size_t workers) noexcept {
    const std::size_t chunks = 4 * std::max<std::size_t>(workers, 1);
    return std::clamp<std::size_t>((tasks + chunks - 1) / chunks, 1, max_default_chunk);
}

}  // namespace detail

Pool::Pool() : Pool(PoolOptions{}) {}

Pool::Pool(std::size_t processes) : Pool(PoolOptions{.processes = processes}) {}

Pool::Pool(PoolOptions options) : core_(std::make_shared<detail::PoolCore>(options)) {}

Pool::~Pool() {
    if (!core_) return;
    core_->close();
    core_->join();
}

Pool::Pool(Pool&&) noexcept = default;

Pool& Pool::operator=(Pool&& other) noexcept {
    if (this != &other) {
        if (core_) {
            core_->close();
            core_->join();
        }
        core_ = std::move(other.core_);
    }
    return *this;
}

}  // namespace mproc
