#pragma once

// How a chunk of tasks becomes a frame in the parent, runs in a worker, and comes back as
// results. Each item of a task frame is one call's arguments; each item of a result frame is
// a status byte followed by the call's value or its error.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/code_address.hpp"
#include "mproc/detail/error_info.hpp"
#include "mproc/detail/fd_passing.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/detail/worker_status.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

// A result item's first byte. An unencodable task's value could not be encoded in the worker
// (its own save threw, or it holds more handles than the frame can carry): a message follows,
// which the caller gets as a SerializationError.
enum class ResultStatus : std::uint8_t { ok = 0, error = 1, unencodable = 2 };

// An argument as it is stored for the call: decayed, and a C string becomes a std::string,
// since a pointer means nothing in another process.
template <class T>
using wire_arg_t = std::conditional_t<std::is_same_v<std::decay_t<T>, const char*> ||
                                          std::is_same_v<std::decay_t<T>, char*>,
                                      std::string, std::decay_t<T>>;

// A reference to the value itself, or the std::string that stands for a C string.
template <class T>
decltype(auto) as_wire(const T& value) {
    if constexpr (std::is_same_v<wire_arg_t<T>, std::decay_t<T>>) {
        return (value);
    } else {
        return std::string(value);
    }
}

// The results of one chunk, written by the worker as its tasks run.
class ResultWriter {
  public:
    // status and board: the worker's, in the memory its pool watches; null outside a worker.
    // A result that would take the frame past the pool's limit (status->max_value_bytes, else
    // the default) is recorded as its task's SerializationError.
    ResultWriter(std::uint64_t sequence, WorkerStatus* status,
                 ClaimBoard* board = nullptr) noexcept;

