#include "mproc/pool.hpp"

#include <algorithm>
#include <limits>

namespace mproc {

namespace detail {

std::size_t default_chunksize(std::size_t tasks, std::size_t workers) noexcept {
    const std::size_t chunks = 4 * std::max<std::size_t>(workers, 1);
    return std::clamp<std::size_t>((tasks + chunks - 1) / chunks, 1, max_default_chunk);
}

StreamWindow stream_window(std::size_t buffersize, std::size_t chunksize, bool batched,
                           std::size_t workers) noexcept {
    const std::size_t chunks = stream_chunks_per_worker * std::max<std::size_t>(workers, 1);
    std::size_t tasks = buffersize;
    if (tasks == 0) {
        tasks = chunksize > std::numeric_limits<std::size_t>::max() / chunks
                    ? std::numeric_limits<std::size_t>::max()
                    : chunks * chunksize;
        if (batched) {
            tasks =
                std::max(tasks, stream_batch_tasks_per_worker * std::max<std::size_t>(workers, 1));
        }
    }
    // A batch is read a quarter of the window at a time: a frame of many tasks, while the
    // workers still have three quarters to run. Other chunks are read whole, one at least.
    if (batched) return {tasks, std::max<std::size_t>(tasks / 4, 1)};
    return {std::max(tasks, chunksize), chunksize};
}

StreamFeed::StreamFeed(std::shared_ptr<PoolCore> core, std::shared_ptr<AbandonableJob> job,
                       StreamWindow window, bool batched)
    : core_(std::move(core)), job_(std::move(job)), window_(window), batched_(batched) {
    core_->open_lazy_input();
}

bool StreamFeed::has_element(std::size_t position) {
    read_ahead(position);
    return position < read_;
}

void StreamFeed::read_ahead(std::size_t consumed) {
    if (!input_open_) return;
    const std::size_t room = window_.tasks - (read_ - consumed);
    if (room < window_.step) return;
    std::vector<Frame> frames;
    const Read read = read_inputs(room - room % window_.step, pool_ended_ ? nullptr : &frames);
    if (!frames.empty()) {
        try {
            core_->submit(job_, frames, submitted_, batched_, true);
            submitted_ += read.tasks;
        } catch (const StateError&) {
            // Joined or terminated: these inputs and the rest fail as the consumer reads them.
            pool_ended_ = true;
        } catch (...) {
            // A chunk the pool refused (over max_value_bytes): the range ends before it, so that
            // no later input takes its place.
            end_input();
            throw;
        }
    }
    read_ += read.tasks;
    if (read.ended || read.error) end_input();
    if (read.error) std::rethrow_exception(read.error);
}

void StreamFeed::end_input() noexcept {
    if (!std::exchange(input_open_, false)) return;
    core_->end_lazy_input();
}

void StreamFeed::abandon() noexcept {
    end_input();
    // What it has not yielded is cancelled: tasks not begun never run, running ones are
    // stopped (their workers killed and replaced), as AsyncResult::cancel does.
    job_->abandon();
    core_->tasks_cancelled();
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
