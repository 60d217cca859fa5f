#pragma once

// Pool: a set of worker processes that run tasks, as Python's multiprocessing.Pool does, and a
// pool that survives its workers: one that dies or runs past task_timeout fails only the task
// it held, and a new worker takes its place.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/async_result.hpp"
#include "mproc/callable.hpp"
#include "mproc/detail/block_codec.hpp"
#include "mproc/detail/jobs.hpp"
#include "mproc/detail/pool_core.hpp"
#include "mproc/detail/task_codec.hpp"
#include "mproc/start_method.hpp"

namespace mproc {

struct PoolOptions {
    // Worker processes; 0 means process_cpu_count().
    std::size_t processes = 0;
    // Runs once in each new worker before its first task: mproc::bind(init_fn, args...). If it
    // throws, the pool cannot work: every task fails with that error as a RemoteError.
    std::optional<BoundCall> initializer = std::nullopt;
    // A worker is replaced after it has run this many tasks (0: never), to give back the
    // memory a task leaked. It counts each apply_async call and each task of chunksize 1; a
    // larger chunk is never split, so a worker may run up to a chunk more.
    std::size_t maxtasksperchild = 0;
    // fork | spawn | forkserver; unset means get_start_method().
    std::optional<StartMethod> start_method = std::nullopt;
    // A task running longer is failed with TimeoutError and its worker killed and replaced.
    std::optional<std::chrono::milliseconds> task_timeout = std::nullopt;
    // The largest frame between the pool and a worker, in bytes: a task's arguments (a chunk's,
    // for a map) or a result. 0 means the machine's memory (mproc::memory().total). A call whose
    // arguments are over it throws SerializationError; a task whose result is over it fails
    // with that error (a RemoteError of type mproc::SerializationError). Each end checks a
    // frame's size against it before it maps or allocates anything for the frame. Under 1 MiB it
    // is refused with StateError, so that errors and batches of small tasks still fit.
    std::uint64_t max_value_bytes = 0;
};

// The tasks of an imap or imap_unordered, read as they finish: an input range of R. Reading an
// element whose task failed throws its error; the elements after it can still be read.
template <class R>
class ImapRange {
  public:
    class iterator {
      public:
        using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
        using difference_type = std::ptrdiff_t;

        iterator() = default;
        // The element's value; throws the error of its task.
        value_type operator*() const {
            fetch();
            if constexpr (std::is_void_v<R>) {
                current_->take();
                return {};
            } else {
                return current_->take();
            }
        }
        iterator& operator++() {
            fetch();
            current_.reset();
            ++position_;
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) {
            return it.position_ == it.total_;
        }

      private:
        friend class ImapRange;
        iterator(std::shared_ptr<detail::StreamJob<R>> job, std::size_t total)
            : job_(std::move(job)), total_(total) {}
        void fetch() const {
            if (!current_) current_.emplace(job_->next(position_));
        }

        std::shared_ptr<detail::StreamJob<R>> job_;
        std::size_t total_ = 0;
        std::size_t position_ = 0;
        mutable std::optional<detail::Outcome<R>> current_;
    };

    ImapRange(std::shared_ptr<detail::StreamJob<R>> job, std::size_t total)
        : job_(std::move(job)), total_(total) {}
    // A range is read once: begin() may be called once.
    iterator begin() { return iterator(job_, total_); }
    std::default_sentinel_t end() const noexcept { return {}; }
    std::size_t size() const noexcept { return total_; }

