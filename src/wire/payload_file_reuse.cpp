#include "wire/payload_file_reuse.hpp"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

namespace mproc::detail {

class PayloadFileReuse {
  public:
    static PayloadFileReuse& instance() {
        // Never destroyed: frames released by static destructors still find it.
        static PayloadFileReuse* reuse = new PayloadFileReuse;
        return *reuse;
    }

    std::unique_ptr<PayloadFile> take(std::size_t bytes) {
        std::lock_guard lock(mutex_);
        // The smallest that fits: a frame fills a file only by having its size.
        auto best = idle_.end();
        for (auto it = idle_.begin(); it != idle_.end(); ++it) {
            const std::size_t size = (*it)->size();
            if (size >= bytes && (best == idle_.end() || size < (*best)->size()) &&
                (*it)->handed_back()) {
                best = it;
            }
        }
        if (best == idle_.end()) return nullptr;
        std::unique_ptr<PayloadFile> file = std::move(*best);
        idle_.erase(best);
        return file;
    }

    void keep(std::unique_ptr<PayloadFile> file) {
        std::unique_ptr<PayloadFile> dropped;  // freed after the lock
        std::lock_guard lock(mutex_);
        // A file made before a fork is the parent's, which may write it at any time.
        if (file->owner_pid_ != ::getpid()) {
            dropped = std::move(file);
            return;
        }
        idle_.push_back(std::move(file));
        // The oldest first: a file whose receiver died is never handed back.
        if (idle_.size() > max_idle_files) {
            dropped = std::move(idle_.front());
            idle_.erase(idle_.begin());
        }
    }

    void release(const PayloadFile* file) {
        std::unique_ptr<PayloadFile> owned(const_cast<PayloadFile*>(file));
        bool lent;
        {
            std::lock_guard lock(mutex_);
            // A forked child counted none of what it inherited.
            lent = std::exchange(owned->lent_, false) && owned->owner_pid_ == ::getpid();
            if (lent) --lent_files_;
        }
        if (!lent) return;  // nobody said when its receiver is done: freed now
        lent_returned_.notify_all();
        keep(std::move(owned));
    }

    bool lend(const PayloadFile& file) {
        std::lock_guard lock(mutex_);
        // Only a file this process made goes through release(), which counts it back.
        if (file.owner_pid_ != ::getpid() || file.received_) return false;
        if (!std::exchange(file.lent_, true)) ++lent_files_;
        return true;
    }

    void wait(std::size_t files) {
        std::unique_lock lock(mutex_);
        lent_returned_.wait_for(lock, std::chrono::seconds(1),
                                [&] { return lent_files_ <= files; });
    }

    void drop_idle() noexcept {
        std::vector<std::unique_ptr<PayloadFile>> dropped;
        std::lock_guard lock(mutex_);
        dropped.swap(idle_);
    }

  private:
    PayloadFileReuse() {
        // A forked child starts with no idle file and nothing lent: what it inherited is the
        // parent's. The lock is held across fork, so the child's copy is consistent.
        ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                         [] {
                             PayloadFileReuse& reuse = instance();
                             reuse.idle_.clear();
                             reuse.lent_files_ = 0;
                             reuse.mutex_.unlock();
                         });
    }

    // A few per worker of a pool or two, in flight or on their way back.
    static constexpr std::size_t max_idle_files = 8;

    std::mutex mutex_;
    std::condition_variable lent_returned_;
    std::vector<std::unique_ptr<PayloadFile>> idle_;
    std::size_t lent_files_ = 0;
};

std::unique_ptr<PayloadFile> reuse_payload_file(std::size_t bytes) {
    return PayloadFileReuse::instance().take(bytes);
}

void return_payload_file(std::unique_ptr<PayloadFile> file) {
    file->hand_back();  // never sent: no receiver will
    PayloadFileReuse::instance().keep(std::move(file));
}

std::shared_ptr<const PayloadFile> share_payload_file(std::unique_ptr<PayloadFile> file) {
    return std::shared_ptr<const PayloadFile>(
        file.release(), [](const PayloadFile* f) { PayloadFileReuse::instance().release(f); });
}

bool lend_payload_file(const Frame& frame) {
    return frame.file && PayloadFileReuse::instance().lend(*frame.file);
}

void wait_for_lent_payload_files(std::size_t files) {
    PayloadFileReuse::instance().wait(files);
}

void drop_idle_payload_files() noexcept {
    PayloadFileReuse::instance().drop_idle();
}

}  // namespace mproc::detail
