#pragma once

// The block layout, for tasks whose arguments and result are all numbers. A task_block frame
// holds one record per task: the arguments' bytes back to back, with no length prefix. Its
// result_block frame holds a status byte per task, then one value per task (zero bytes for a
// task that failed), then one item per failed task, in task order, with its error as a result
// item has it. Encoding, running and reading such a chunk is then a copy per task, without a
// length, a resize or a bounds check per task.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/task_codec.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

// Whether tasks of F with arguments ArgTuple travel in the block layout.
template <class F, class ArgTuple>
inline constexpr bool block_layout = fixed_size<ArgTuple>&& args_bytes<ArgTuple> > 0 &&
                                     wire_detail::is_block_copyable<task_result_t<F, ArgTuple>>;

// One task's record, written from a tuple-like `args` and read back into an ArgTuple.
template <class ArgTuple, class Tuple>
void write_record(std::byte* to, const Tuple& args) noexcept {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (
            (void)[&] {
                const std::tuple_element_t<I, ArgTuple> value = std::get<I>(args);
                std::memcpy(to, &value, sizeof value);
                to += sizeof value;
            }(),
            ...);
    }
    (std::make_index_sequence<std::tuple_size_v<ArgTuple>>{});
}
template <class ArgTuple>
void read_record(const std::byte* from, ArgTuple& args) noexcept {
    std::apply(
        [&](auto&... values) {
            ((std::memcpy(&values, from, sizeof values), from += sizeof values), ...);
        },
        args);
}

// The entry a worker calls for a task_block frame of callable F with arguments ArgTuple.
template <class F, class ArgTuple>
void run_block_chunk(const Frame& frame, ResultWriter& out) {
    using R = task_result_t<F, ArgTuple>;
    constexpr std::size_t record = args_bytes<ArgTuple>;
    const FrameHeader header = frame.header();
    const auto payload = frame.payload();
    F f{};
    std::exception_ptr unusable;
    if (frame.kind() != FrameKind::task_block ||
        payload.size() != std::size_t{header.item_count} * record) {
        unusable = std::make_exception_ptr(SerializationError(
            "mproc: a block of tasks does not hold one record per task; the bytes are corrupt"));
    } else {
        try {
            f = callable_from_wire<F>(header.function);
        } catch (...) {
            unusable = std::current_exception();
        }
    }
    // A piece of a batch was cut by the pace of the worker's earlier tasks; if these tasks turn
    // out longer, the piece ends once it has run past piece_run_limit (the pool sends the rest
    // again), so that the tasks behind a long one go to whichever worker is free rather than
    // wait here. The clock is read before each task, so that no task runs after a long one:
    // about 20 ns a task, which only the quickest tasks notice.
    constexpr auto piece_run_limit = std::chrono::microseconds(500);
    const bool piece = (header.flags & piece_of_batch) != 0;
    const auto started = std::chrono::steady_clock::now();
    // check_header keeps item_count within the bytes that arrived.
    out.start_block<R>(header.item_count);
    for (std::uint32_t index = 0; index < header.item_count; ++index) {
        if (piece && index > 0 && std::chrono::steady_clock::now() - started > piece_run_limit) {
            out.end_block_early<R>(index);
            return;
        }
        out.begin_item(index);
        try {
            if (unusable) std::rethrow_exception(unusable);
            ArgTuple args;
            read_record(payload.data() + std::size_t{index} * record, args);
            out.block_ok(std::apply(f, std::move(args)));
        } catch (...) {
            out.error();
        }
        out.end_item();
    }
}

// The registered wire address of run_block_chunk<F, ArgTuple> (see entry_address).
template <class F, class ArgTuple>
inline const std::uint64_t block_entry_address = register_entry(&run_block_chunk<F, ArgTuple>);

// Builds a task_block frame in the parent, one call's arguments at a time: the same interface
// as TaskEncoder.
template <class F, class ArgTuple>
class BlockTaskEncoder {
  public:
    // Makes room for `tasks` calls.
    explicit BlockTaskEncoder(F f, std::size_t tasks = 0)
        : writer_(FrameKind::task_block, 0, block_entry_address<F, ArgTuple>, callable_to_wire(f)) {
        writer_.buffer().resize(sizeof(FrameHeader) + tasks * record);
    }

