#pragma once

// The block layout, for tasks whose arguments are numbers (or pairs, tuples or arrays of them)
// and whose result is a number. A task_block frame holds one record per task: the arguments'
// numbers' bytes back to back, with no length prefix. Its
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
#include <limits>
#include <span>
#include <string>
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

// A record_field's numbers, copied to or from a record, one after the other.
template <class T>
void write_field(std::byte*& to, const T& value) noexcept {
    if constexpr (wire_detail::is_block_copyable<T>) {
        std::memcpy(to, &value, sizeof value);
        to += sizeof value;
    } else {
        std::apply([&](const auto&... elements) { (write_field(to, elements), ...); }, value);
    }
}
template <class T>
void read_field(const std::byte*& from, T& value) noexcept {
    if constexpr (wire_detail::is_block_copyable<T>) {
        std::memcpy(&value, from, sizeof value);
        from += sizeof value;
    } else {
        std::apply([&](auto&... elements) { (read_field(from, elements), ...); }, value);
    }
}

// One task's record, written from a tuple-like `args` and read back into an ArgTuple.
template <class ArgTuple, class Tuple>
void write_record(std::byte* to, const Tuple& args) noexcept {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (
            (void)[&] {
                const std::tuple_element_t<I, ArgTuple> value = std::get<I>(args);
                write_field(to, value);
            }(),
            ...);
    }
    (std::make_index_sequence<std::tuple_size_v<ArgTuple>>{});
}
template <class ArgTuple>
void read_record(const std::byte* from, ArgTuple& args) noexcept {
    read_field(from, args);
}

// A task of a block: f's result recorded in out, or the error it threw (or `unusable`, the
// reason none of the block's tasks can run).
template <class F, class ArgTuple>
void run_block_task(F& f, const std::exception_ptr& unusable, std::span<const std::byte> records,
                    std::uint32_t task, ResultWriter& out) {
    try {
        if (unusable) std::rethrow_exception(unusable);
        ArgTuple args;
        read_record(records.data() + std::size_t{task} * args_bytes<ArgTuple>, args);
        out.block_ok(std::apply(f, std::move(args)));
    } catch (...) {
        out.error();
    }
    out.end_item();
}

// A claimed batch (claimed_from_board): takes tasks from the pool's claim board until none is
// left, a few at a time, as many as ran in about claim_time so far (one at a time while they
// are long, thousands while they are tiny, so that the board's counter is not fought over).
// The results stay here until the end: the pool needs none before (no task waits to be sent
// after them), and sending each would cost a system call here and a wake-up of the pool's
// collector, which on a machine whose cores all run workers takes a core from one of them.
template <class F, class ArgTuple>
void run_claimed_block(F& f, const std::exception_ptr& unusable, std::uint64_t generation,
                       std::uint32_t tasks, std::span<const std::byte> records, ResultWriter& out) {
    using R = task_result_t<F, ArgTuple>;
    using Clock = std::chrono::steady_clock;
    constexpr auto claim_time = std::chrono::microseconds(50);
    ClaimBoard& board = *out.board();
    std::vector<std::uint32_t> ran;
    out.start_claimed_block<R>(tasks);
    // A board that moved on to another batch has none of this frame's tasks left to give
    // (generation 0 names no batch: the frame is corrupt).
    if (generation != 0 && board.generation.load(std::memory_order_acquire) == generation) {
        const auto started = Clock::now();
        std::uint32_t take = 1;
        while (true) {
            const std::uint32_t first = board.next.fetch_add(take, std::memory_order_relaxed);
            if (first >= tasks) break;
            const std::uint32_t end = first + std::min(take, tasks - first);
            for (std::uint32_t task = first; task < end; ++task) {
                out.begin_claimed_item(static_cast<std::uint32_t>(ran.size()), task);
                run_block_task<F, ArgTuple>(f, unusable, records, task, out);
                ran.push_back(task);
            }
            const auto elapsed =
                std::max<Clock::duration>(Clock::now() - started, Clock::duration(1));
            const double pace = static_cast<double>(ran.size()) * claim_time / elapsed;
            // Guided self-scheduling: a quarter of each worker's share of what is left, so that
            // the takes shrink to one task as the batch ends and no worker sits on the last
            // tasks while another is idle.
            const std::uint32_t taken = board.next.load(std::memory_order_relaxed);
            const double share = static_cast<double>(tasks - std::min(taken, tasks)) /
                                 (4.0 * std::max<std::uint32_t>(board.workers, 1));
            take = static_cast<std::uint32_t>(std::clamp<double>(std::min(pace, share), 1, tasks));
        }
    }
    out.end_claimed_block<R>(ran);
}

// The entry a worker calls for a task_block frame of callable F with arguments ArgTuple.
template <class F, class ArgTuple>
void run_block_chunk(const Frame& frame, ResultWriter& out) {
    using R = task_result_t<F, ArgTuple>;
    constexpr std::size_t record = args_bytes<ArgTuple>;
    const FrameHeader header = frame.header();
    auto payload = frame.payload();
    const bool claimed = (header.flags & claimed_from_board) != 0;
    std::uint64_t generation = 0;
    if (claimed && payload.size() >= sizeof generation) {
        std::memcpy(&generation, payload.data(), sizeof generation);
        payload = payload.subspan(sizeof generation);
    }
    F f{};
    std::exception_ptr unusable;
    if (frame.kind() != FrameKind::task_block ||
        (claimed && (out.board() == nullptr || generation == 0)) ||
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
    if (claimed && out.board() != nullptr) {
        return run_claimed_block<F, ArgTuple>(f, unusable, generation, header.item_count, payload,
                                              out);
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
        run_block_task<F, ArgTuple>(f, unusable, payload, index, out);
    }
    out.end_block<R>();
}

// The registered wire address of run_block_chunk<F, ArgTuple> (see entry_address).
template <class F, class ArgTuple>
inline const std::uint64_t block_entry_address = register_entry(&run_block_chunk<F, ArgTuple>);

// Builds a task_block frame in the parent, one call's arguments at a time: the same interface
// as TaskEncoder.
template <class F, class ArgTuple>
class BlockTaskEncoder {
  public:
    // Makes room for `tasks` calls. The frame has no limit of its own on its bytes (see
    // TaskEncoder); on its tasks, SerializationError past max_frame_items.
    explicit BlockTaskEncoder(F f, std::size_t tasks = 0)
        : writer_(FrameKind::task_block, 0, block_entry_address<F, ArgTuple>, callable_to_wire(f),
                  std::numeric_limits<std::uint64_t>::max()) {
        if (tasks > max_frame_items) refuse_tasks();
        writer_.buffer().resize(sizeof(FrameHeader) + tasks * record);
    }

    // Adds a call with the arguments of a tuple-like `args`. Throws SerializationError when the
    // frame would hold more than max_frame_items tasks.
    template <class Tuple>
    void add(const Tuple& args) {
        auto& bytes = writer_.buffer();
        const std::size_t end = sizeof(FrameHeader) + (tasks_ + 1) * record;
        if (end > bytes.size()) {
            if (tasks_ == max_frame_items) refuse_tasks();
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

    [[noreturn]] static void refuse_tasks() {
        throw SerializationError("mproc: a chunk would hold more than " +
                                 std::to_string(max_frame_items) +
                                 " tasks, more than a frame can count; use a smaller chunksize");
    }

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
