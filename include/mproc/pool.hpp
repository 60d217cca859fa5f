#pragma once

// Pool: a set of worker processes that run tasks, as Python's multiprocessing.Pool does, and a
// pool that survives its workers: one that dies or runs past task_timeout fails only the task
// it held, and a new worker takes its place.
//
// Delivery: each task runs once, unless its worker dies while it holds the task. Then:
// - the task the worker was running fails with WorkerLost (TimeoutError when the pool killed
//   it for task_timeout, CancelledError when it was cancelled), or, with PoolOptions::retries,
//   runs again on another worker, at most that many times more;
// - tasks that returned numbers, in the chunk the worker was running or had run last, never
//   run again: a worker records each such value, as the task ends, in memory the pool reads
//   even after the worker died (for chunks of up to 4096 tasks, the most chunksize 0 makes;
//   a claimed map of chunksize 1 counts as one chunk);
// - the other tasks that the worker had finished but not yet reported run again: those of
//   the chunk it was running, when they return other values (a smaller chunksize makes that
//   set smaller; chunksize 1, none), and those of the quick chunks before it, each under
//   50 us, whose results it held back for at most 200 us to send them together;
// - tasks it had not begun run once, on another worker;
// - a chunk whose workers die three times while none of its tasks runs fails with WorkerLost.
// A worker the pool kills (task_timeout, cancel) may have just finished the task it was killed
// for and begun the next: that next task is not failed but runs again elsewhere. A task of a
// worker that retires over max_memory_per_child, or after maxtasksperchild, never runs twice.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
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
    // A task whose worker died while running it (a crash, a signal, std::exit, an OOM kill)
    // runs again, on another worker, up to this many times before it fails with WorkerLost,
    // whose runs() says how many times it ran. 0: it fails at once. Only for tasks that may
    // safely run twice: a task that died half way may have done half of its side effects. A
    // task past task_timeout or cancelled is never run again.
    unsigned retries = 0;
    // Bytes (0: off). A worker whose resident memory is over this after a chunk (a task, at
    // chunksize 1) is replaced before it begins another: the chunks it had not begun go to
    // other workers, and nothing fails. For a library that leaks or fragments memory, as
    // maxtasksperchild, but by what the worker holds rather than by how many tasks it ran.
    std::size_t max_memory_per_child = 0;
    // The largest frame between the pool and a worker, in bytes: a task's arguments (a chunk's,
    // for a map) or a result. 0 means the machine's memory (mproc::memory().total). A call whose
    // arguments are over it throws SerializationError; a task whose result is over it fails
    // with that error (a RemoteError of type mproc::SerializationError). Each end checks a
    // frame's size against it before it maps or allocates anything for the frame. Under 1 MiB it
    // is refused with StateError, so that errors and batches of small tasks still fit.
    std::uint64_t max_value_bytes = 0;
};

namespace detail {

// How far an imap reads ahead of its consumer (Pool::imap): at most `tasks` inputs read and
// not yet yielded, read `step` at a time.
struct StreamWindow {
    std::size_t tasks = 0;
    std::size_t step = 0;
};
// Chunks read ahead per worker by default: as map's chunks in flight, enough that no worker
// waits for the consumer's next read.
inline constexpr std::size_t stream_chunks_per_worker = 4;
// Tasks of numbers of chunksize 1 read ahead per worker by default, at least: the pool cuts
// them into pieces by the workers' pace, and tiny tasks need thousands to a piece to run as
// fast as a map's (at 4096 a worker, an imap of 200,000 tiny tasks takes what it took when
// imap read its whole input; at 64, 2 to 3 times as long). Their records are a few bytes each.
inline constexpr std::size_t stream_batch_tasks_per_worker = 4096;
// The window of an imap: buffersize (0: the default) and chunksize as given to it, `batched`
// for tasks of numbers of chunksize 1 (see encode_and_submit).
StreamWindow stream_window(std::size_t buffersize, std::size_t chunksize, bool batched,
                           std::size_t workers) noexcept;

// The input side of an imap: reads its inputs on the consumer's thread, a window ahead of
// the consumer, and submits them as tasks, from task 0 on. A lazy input of the pool
// (PoolCore::open_lazy_input) until the input ends or the feed is destroyed.
class StreamFeed {
  public:
    // StateError when the pool is closed or terminated.
    StreamFeed(std::shared_ptr<PoolCore> core, std::shared_ptr<AbandonableJob> job,
               StreamWindow window, bool batched);
    virtual ~StreamFeed() { abandon(); }
    StreamFeed(const StreamFeed&) = delete;
    StreamFeed& operator=(const StreamFeed&) = delete;