    // Adds a call with the arguments of a tuple-like `args`. Throws SerializationError when the
    // frame would grow past max_payload_bytes.
    template <class Tuple>
    void add(const Tuple& args) {
        auto& bytes = writer_.buffer();
        const std::size_t end = sizeof(FrameHeader) + (tasks_ + 1) * record;
        if (end > bytes.size()) {
            if (end - sizeof(FrameHeader) > max_payload_bytes) {
                throw SerializationError(
                    "mproc: a chunk of tasks would be larger than the limit "
                    "of a frame; use a smaller chunksize");
            }
            bytes.resize(end);
        }
        write_record<ArgTuple>(bytes.data() + end - record, args);
        ++tasks_;
    }
    std::size_t size() const noexcept { return tasks_; }
    Frame finish() {
        writer_.buffer().resize(sizeof(FrameHeader) + tasks_ * record);
        return finish_block(writer_, FrameKind::task_block, static_cast<std::uint32_t>(tasks_));
    }

  private:
    static constexpr std::size_t record = args_bytes<ArgTuple>;

    FrameWriter writer_;
    std::size_t tasks_ = 0;
};

// The frame that carries a chunk of tasks of F with arguments ArgTuple: a block when they are
// numbers, items otherwise.
template <class F, class ArgTuple>
using ChunkEncoder = std::conditional_t<block_layout<F, ArgTuple>, BlockTaskEncoder<F, ArgTuple>,
                                        TaskEncoder<F, ArgTuple>>;

// The results of a result_block frame of `tasks` tasks that return R, checked whole before any
// is read: a job either takes every task's outcome from it or none.
template <class R>
class ResultBlock {
  public:
    // Throws SerializationError unless the payload holds a status and a value for each task,
    // and an error item for each failed task and nothing more.
    ResultBlock(std::uint32_t tasks, std::span<const std::byte> payload) : tasks_(tasks) {
        const std::size_t fixed = std::size_t{tasks} * (1 + sizeof(R));
        if (payload.size() < fixed) {
            throw SerializationError("mproc: a block of results is shorter than its tasks");
        }
        statuses_ = payload.first(tasks);
        values_ = payload.subspan(tasks, std::size_t{tasks} * sizeof(R));
        ItemReader errors(payload.subspan(fixed));
        for (std::uint32_t task = 0; task < tasks; ++task) {
            if (statuses_[task] == ok) continue;
            if (statuses_[task] != failed) {
                throw SerializationError("mproc: a result has an unknown status");
            }
            if (errors.at_end()) {
                throw SerializationError("mproc: a block of results lacks a failed task's error");
            }
            errors_.push_back(errors.next());
        }
        if (!errors.at_end()) {
            throw SerializationError("mproc: a block of results has bytes after its errors");
        }
    }

    std::size_t failures() const noexcept { return errors_.size(); }
    // The tasks' values as they arrived, one R per task.
    std::span<const std::byte> values() const noexcept { return values_; }

    // Calls on_value(task, value) or on_error(task, error) for each task, in order.
    template <class OnValue, class OnError>
    void for_each(OnValue on_value, OnError on_error) const {
        std::size_t failure = 0;
        for (std::uint32_t task = 0; task < tasks_; ++task) {
            if (statuses_[task] == ok) {
                R value;
                std::memcpy(&value, values_.data() + std::size_t{task} * sizeof(R), sizeof value);
                on_value(task, value);
            } else {
                on_error(task, error_of(errors_[failure++]));
            }
        }
    }

  private:
    static constexpr std::byte ok{static_cast<std::uint8_t>(ResultStatus::ok)};
    static constexpr std::byte failed{static_cast<std::uint8_t>(ResultStatus::error)};

    // RemoteError for the task's exception; SerializationError for an item that is not one.
    static std::exception_ptr error_of(std::span<const std::byte> item) {
        try {
            if (!item.empty() && item[0] == failed) decode_result<R>(item);
            throw SerializationError("mproc: a failed task's item holds no error");
        } catch (...) {
            return std::current_exception();
        }
    }

    std::uint32_t tasks_;
    std::span<const std::byte> statuses_;
    std::span<const std::byte> values_;
    std::vector<std::span<const std::byte>> errors_;
};

}  // namespace mproc::detail