    // Marks task `index` of the chunk as running, in the memory the pool watches.
    void begin_item(std::uint32_t index) noexcept { begin_claimed_item(index, index); }
    // The same for a claimed batch, whose results are in the order the tasks ran: the task
    // at `position` of the results is task `index` of the batch, which the pool is told.
    void begin_claimed_item(std::uint32_t position, std::uint32_t index) noexcept {
        current_ = position;
        current_index_ = index;
        if (status_ == nullptr) return;
        status_->item.store(index, std::memory_order_relaxed);
        if (timed_) {
            status_->started_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                                      std::memory_order_relaxed);
        }
        status_->running.store(1, std::memory_order_release);
    }
    void end_item() noexcept {
        if (status_ != nullptr) status_->running.store(0, std::memory_order_release);
    }

    // Makes room for the results of `tasks` tasks that return R, when R's size is fixed; and
    // when R is a number, records their values in the worker's ResultArea too (ok).
    template <class R>
    void reserve(std::uint32_t tasks) {
        if constexpr (wire_detail::is_block_copyable<R>) {
            writer_.reserve(std::size_t{tasks} * (sizeof(ItemLength) + 1 + sizeof(R)));
            if (status_ != nullptr && tasks <= recorded_tasks) start_recording(tasks);
        }
    }

    // Lays the results of `tasks` tasks that return the number R out as one block
    // (block_codec.hpp): call it before the first task, then record values with block_ok and
    // errors with error(). A task counts as failed until its value is recorded.
    template <class R>
    void start_block(std::uint32_t tasks) {
        static_assert(wire_detail::is_block_copyable<R>);
        static_assert(sizeof(R) <= recorded_value_bytes, "a number larger than a record's room");
        block_ = true;
        block_tasks_ = tasks;
        auto& bytes = writer_.buffer();
        bytes.resize(sizeof(FrameHeader) + std::size_t{tasks} * (1 + sizeof(R)));
        std::memset(bytes.data() + sizeof(FrameHeader), static_cast<int>(ResultStatus::error),
                    tasks);
        if (status_ != nullptr && tasks <= recorded_tasks) start_recording(tasks);
    }
    // The same for a claimed batch of `tasks` tasks, whose results are those this worker took.
    template <class R>
    void start_claimed_block(std::uint32_t tasks) {
        claimed_ = true;
        start_block<R>(tasks);
    }
    // Ends the block after all of its tasks.
    template <class R>
    void end_block() noexcept {
        fill_block<R>(block_tasks_);
    }
    // Ends the block after its first `tasks` tasks: the later ones were not run.
    template <class R>
    void end_block_early(std::uint32_t tasks) noexcept {
        fill_block<R>(tasks);
        compact_block<R>(tasks);
    }
    // Ends a claimed batch's block after the tasks this worker ran, and appends which task of
    // the batch each was, in the order they ran.
    template <class R>
    void end_claimed_block(std::span<const std::uint32_t> tasks) {
        compact_block<R>(static_cast<std::uint32_t>(tasks.size()));
        const auto* indices = reinterpret_cast<const std::byte*>(tasks.data());
        writer_.buffer().append(indices, tasks.size_bytes());
    }
    ClaimBoard* board() const noexcept { return board_; }
    // Records the running task's value: in the worker's ResultArea, whence the block is filled
    // when it ends; or in the block itself; or, for a claim, in both, since its block is in the
    // order the tasks ran and a gather at its end would delay the claim's answer.
    template <class R>
    void block_ok(const R& value) noexcept {
        if (area_ != nullptr) {
            record(value);
            if (!claimed_) return;
        }
        std::byte* block = writer_.buffer().data() + sizeof(FrameHeader);
        block[current_] = std::byte{static_cast<std::uint8_t>(ResultStatus::ok)};
        std::memcpy(block + block_tasks_ + std::size_t{current_} * sizeof(R), &value, sizeof(R));
    }

  private:
    // Records the running task's value in the worker's ResultArea.
    template <class R>
    void record(const R& value) noexcept {
        static_assert(sizeof(R) <= recorded_value_bytes, "a number larger than a record's room");
        std::memcpy(area_->values + std::size_t{current_index_} * sizeof(R), &value, sizeof(R));
        std::atomic_ref(area_->done[current_index_]).store(1, std::memory_order_release);
    }
    // Copies the values recorded in the ResultArea into the block's first `positions` places,
    // which are the chunk's first tasks in order (a claim's block is written as it runs).
    template <class R>
    void fill_block(std::uint32_t positions) noexcept {
        if (area_ == nullptr || claimed_) return;
        std::byte* block = writer_.buffer().data() + sizeof(FrameHeader);
        std::memcpy(block + block_tasks_, area_->values, std::size_t{positions} * sizeof(R));
        if (errors_ == 0) {
            // Every task ran and has its value (a task that cannot run fails with an error).
            std::memset(block, static_cast<int>(ResultStatus::ok), positions);
            return;
        }
        for (std::uint32_t position = 0; position < positions; ++position) {
            if (area_->done[position] != 0) {
                block[position] = std::byte{static_cast<std::uint8_t>(ResultStatus::ok)};
            } else {
                // A failed task's value is zero, as a value-initialised R.
                std::memset(block + block_tasks_ + std::size_t{position} * sizeof(R), 0, sizeof(R));
            }
        }
    }
    // Moves the block's values and error items down to fit its first `tasks` tasks.
    template <class R>
    void compact_block(std::uint32_t tasks) noexcept {
        auto& bytes = writer_.buffer();
        std::byte* block = bytes.data() + sizeof(FrameHeader);
        const std::size_t fixed = std::size_t{block_tasks_} * (1 + sizeof(R));
        const std::size_t error_bytes = bytes.size() - sizeof(FrameHeader) - fixed;
        std::memmove(block + tasks, block + block_tasks_, std::size_t{tasks} * sizeof(R));
        std::memmove(block + std::size_t{tasks} * (1 + sizeof(R)), block + fixed, error_bytes);
        bytes.resize(sizeof(FrameHeader) + std::size_t{tasks} * (1 + sizeof(R)) + error_bytes);
        block_tasks_ = tasks;
    }

  public:
    // Records the running task's value. A value that cannot be encoded is recorded as that
    // task's error instead, and so is one whose handles would take the chunk's results past
    // the descriptors a frame can carry.
    template <class R>
    void ok(const R& value) {
        writer_.begin_item();
        try {
            writer_.buffer().push_back(std::byte{static_cast<std::uint8_t>(ResultStatus::ok)});
            if constexpr (wire_detail::is_block_copyable<R>) {
                encode(writer_.buffer(), value);  // a number holds no descriptor
                writer_.end_item();
                if (area_ != nullptr && current_index_ < recording_tasks_) record(value);
            } else {
                FdOutbox item_fds;
                {
                    FdOutboxScope scope(item_fds);
                    encode(writer_.buffer(), value);
                }
                std::vector<UniqueFd> fds = item_fds.take();
                if (!fds.empty()) make_room_for(fds.size());
                writer_.end_item();
                for (auto& fd : fds) fds_.push_back(std::move(fd));
            }
        } catch (...) {
            writer_.abandon_item();
            unencodable();
        }
    }
    void ok_void();
    // Records the exception being handled as the running task's error; call it in a catch.
    // In a block, the error is an item after the block.
    void error() noexcept;

    // How many tasks of the chunk ended with an error.
    std::size_t errors() const noexcept { return errors_; }
    // The chunk's results. Should they not make a frame after all, a frame in which each task
    // of the chunk fails with the reason; throws only when even that cannot be made.
    Frame finish();

    // The handles all results of a chunk may hold: what the kernel passes in one message, less
    // the descriptor that a large frame's file takes beside them.
    static constexpr std::size_t max_result_fds = max_frame_fds - 1;

  private:
    void write_error(const ErrorInfo& info) noexcept;
    // Records the exception being handled, which encoding the running task's value threw, as
    // the reason the task's value could not be sent.
    void unencodable() noexcept;
    // Makes room for a result's `fds` handles among those of the chunk's results, so that
    // keeping them cannot fail; SerializationError when they would be more than max_result_fds.
    void make_room_for(std::size_t fds);
    Frame finish_failed(std::uint32_t tasks);
    // Points area_ at the worker's ResultArea, reset for this chunk's `tasks` tasks.
    void start_recording(std::uint32_t tasks) noexcept;

    FrameWriter writer_;
    std::vector<UniqueFd> fds_;  // the handles of the results so far
    std::uint64_t sequence_;
    WorkerStatus* status_;
    ClaimBoard* board_;
    bool timed_;
    bool claimed_ = false;
    std::size_t errors_ = 0;
    std::uint32_t current_ = 0;          // the running task's position in the results
    std::uint32_t current_index_ = 0;    // and its index in the chunk (or the claimed batch)
    ResultArea* area_ = nullptr;         // where values are recorded, when not null
    std::uint32_t recording_tasks_ = 0;  // the chunk's tasks the area was reset for
    bool block_ = false;
    std::uint32_t block_tasks_ = 0;
};