    // Whether there is an element at `position` once the consumer has read the `position`
    // before it; reads and submits more input first, while the window has room. Throws what
    // reading or encoding an input threw; the input then ends before that input.
    bool has_element(std::size_t position);
    // Whether the element at `position`, which exists, was submitted: not when the pool ended
    // before its input was read.
    bool was_submitted(std::size_t position) const noexcept { return position < submitted_; }
    // The consumer is gone: the input is read no more, and the pool waits for it no more.
    void abandon() noexcept;

  protected:
    struct Read {
        std::size_t tasks = 0;  // inputs read and, when asked, encoded
        bool ended = false;     // the input has no more
        std::exception_ptr error;
    };
    // Reads up to `tasks` more inputs, encoded into frames when `frames` is given (else only
    // passed over). An input that throws (or cannot be encoded) ends the read with its error;
    // the inputs before it are in the frames (those of a chunk that failed to encode are not).
    virtual Read read_inputs(std::size_t tasks, std::vector<Frame>* frames) = 0;

  private:
    void read_ahead(std::size_t consumed);
    void end_input() noexcept;

    std::shared_ptr<PoolCore> core_;
    std::shared_ptr<AbandonableJob> job_;
    StreamWindow window_;
    bool batched_;
    std::size_t read_ = 0;
    std::size_t submitted_ = 0;
    bool input_open_ = true;   // a lazy input of the pool: more may be read
    bool pool_ended_ = false;  // the pool refused a submission: the rest is passed over
};

// A StreamFeed over a view of the inputs, which it owns: a ref_view of the caller's lvalue
// range, or the range itself.
template <class F, class ArgTuple, class View>
class InputFeed final : public StreamFeed {
  public:
    InputFeed(F f, View view, std::size_t chunksize, std::shared_ptr<PoolCore> core,
              std::shared_ptr<AbandonableJob> job, StreamWindow window, bool batched)
        : StreamFeed(std::move(core), std::move(job), window, batched),
          f_(f),
          chunksize_(chunksize),
          view_(std::move(view)),
          next_(std::ranges::begin(view_)) {}

  private:
    Read read_inputs(std::size_t tasks, std::vector<Frame>* frames) override {
        Read read;
        std::optional<ChunkEncoder<F, ArgTuple>> encoder;
        auto finish_chunk = [&] {
            read.tasks += encoder->size();
            frames->push_back(encoder->finish());
            encoder.reset();
        };
        bool adding = false;
        try {
            for (; read.tasks + (encoder ? encoder->size() : 0) < tasks &&
                   next_ != std::ranges::end(view_);
                 ++next_) {
                if (frames == nullptr) {
                    ++read.tasks;
                    continue;
                }
                auto&& input = *next_;
                if (!encoder) encoder.emplace(f_, std::min(chunksize_, tasks - read.tasks));
                adding = true;
                encoder->add(std::forward_as_tuple(input));
                adding = false;
                if (encoder->size() == chunksize_) finish_chunk();
            }
            if (encoder) finish_chunk();
            read.ended = next_ == std::ranges::end(view_);
        } catch (...) {
            read.error = std::current_exception();
            // An encoder that threw in add may hold half an argument: its chunk is dropped.
            if (encoder && !adding && encoder->size() > 0) finish_chunk();
        }
        return read;
    }

