#include "manager/server_life.hpp"

#include <pthread.h>

#include <cerrno>
#include <cstdint>
#include <new>

#include "mproc/detail/shared_region.hpp"
#include "mproc/errors.hpp"
#include "os/robust_mutex.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t life_magic = 0x6d70726f634c6966;  // "mprocLif"

struct LifeBlock {
    std::uint64_t magic;
    pthread_mutex_t mutex;
};

LifeBlock& life_block(const SharedRegion& region) {
    return *reinterpret_cast<LifeBlock*>(region.data());
}

}  // namespace

ServerLife::ServerLife(std::shared_ptr<SharedRegion> region, bool held) noexcept
    : region_(std::move(region)), held_(held) {}

std::shared_ptr<ServerLife> ServerLife::hold() {
    auto region = SharedRegion::create(sizeof(LifeBlock));
    LifeBlock& block = *new (region->data()) LifeBlock{};
    init_robust_mutex(block.mutex);
    lock_robust(block.mutex);
    block.magic = life_magic;
    return std::shared_ptr<ServerLife>(new ServerLife(std::move(region), true));
}

std::shared_ptr<ServerLife> ServerLife::watch(UniqueFd fd) {
    auto region = SharedRegion::adopt(std::move(fd));
    if (region->size() != sizeof(LifeBlock) || life_block(*region).magic != life_magic) {
        throw SerializationError("mproc: the manager sent a descriptor that is not its life's");
    }
    return std::shared_ptr<ServerLife>(new ServerLife(std::move(region), false));
}

ServerLife::~ServerLife() {
    // Unlocked before it is unmapped: the kernel must never find a mapping that is gone on
    // this thread's robust list.
    if (held_) unlock_robust(life_block(*region_).mutex);
}

bool ServerLife::server_running() noexcept {
    pthread_mutex_t& mutex = life_block(*region_).mutex;
    const int result = pthread_mutex_trylock(&mutex);
    if (result == EBUSY) return true;
    // Acquired: its holder has ended. It is unlocked without being made consistent, so that
    // every later try says the same (ENOTRECOVERABLE).
    if (result == 0 || result == EOWNERDEAD) pthread_mutex_unlock(&mutex);
    return false;
}

const UniqueFd& ServerLife::fd() const noexcept {
    return region_->fd();
}

}  // namespace mproc::detail