// Completes a block frame (task_block or result_block) of `tasks` tasks: its items, if any, are
// not its tasks, so the header's count is set here.
inline Frame finish_block(FrameWriter& writer, FrameKind kind, std::uint32_t tasks,
                          std::uint16_t flags = 0) {
    Frame frame = writer.finish();
    FrameHeader header = frame.header();
    header.kind = static_cast<std::uint16_t>(kind);
    header.item_count = tasks;
    header.flags |= flags;
    std::memcpy(frame.bytes.data(), &header, sizeof header);
    return frame;
}

// The user's callable rebuilt in the worker: a function pointer from its address, an empty
// class by default construction.
template <class F>
F callable_from_wire(std::uint64_t function) {
    if constexpr (std::is_pointer_v<F>) {
        return reinterpret_cast<F>(const_cast<void*>(decode_function_address(function)));
    } else {
        return F{};
    }
}

template <class F>
std::uint64_t callable_to_wire(F f) noexcept {
    if constexpr (std::is_pointer_v<F>) {
        return encode_function_address(reinterpret_cast<const void*>(f));
    } else {
        return 0;
    }
}

// Whether F can be called with the elements of ArgTuple, and what it returns.
template <class F, class ArgTuple, class = std::make_index_sequence<std::tuple_size_v<ArgTuple>>>
struct apply_traits;
template <class F, class ArgTuple, std::size_t... I>
struct apply_traits<F, ArgTuple, std::index_sequence<I...>> {
    static constexpr bool callable =
        std::is_invocable_v<F&, std::tuple_element_t<I, ArgTuple>&&...>;
    using result = std::invoke_result<F&, std::tuple_element_t<I, ArgTuple>&&...>;
};