    F f_;
    std::size_t chunksize_;
    View view_;
    std::ranges::iterator_t<View> next_;
};

}  // namespace detail

// The tasks of an imap or imap_unordered, read in input order or as they finish: an input
// range of R, read once. Reading an element whose task failed throws its error; the elements
// after it can still be read. Reading the range reads more of the input (Pool::imap). It has
// a size() when the input has one. Destroying it before its end is safe: the tasks already
// submitted still run, and the pool waits for no more of its input.
template <class R, bool Sized>
class ImapRange {
  public:
    class iterator {
      public:
        using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
        using difference_type = std::ptrdiff_t;

        iterator() = default;
        // The element's value; throws the error of its task, or StateError when the pool
        // ended (joined, terminated or destroyed) before the element's input was read.
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
            return !it.feed_->has_element(it.position_);
        }

      private:
        friend class ImapRange;
        iterator(detail::StreamFeed* feed, detail::StreamJob<R>* job) : feed_(feed), job_(job) {}
        void fetch() const {
            if (current_) return;
            if (!feed_->has_element(position_)) {
                current_.emplace(detail::Outcome<R>::failed(std::make_exception_ptr(
                    StateError("mproc: an imap range was read past its end"))));
            } else if (!feed_->was_submitted(position_)) {
                current_.emplace(detail::Outcome<R>::failed(std::make_exception_ptr(StateError(
                    "mproc: the pool ended (it was joined, terminated or destroyed) before "
                    "this input of imap was read; read the range before joining the pool"))));
            } else {
                current_.emplace(job_->next());
            }
        }