  private:
    std::shared_ptr<detail::StreamJob<R>> job_;
    std::size_t total_;
};

namespace detail {

// The arguments of a starmap task: the elements of a tuple-like input, as they travel.
template <class Tuple, class Indices = std::make_index_sequence<std::tuple_size_v<Tuple>>>
struct star_args;
template <class Tuple, std::size_t... I>
struct star_args<Tuple, std::index_sequence<I...>> {
    using type = std::tuple<wire_arg_t<std::tuple_element_t<I, Tuple>>...>;
};
template <class Tuple>
using star_args_t = typename star_args<std::remove_cvref_t<Tuple>>::type;

// Python's rule: about four chunks per worker, rounded up; but at most max_default_chunk
// tasks, so that a long map of tiny tasks flows in many small frames (they reuse memory and
// overlap encoding with work) rather than a few huge ones.
inline constexpr std::size_t max_default_chunk = 4096;
std::size_t default_chunksize(std::size_t tasks, std::size_t workers) noexcept;

}  // namespace detail

class Pool {
  public:
    // A pool of process_cpu_count() workers, started now with the default start method.
    Pool();
    explicit Pool(std::size_t processes);
    explicit Pool(PoolOptions options);
    // Finishes the work already submitted (close() and join()), unless terminate() was called.
    ~Pool();
    Pool(Pool&&) noexcept;
    Pool& operator=(Pool&&) noexcept;

    std::size_t processes() const noexcept { return core_->processes(); }

    // Every submission below returns once its tasks are encoded and queued; but tasks whose
    // chunk encodes to more than 1 MiB wait there (a second at most) while the pool already
    // holds one such chunk per worker and one more, so that a caller that encodes faster than
    // the workers run does not fill memory with them.

    // f(x) for each x of inputs, in order. Throws the error of the first task (by position)
    // that failed, after all have ended. chunksize 0 picks about four chunks per worker.
    template <class F, std::ranges::input_range Inputs>
    auto map(F f, Inputs&& inputs, std::size_t chunksize = 0) {
        return map_async(f, std::forward<Inputs>(inputs), chunksize).get();
    }
    template <class F, std::ranges::input_range Inputs>
    auto map_async(F f, Inputs&& inputs, std::size_t chunksize = 0) {
        using ArgTuple = std::tuple<detail::wire_arg_t<std::ranges::range_reference_t<Inputs>>>;
        return submit_map<F, ArgTuple>(f, std::forward<Inputs>(inputs), chunksize,
                                       [](const auto& x) { return std::forward_as_tuple(x); });
    }

    // f(a, b, ...) for each tuple-like {a, b, ...} of inputs, in order.
    template <class F, std::ranges::input_range Inputs>
    auto starmap(F f, Inputs&& inputs, std::size_t chunksize = 0) {
        return starmap_async(f, std::forward<Inputs>(inputs), chunksize).get();
    }
    template <class F, std::ranges::input_range Inputs>
    auto starmap_async(F f, Inputs&& inputs, std::size_t chunksize = 0) {
        using ArgTuple = detail::star_args_t<std::ranges::range_reference_t<Inputs>>;
        return submit_map<F, ArgTuple>(
            f, std::forward<Inputs>(inputs), chunksize,
            [](const auto& t) -> const auto& { return t; });
    }

    // f(x) for each x of inputs, read lazily in input order (imap) or as tasks finish
    // (imap_unordered). The inputs are all encoded and submitted now.
    template <class F, std::ranges::input_range Inputs>
    auto imap(F f, Inputs&& inputs, std::size_t chunksize = 1) {
        return submit_stream(f, std::forward<Inputs>(inputs), chunksize, true);
    }
    template <class F, std::ranges::input_range Inputs>
    auto imap_unordered(F f, Inputs&& inputs, std::size_t chunksize = 1) {
        return submit_stream(f, std::forward<Inputs>(inputs), chunksize, false);
    }