template <class F, class ArgTuple>
concept callable_with_tuple = apply_traits<F, ArgTuple>::callable;

template <class F, class ArgTuple>
using task_result_t = typename apply_traits<F, ArgTuple>::result::type;

// Decodes one task's arguments; a call without arguments has an empty item.
template <class ArgTuple>
void decode_arguments(std::span<const std::byte> bytes, ArgTuple& args) {
    if constexpr (std::tuple_size_v<ArgTuple> == 0) {
        if (!bytes.empty()) throw SerializationError("mproc: arguments for a call that takes none");
    } else {
        std::apply([&](auto&... values) { decode(bytes, values...); }, args);
    }
}

// The entry a worker calls for a frame of tasks of callable F with arguments ArgTuple.
template <class F, class ArgTuple>
void run_chunk(const Frame& frame, ResultWriter& out) {
    const FrameHeader header = frame.header();
    FdInbox inbox(frame.fds);
    FdInboxScope inbox_scope(inbox);
    ItemReader items(frame.payload());
    F f{};
    std::exception_ptr unresolved;
    try {
        f = callable_from_wire<F>(header.function);
    } catch (...) {
        unresolved = std::current_exception();
    }
    using R = task_result_t<F, ArgTuple>;
    // Every task has at least its length prefix in the payload that arrived: the reservation
    // follows the bytes received, not what the header claims.
    const auto tasks = static_cast<std::uint32_t>(
        std::min<std::size_t>(header.item_count, frame.payload().size() / sizeof(ItemLength)));
    if constexpr (!std::is_void_v<R>) out.reserve<std::decay_t<R>>(tasks);
    for (std::uint32_t index = 0; index < header.item_count; ++index) {
        out.begin_item(index);
        try {
            if (unresolved) std::rethrow_exception(unresolved);
            ArgTuple args;
            const auto bytes = items.next();
            decode_arguments(bytes, args);
            if constexpr (std::is_void_v<task_result_t<F, ArgTuple>>) {
                std::apply(f, std::move(args));
                out.ok_void();
            } else {
                out.ok(std::apply(f, std::move(args)));
            }
        } catch (...) {
            out.error();
        }
        out.end_item();
    }
}

// The registered wire address of run_chunk<F, ArgTuple>, registered before main runs in every
// process of the program.
template <class F, class ArgTuple>
inline const std::uint64_t entry_address = register_entry(&run_chunk<F, ArgTuple>);

// Whether a value can lie in a record as the bytes of its numbers, back to back: a number, or a
// pair, tuple or array of such values (a range of primes as a pair, a point as an array).
template <class T>
inline constexpr bool record_field = wire_detail::is_block_copyable<T>;
template <class A, class B>
inline constexpr bool record_field<std::pair<A, B>> = record_field<A>&& record_field<B>;
template <class... T>
inline constexpr bool record_field<std::tuple<T...>> = (record_field<T> && ...);
template <class T, std::size_t N>
inline constexpr bool record_field<std::array<T, N>> = record_field<T>;
// The bytes of such a value's numbers, without the padding between them.
template <class T>
inline constexpr std::size_t record_field_bytes = sizeof(T);
template <class A, class B>
inline constexpr std::size_t record_field_bytes<std::pair<A, B>> =
    record_field_bytes<A> + record_field_bytes<B>;