        // The range's, which outlives its iterators, and stays where it is when the range is
        // moved.
        detail::StreamFeed* feed_ = nullptr;
        detail::StreamJob<R>* job_ = nullptr;
        std::size_t position_ = 0;
        mutable std::optional<detail::Outcome<R>> current_;
    };

    ImapRange(std::shared_ptr<detail::StreamJob<R>> job, std::unique_ptr<detail::StreamFeed> feed,
              std::size_t size)
        : job_(std::move(job)), feed_(std::move(feed)), size_(size) {}
    // A range is read once: begin() may be called once.
    iterator begin() { return iterator(feed_.get(), job_.get()); }
    std::default_sentinel_t end() const noexcept { return {}; }
    // The number of inputs, when the input range has a size.
    std::size_t size() const noexcept requires Sized { return size_; }

  private:
    std::shared_ptr<detail::StreamJob<R>> job_;
    std::unique_ptr<detail::StreamFeed> feed_;  // its destructor abandons the input
    std::size_t size_;
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

    // f(x) for each x of inputs, as a range read in input order (imap) or as tasks finish
    // (imap_unordered). The input is read lazily, on the consumer's thread: the first window
    // now, then more as the consumer reads results (begin, ++, *, and comparing with end), so
    // that no more than the window of inputs is read and not yet yielded, for any input range,
    // an endless one included. The window counts tasks: buffersize when given, else four
    // chunks per worker (4 * processes() * chunksize), and for tasks of numbers of chunksize 1
    // (which travel many to a frame) at least 4096 * processes(); it holds one chunk at
    // least. An lvalue input is referred to, and must outlive the range; an rvalue is moved
    // into it. A range destroyed before its end cancels what it has not yielded, as
    // AsyncResult::cancel does: tasks not begun never run, running ones have their workers
    // killed and replaced.
    // The range may be read after close(): the workers stay up while it has input left (the
    // pattern it = imap(...); close(); read it; join()). Once join() or terminate() begins, or
    // the pool is destroyed, the tasks already submitted can still be read, and each element
    // whose input was not read yet throws StateError; join() never waits for the consumer. An
    // input that throws, or cannot be encoded (SerializationError), throws from imap or the
    // range's step that read it; the range then ends before it. StateError after close().
    template <class F, std::ranges::input_range Inputs>
    requires std::ranges::viewable_range<Inputs>
    auto imap(F f, Inputs&& inputs, std::size_t chunksize = 1, std::size_t buffersize = 0) {
        return submit_stream(f, std::forward<Inputs>(inputs), chunksize, buffersize, true);
    }
    template <class F, std::ranges::input_range Inputs>
    requires std::ranges::viewable_range<Inputs>
    auto imap_unordered(F f, Inputs&& inputs, std::size_t chunksize = 1,
                        std::size_t buffersize = 0) {
        return submit_stream(f, std::forward<Inputs>(inputs), chunksize, buffersize, false);
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
            return AsyncResult<R>(std::shared_ptr<detail::ResultState<R>>(job, &job->state()),
                                  core_);
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
        return AsyncResult<R>(std::move(result), core_);
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
    auto encode_and_submit(F f, Inputs&& inputs, std::size_t chunksize, AsArgs as_args,
                           MakeJob make_job) {
        detail::require_sendable<F>();
        static_assert(detail::callable_with_tuple<F, ArgTuple>,
                      "mproc: the function cannot be called with the elements of these inputs");
        if constexpr (std::ranges::sized_range<Inputs>) {
            const auto tasks = static_cast<std::size_t>(std::ranges::size(inputs));
            if (chunksize == 0) chunksize = detail::default_chunksize(tasks, processes());
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
            return encode_and_submit<F, ArgTuple>(f, materialised, chunksize, as_args, make_job);
        }
    }

    template <class F, class ArgTuple, class Inputs, class AsArgs>
    auto submit_map(F f, Inputs&& inputs, std::size_t chunksize, AsArgs as_args) {
        using R = result_t<F, ArgTuple>;
        return encode_and_submit<F, ArgTuple>(
            f, std::forward<Inputs>(inputs), chunksize, as_args, [this](std::size_t tasks) {
                // A map's caller sleeps at once (ResultState::wait).
                auto state = std::make_shared<detail::ResultState<detail::map_result_t<R>>>(false);
                return std::pair{
                    std::shared_ptr<detail::Job>(std::make_shared<detail::MapJob<R>>(tasks, state)),
                    AsyncResult<detail::map_result_t<R>>(std::move(state), core_)};
            });
    }

    template <class F, class Inputs>
    auto submit_stream(F f, Inputs&& inputs, std::size_t chunksize, std::size_t buffersize,
                       bool ordered) {
        using View = std::views::all_t<Inputs>;
        using ArgTuple = std::tuple<detail::wire_arg_t<std::ranges::range_reference_t<View>>>;
        detail::require_sendable<F>();
        static_assert(detail::callable_with_tuple<F, ArgTuple>,
                      "mproc: the function cannot be called with the elements of these inputs");
        using R = result_t<F, ArgTuple>;
        constexpr bool sized = std::ranges::sized_range<View>;
        if (chunksize == 0) chunksize = 1;
        // As for a map (encode_and_submit), but cut into pieces by the collector only.
        const bool batched = detail::block_layout<F, ArgTuple> && chunksize == 1;
        View view = std::views::all(std::forward<Inputs>(inputs));
        std::size_t size = 0;
        if constexpr (sized) size = static_cast<std::size_t>(std::ranges::size(view));
        auto job = std::make_shared<detail::StreamJob<R>>(ordered);
        auto feed = std::make_unique<detail::InputFeed<F, ArgTuple, View>>(
            f, std::move(view), batched ? detail::max_default_chunk : chunksize, core_, job,
            detail::stream_window(buffersize, chunksize, batched, processes()), batched);
        // The first window now, so that the workers start at once.
        feed->has_element(0);
        return ImapRange<R, sized>(std::move(job), std::move(feed), size);
    }

    // Shared with the imap ranges, which submit as they are read, and with the AsyncResults,
    // which tell it of a cancel.
    std::shared_ptr<detail::PoolCore> core_;
};

}  // namespace mproc