    // f(args...) in a worker; apply waits for its value or rethrows its error.
    template <class F, class... Args>
    auto apply(F f, Args&&... args) {
        return apply_async(f, std::forward<Args>(args)...).get();
    }
    template <class F, class... Args>
    auto apply_async(F f, Args&&... args) {
        detail::require_sendable<F>();
        using ArgTuple = std::tuple<detail::wire_arg_t<Args>...>;
        static_assert(detail::callable_with_tuple<F, ArgTuple>,
                      "mproc: the function cannot be called with these arguments");
        using R = result_t<F, ArgTuple>;
        if constexpr (detail::block_layout<F, ArgTuple>) {
            return apply_gathered<F, ArgTuple>(f, std::forward_as_tuple(args...));
        } else {
            detail::TaskEncoder<F, ArgTuple> encoder(f);
            encoder.add(std::forward_as_tuple(args...));
            detail::Frame frame = encoder.finish();
            auto job = std::make_shared<detail::SingleJob<R>>();
            core_->submit(job, std::span(&frame, 1));
            // The result lives in the job: one allocation for both.
            return AsyncResult<R>(std::shared_ptr<detail::ResultState<R>>(job, &job->state()));
        }
    }

    // No more submissions: a later one throws StateError. The workers exit once the work
    // already submitted is done.
    void close() { core_->close(); }
    // Waits for the workers to exit; StateError unless close() or terminate() came first.
    void join() { core_->join(); }
    // Stops the workers now. Tasks not finished fail with StateError.
    void terminate() { core_->terminate(); }

  private:
    template <class F, class ArgTuple>
    using result_t = detail::task_result_t<F, ArgTuple>;

    // apply_async of a call of numbers: one record more in the batch the collector has not
    // taken yet, or a new batch (PoolCore::add_to_batch).
    template <class F, class ArgTuple, class Args>
    auto apply_gathered(F f, const Args& args) {
        using R = result_t<F, ArgTuple>;
        using Job = detail::ApplyBatchJob<R>;
        std::array<std::byte, detail::args_bytes<ArgTuple>> record;
        detail::write_record<ArgTuple>(record.data(), args);
        std::shared_ptr<detail::ResultState<R>> result;
        const bool added = core_->add_to_batch(detail::block_entry_address<F, ArgTuple>,
                                               detail::callable_to_wire(f), record,
                                               [&](const std::shared_ptr<detail::Job>& job) {
                                                   // A batch of this entry holds calls of this F
                                                   // and ArgTuple only: its job is ours.
                                                   result = static_cast<Job&>(*job).add_call(job);
                                               });
        if (!added) {
            detail::BlockTaskEncoder<F, ArgTuple> encoder(f, 1);
            encoder.add(args);
            auto job = std::make_shared<Job>();
            result = job->add_call(job);
            core_->submit_batch(job, encoder.finish());
        }
        return AsyncResult<R>(std::move(result));
    }

    // Encodes the inputs chunk by chunk and hands the chunks to the pool as they are made: the
    // first at once, the rest in batches of about submit_batch_bytes, so that the workers run
    // the first chunks while the caller encodes the next and few batches cost a wake-up each.
    // Cuttable chunks are batches of separate tasks (PoolCore::submit).
    template <class F, class ArgTuple, class Inputs, class AsArgs>
    void encode_chunks(F f, Inputs&& inputs, std::size_t tasks, std::size_t chunksize,
                       AsArgs as_args, const std::shared_ptr<detail::Job>& job, bool cuttable) {
        constexpr std::size_t submit_batch_bytes = 256 * 1024;
        std::vector<detail::Frame> batch;
        std::size_t batch_bytes = 0;
        std::size_t batch_tasks = 0;
        std::size_t first_task = 0;
        auto submit_batch = [&] {
            core_->submit(job, batch, first_task, cuttable);
            batch.clear();
            first_task += std::exchange(batch_tasks, 0);
            batch_bytes = 0;
        };
        std::optional<detail::ChunkEncoder<F, ArgTuple>> encoder;
        for (auto&& input : inputs) {
            if (!encoder) {
                const std::size_t encoded = std::min(tasks, first_task + batch_tasks);
                encoder.emplace(f, std::min(chunksize, tasks - encoded));
            }
            encoder->add(as_args(input));
            if (encoder->size() == chunksize) {
                batch_tasks += encoder->size();
                batch.push_back(encoder->finish());
                batch_bytes += batch.back().size();
                encoder.reset();
                if (first_task == 0 || batch_bytes >= submit_batch_bytes) submit_batch();
            }
        }
        if (encoder) {
            batch_tasks += encoder->size();
            batch.push_back(encoder->finish());
        }
        if (!batch.empty()) submit_batch();
    }

