#include "worker/worker_loop.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>

#include "mproc/detail/task_codec.hpp"
#include "os/futex.hpp"
#include "os/memory_usage.hpp"
#include "transport/socket_link.hpp"
#include "wire/payload_file_reuse.hpp"
#include "worker/child_exit.hpp"
#include "worker/exception_capture.hpp"

namespace mproc::detail {

namespace {

// A worker whose link cannot carry a frame any more (a send or receive threw) has no way to
// tell its pool anything: it ends, and the pool hears of its death.
[[noreturn]] void end_with_broken_link() noexcept {
    end_child_on_exception("worker", exit_link_broken);
}

// Sends a frame to the pool; false when the pool is gone.
bool send_to_pool(Link& link, Frame frame) noexcept {
    try {
        return link.send(std::move(frame));
    } catch (...) {
        end_with_broken_link();
    }
}

// Runs a task frame. A frame whose entry cannot be found fails each of its tasks with that
// error, so the pool hears of it task by task like any other failure (for a claim, the pool
// fails with it the tasks nobody has taken).
Frame run_frame(const Frame& frame, WorkerStatus* status, ClaimBoard* board) {
    const FrameHeader header = frame.header();
    ResultWriter out(header.sequence, status, board);
    EntryFn entry = nullptr;
    try {
        entry = find_entry(header.entry);
    } catch (...) {
        for (std::uint32_t index = 0; index < header.item_count; ++index) {
            out.begin_item(index);
            out.error();
            out.end_item();
        }
        return out.finish();
    }
    entry(frame, out);
    return out.finish();
}

using Clock = std::chrono::steady_clock;

// Decides whether a chunk's results may wait to go out with those of the next chunks. Each
// result frame sent on its own costs a system call here and a wake-up of the pool's collector,
// more than a chunk of tiny tasks; so while the next chunk has already arrived and chunks run
// quickly, a few results wait and leave together (receive() sends them before it waits). A
// result waits at most max_wait, plus the run of one chunk whose speed is guessed from the
// chunk before it: a slow chunk after quick ones delays the quick ones' results. (The pool
// sends stop only when it has no chunk in flight, so no result is held when stop arrives.)
class ResultBatcher {
  public:
    bool hold(const Link& link, Clock::time_point started, Clock::time_point ended) {
        if (!link.has_unsent()) held_ = 0;  // receive() sent them
        const bool hold = link.frame_ready() && ended - started < quick_chunk &&
                          held_ + 1 < max_held && (held_ == 0 || ended - first_held_ < max_wait);
        if (!hold) {
            held_ = 0;
            return false;
        }
        if (held_++ == 0) first_held_ = ended;
        return true;
    }
    // How many chunks' results wait unsent: the next chunk records its values in the area after
    // theirs (WorkerStatus::results), so that theirs survive a death before they are sent.
    std::uint32_t held(const Link& link) const noexcept {
        return link.has_unsent() ? static_cast<std::uint32_t>(held_) : 0;
    }

  private:
    static constexpr auto quick_chunk = std::chrono::microseconds(50);
    static constexpr auto max_wait = std::chrono::microseconds(200);
    static constexpr std::size_t max_held = 32;
    // Each chunk held, and the one running, keep the values they recorded (ResultArea).
    static_assert(max_held <= recorded_chunks, "held chunks must keep their recorded values");

    std::size_t held_ = 0;
    Clock::time_point first_held_;
};

// Runs the initializer; if it threw, tells the pool why and ends the worker.
void initialize(const Frame& initializer, Link& link) {
    Frame results = run_frame(initializer, nullptr, nullptr);
    const auto header = results.header();
    if (header.item_count == 1 && results.payload().size() > sizeof(ItemLength) &&
        results.payload()[sizeof(ItemLength)] ==
            std::byte{static_cast<std::uint8_t>(ResultStatus::ok)}) {
        return;
    }
    FrameHeader failed = header;
    failed.kind = static_cast<std::uint16_t>(FrameKind::init_failed);
    std::memcpy(results.bytes.data(), &failed, sizeof failed);
    send_to_pool(link, std::move(results));
    end_child(1);
}

// Whether the pool cancelled the chunk before it began (WorkerStatus::skipped): one load while
// nothing is cancelled.
bool cancelled_before_start(const WorkerStatus& status, std::uint64_t sequence) noexcept {
    if (status.skipped_count.load(std::memory_order_acquire) == 0) return false;
    return std::any_of(std::begin(status.skipped), std::end(status.skipped),
                       [&](const auto& entry) { return entry.load() == sequence; });
}

// Whether the worker has outgrown the pool's max_memory_per_child.
bool over_memory_limit(const WorkerStatus& status) {
    const std::uint64_t limit = status.memory_limit.load(std::memory_order_relaxed);
    return limit != 0 && resident_bytes() > limit;
}

Frame answer_only(FrameKind kind, std::uint64_t sequence) {
    FrameWriter writer(kind, sequence);
    return writer.finish();
}

// Runs task frames until the pool says stop or is gone.
[[noreturn]] void serve_tasks(Link& link, WorkerStatus& status, ClaimBoard& board) {
    ResultBatcher batcher;
    while (true) {
        std::optional<Frame> frame;
        try {
            frame = link.receive();
        } catch (...) {
            end_with_broken_link();
        }
        if (!frame || frame->kind() == FrameKind::stop) end_child(0);
        if (frame->kind() != FrameKind::task && frame->kind() != FrameKind::task_block) continue;
        const auto started = Clock::now();
        const std::uint64_t sequence = frame->header().sequence;
        status.result_area = batcher.held(link);
        Frame results = cancelled_before_start(status, sequence)
                            ? answer_only(FrameKind::skipped, sequence)
                            : run_frame(*frame, &status, &board);
        frame.reset();  // a large frame's file goes back to the pool before the results do
        lend_payload_file(results);
        if (!batcher.hold(link, started, Clock::now())) {
            if (!send_to_pool(link, std::move(results))) end_child(0);
        } else {
            try {
                link.post(std::make_shared<const Frame>(std::move(results)));
            } catch (...) {
                end_with_broken_link();
            }
        }
        if (over_memory_limit(status)) {
            // After the results (a send goes after those held): the pool sends the chunks not
            // begun elsewhere and starts a new worker in this one's place.
            send_to_pool(link, answer_only(FrameKind::retiring, 0));
            end_child(0);
        }
    }
}

}  // namespace

void refuse_to_serve(Link& pool, int exit_code) noexcept {
    try {
        ResultWriter out(0, nullptr);
        out.error();
        Frame refusal = out.finish();
        FrameHeader header = refusal.header();
        header.kind = static_cast<std::uint16_t>(FrameKind::init_failed);
        std::memcpy(refusal.bytes.data(), &header, sizeof header);
        pool.send(std::move(refusal));
    } catch (...) {
        // The pool hears of it from the exit code alone.
    }
    end_child(exit_code);
}

void run_worker(std::unique_ptr<Link> pool, WorkerStatus& status, ClaimBoard& board,
                const Frame* initializer) noexcept {
    run_child_entry("worker", [&] {
        enable_throw_backtraces();
        status.serving.store(1);
        futex_wake(status.serving);
        Link& link = *pool;
        if (initializer != nullptr) initialize(*initializer, link);
        serve_tasks(link, status, board);
    });
}

}  // namespace mproc::detail
