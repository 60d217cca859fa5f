#include "worker/worker_loop.hpp"

#include <unistd.h>

#include <cstdio>
#include <exception>

#include "mproc/detail/task_codec.hpp"
#include "transport/socket_link.hpp"
#include "worker/exception_capture.hpp"

namespace mproc::detail {

namespace {

[[noreturn]] void end_worker(int code) {
    std::fflush(nullptr);
    ::_exit(code);
}

// Runs a task frame. A frame whose entry cannot be found fails each of its tasks with that
// error, so the pool hears of it task by task like any other failure.
Frame run_frame(const Frame& frame, WorkerStatus* status) {
    const FrameHeader header = frame.header();
    ResultWriter out(header.sequence, status);
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

// Runs the initializer; if it threw, tells the pool why and ends the worker.
void initialize(const Frame& initializer, Link& link) {
    Frame results = run_frame(initializer, nullptr);
    const auto header = results.header();
    if (header.item_count == 1 && results.payload().size() > sizeof(ItemLength) &&
        results.payload()[sizeof(ItemLength)] == std::byte{static_cast<std::uint8_t>(ResultStatus::ok)}) {
        return;
    }
    FrameHeader failed = header;
    failed.kind = static_cast<std::uint16_t>(FrameKind::init_failed);
    std::memcpy(results.bytes.data(), &failed, sizeof failed);
    link.send(std::move(results));
    end_worker(1);
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
    end_worker(exit_code);
}

void run_worker(std::unique_ptr<Link> pool, WorkerStatus& status, const Frame* initializer) {
    enable_throw_backtraces();
    Link& link = *pool;
    if (initializer != nullptr) initialize(*initializer, link);
    while (true) {
        std::optional<Frame> frame;
        try {
            frame = link.receive();
        } catch (const std::exception& error) {
            std::fprintf(stderr, "mproc worker %d: %s\n", static_cast<int>(::getpid()), error.what());
            end_worker(2);
        }
        if (!frame || frame->kind() == FrameKind::stop) end_worker(0);
        if (frame->kind() != FrameKind::task) continue;
        if (!link.send(run_frame(*frame, &status))) end_worker(0);
    }
}

}  // namespace mproc::detail
