#include "mproc/detail/task_codec.hpp"
#include "worker/exception_capture.hpp"

namespace mproc::detail {

ResultWriter::ResultWriter(std::uint64_t sequence, WorkerStatus* status, ClaimBoard* board) noexcept
    : writer_(FrameKind::result, sequence, 0, 0,
              status != nullptr && status->max_value_bytes != 0 ? status->max_value_bytes
                                                                : default_max_payload_bytes()),
      status_(status),
      board_(board),
      timed_(status != nullptr && status->timed.load(std::memory_order_relaxed) != 0) {
    if (status_ != nullptr) status_->sequence.store(sequence, std::memory_order_relaxed);
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

void ResultWriter::write_error(const ErrorInfo& info) noexcept {
    try {
        writer_.begin_item();
        writer_.buffer().push_back(std::byte{static_cast<std::uint8_t>(ResultStatus::error)});
        encode(writer_.buffer(), info);
        writer_.end_item();
        ++errors_;
    } catch (...) {
        // Only a failed allocation gets here; the item stays missing and the pool fails it.
        writer_.abandon_item();
    }
}

Frame ResultWriter::finish() {
    writer_.add_fds(outbox_.take());
    if (!block_) return writer_.finish();
    return finish_block(writer_, FrameKind::result_block, block_tasks_,
                        claimed_ ? claimed_from_board : 0);
}

}  // namespace mproc::detail