template <class... T>
inline constexpr std::size_t record_field_bytes<std::tuple<T...>> = (record_field_bytes<T> + ... +
                                                                     0);
template <class T, std::size_t N>
inline constexpr std::size_t record_field_bytes<std::array<T, N>> = N* record_field_bytes<T>;

// Whether every element of a tuple of arguments can lie in a record, and their bytes there.
template <class ArgTuple>
inline constexpr bool fixed_size = false;
template <class... T>
inline constexpr bool fixed_size<std::tuple<T...>> = (record_field<T> && ...);
template <class ArgTuple>
inline constexpr std::size_t args_bytes = 0;
template <class... T>
inline constexpr std::size_t args_bytes<std::tuple<T...>> = record_field_bytes<std::tuple<T...>>;

// Builds a task frame in the parent, one call's arguments at a time.
template <class F, class ArgTuple>
class TaskEncoder {
  public:
    // Makes room for `tasks` calls when the arguments' size is fixed. The frame has no limit
    // of its own: the pool that sends it checks it against the pool's (PoolCore::submit), which
    // may be above or below this process's default.
    explicit TaskEncoder(F f, std::size_t tasks = 0)
        : writer_(FrameKind::task, 0, entry_address<F, ArgTuple>, callable_to_wire(f),
                  std::numeric_limits<std::uint64_t>::max()) {
        if constexpr (fixed_size<ArgTuple>) {
            writer_.reserve(tasks * (sizeof(ItemLength) + args_bytes<ArgTuple>));
        }
    }

    // Adds a call with the arguments of a tuple-like `args`.
    template <class Tuple>
    void add(const Tuple& args) {
        writer_.begin_item();
        if constexpr (fixed_size<ArgTuple>) {
            // Numbers hold no descriptor.
            std::apply([&](const auto&... values) { encode_args(values...); }, args);
        } else {
            FdOutboxScope scope(outbox_);
            std::apply([&](const auto&... values) { encode_args(values...); }, args);
        }
        writer_.end_item();
    }
    std::size_t size() const noexcept { return writer_.item_count(); }
    Frame finish() {
        writer_.add_fds(outbox_.take());
        return writer_.finish();
    }

  private:
    template <class... Values>
    void encode_args(const Values&... values) {
        if constexpr (sizeof...(Values) > 0) encode(writer_.buffer(), as_wire(values)...);
    }

    FrameWriter writer_;
    FdOutbox outbox_;
};

// The value of one result item, or its error thrown: RemoteError for an exception in the task,
// SerializationError for a value the worker could not encode or bytes that do not decode.
template <class R>
R decode_result(std::span<const std::byte> item) {
    if (item.empty()) throw SerializationError("mproc: an empty result item");
    const auto status = static_cast<ResultStatus>(item[0]);
    const auto rest = item.subspan(1);
    if (status == ResultStatus::error) {
        ErrorInfo info;
        decode(rest, info);
        throw RemoteError(std::move(info.type_name), std::move(info.message),
                          std::move(info.traceback));
    }
    if (status == ResultStatus::unencodable) {
        std::string message;
        decode(rest, message);
        throw SerializationError(message);
    }
    if (status != ResultStatus::ok)
        throw SerializationError("mproc: a result has an unknown status");
    if constexpr (std::is_void_v<R>) {
        if (!rest.empty()) throw SerializationError("mproc: a value came back from a void task");
    } else {
        R value{};
        decode(rest, value);
        return value;
    }
}

}  // namespace mproc::detail