    // Makes the job for the inputs' tasks (make_job(tasks) gives the job and what the caller
    // gets back) and streams the inputs to it in chunks; an input range that cannot tell its
    // size is read into a vector first.
    template <class F, class ArgTuple, class Inputs, class AsArgs, class MakeJob>
    auto encode_and_submit(F f, Inputs&& inputs, std::size_t chunksize, std::size_t default_chunk,
                           AsArgs as_args, MakeJob make_job) {
        detail::require_sendable<F>();
        static_assert(detail::callable_with_tuple<F, ArgTuple>,
                      "mproc: the function cannot be called with the elements of these inputs");
        if constexpr (std::ranges::sized_range<Inputs>) {
            const auto tasks = static_cast<std::size_t>(std::ranges::size(inputs));
            if (chunksize == 0) {
                chunksize = default_chunk != 0 ? default_chunk
                                               : detail::default_chunksize(tasks, processes());
            }
            auto [job, result] = make_job(tasks);
            // Tasks of numbers (or of pairs, tuples or arrays of them) asked for one at a time
            // travel as batches that the pool cuts by the workers' pace (or, for a map, that
            // free workers claim a few tasks at a time): a frame per task would cost more than
            // a quick task, and tasks still go one at a time while long or of unknown pace.
            const bool cuttable = detail::block_layout<F, ArgTuple> && chunksize == 1;
            encode_chunks<F, ArgTuple>(f, inputs, tasks,
                                       cuttable ? detail::max_default_chunk : chunksize, as_args,
                                       job, cuttable);
            return std::move(result);
        } else {
            std::vector<std::ranges::range_value_t<Inputs>> materialised;
            for (auto&& input : inputs)
                materialised.push_back(std::forward<decltype(input)>(input));
            return encode_and_submit<F, ArgTuple>(f, materialised, chunksize, default_chunk,
                                                  as_args, make_job);
        }
    }

    template <class F, class ArgTuple, class Inputs, class AsArgs>
    auto submit_map(F f, Inputs&& inputs, std::size_t chunksize, AsArgs as_args) {
        using R = result_t<F, ArgTuple>;
        return encode_and_submit<F, ArgTuple>(
            f, std::forward<Inputs>(inputs), chunksize, 0, as_args, [](std::size_t tasks) {
                // A map's caller sleeps at once (ResultState::wait).
                auto state = std::make_shared<detail::ResultState<detail::map_result_t<R>>>(false);
                return std::pair{
                    std::shared_ptr<detail::Job>(std::make_shared<detail::MapJob<R>>(tasks, state)),
                    AsyncResult<detail::map_result_t<R>>(std::move(state))};
            });
    }

    template <class F, class Inputs>
    auto submit_stream(F f, Inputs&& inputs, std::size_t chunksize, bool ordered) {
        using ArgTuple = std::tuple<detail::wire_arg_t<std::ranges::range_reference_t<Inputs>>>;
        using R = result_t<F, ArgTuple>;
        return encode_and_submit<F, ArgTuple>(
            f, std::forward<Inputs>(inputs), chunksize, 1,
            [](const auto& x) { return std::forward_as_tuple(x); },
            [ordered](std::size_t tasks) {
                auto job = std::make_shared<detail::StreamJob<R>>(tasks, ordered);
                return std::pair{std::shared_ptr<detail::Job>(job), ImapRange<R>(job, tasks)};
            });
    }

    std::unique_ptr<detail::PoolCore> core_;
};

}  // namespace mproc
