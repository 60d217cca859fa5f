#include "mproc/detail/task_codec.hpp"

#include <cstring>
#include <string>

#include "worker/exception_capture.hpp"

namespace mproc::detail {

ResultWriter::ResultWriter(std::uint64_t sequence, WorkerStatus* status, ClaimBoard* board) noexcept
    : writer_(FrameKind::result, sequence, 0, 0,
              status != nullptr && status->max_value_bytes != 0 ? status->max_value_bytes
                                                                : default_max_payload_bytes()),
      sequence_(sequence),
      status_(status),
      board_(board),
      timed_(status != nullptr && status->timed.load(std::memory_order_relaxed) != 0) {
    if (status_ != nullptr) status_->sequence.store(sequence, std::memory_order_relaxed);
}

void ResultWriter::start_recording(std::uint32_t tasks) noexcept {
    area_ = &status_->results[status_->result_area % recorded_chunks];
    recording_tasks_ = tasks;
    std::atomic_ref(area_->sequence).store(0, std::memory_order_relaxed);
    // The cleared sequence is seen before any `done` byte this chunk clears or sets.
    std::atomic_thread_fence(std::memory_order_release);
    std::memset(area_->done, 0, tasks);
    std::atomic_ref(area_->sequence).store(sequence_, std::memory_order_release);
}

void ResultWriter::ok_void() {
    writer_.begin_item();
    writer_.buffer().push_back(std::byte{static_cast<std::uint8_t>(ResultStatus::ok)});
    writer_.end_item();
}

namespace {

// The frames below the entry that ran the task are the worker's own machinery, the same for
// every task: the user needs the frames from the throw down to the task.
void trim_below_entry(std::string& traceback) {
    auto entry = traceback.find("mproc::detail::run_chunk<");
    if (entry == std::string::npos) entry = traceback.find("mproc::detail::run_block_chunk<");
    if (entry == std::string::npos) return;
    const auto line_end = traceback.find('\n', entry);
    if (line_end != std::string::npos) traceback.resize(line_end + 1);
}

}  // namespace

void ResultWriter::error() noexcept {
    ErrorInfo info = capture_current_exception();
    trim_below_entry(info.traceback);
    write_error(info);
}

namespace {

// Only a failed allocation makes it fail; then the item stays missing and the pool fails it.
bool append_error(FrameWriter& writer, const ErrorInfo& info) noexcept {
    try {
        writer.begin_item();
        writer.buffer().push_back(std::byte{static_cast<std::uint8_t>(ResultStatus::error)});
        encode(writer.buffer(), info);
        writer.end_item();
        return true;
    } catch (...) {
        writer.abandon_item();
        return false;
    }
}

}  // namespace

void ResultWriter::write_error(const ErrorInfo& info) noexcept {
    if (append_error(writer_, info)) ++errors_;
}

void ResultWriter::unencodable() noexcept {
    try {
        std::string message;
        try {
            throw;
        } catch (const Error& error) {
            message = error.what();  // mproc's own messages say what the value was
        } catch (const std::exception& error) {
            message = std::string("mproc: a task's value could not be encoded: ") + error.what();
        } catch (...) {
            message = "mproc: a task's value could not be encoded: " +
                      std::string(kNonStdExceptionMessage);
        }
        writer_.begin_item();
        writer_.buffer().push_back(std::byte{static_cast<std::uint8_t>(ResultStatus::unencodable)});
        encode(writer_.buffer(), message);
        writer_.end_item();
        ++errors_;
    } catch (...) {
        // Only a failed allocation gets here; the item stays missing and the pool fails it.
        writer_.abandon_item();
    }
}

void ResultWriter::make_room_for(std::size_t fds) {
    if (fds > max_result_fds - fds_.size()) {
        const std::string before = fds_.empty()
                                       ? std::string()
                                       : ", with the " + std::to_string(fds_.size()) +
                                             " that the results before it in its chunk hold";
        throw SerializationError(
            "mproc: a task's result holds " + std::to_string(fds) + " shared handles" + before +
            ", more than the " + std::to_string(max_result_fds) +
            " the results of a chunk can carry (the kernel passes at most " +
            std::to_string(max_frame_fds) +
            " descriptors in a message, and a large frame's file takes one); return fewer "
            "handles per result, or one SharedArray that holds what they would hold");
    }
    fds_.reserve(fds_.size() + fds);
}

Frame ResultWriter::finish() {
    const auto tasks = block_ ? block_tasks_ : static_cast<std::uint32_t>(writer_.item_count());
    try {
        writer_.add_fds(std::move(fds_));
        if (!block_) return writer_.finish();
        return finish_block(writer_, FrameKind::result_block, block_tasks_,
                            claimed_ ? claimed_from_board : 0);
    } catch (...) {
        return finish_failed(tasks);
    }
}

// The results cannot leave the worker as they are, and only a frame can tell the pool why:
// each task fails with the reason, in a plain result frame (which the pool takes for any
// chunk's answer, as for a chunk whose entry is missing).
Frame ResultWriter::finish_failed(std::uint32_t tasks) {
    const ErrorInfo info = capture_current_exception();
    FrameWriter failed(FrameKind::result, sequence_);
    for (std::uint32_t task = 0; task < tasks; ++task) append_error(failed, info);
    return failed.finish();
}

}  // namespace mproc::detail
