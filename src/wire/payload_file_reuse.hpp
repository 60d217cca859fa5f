#pragma once

// Large task frames' files, written again for later frames instead of freed. A fresh memfd page
// costs about 3 µs to allocate and map on these machines, so a 16 MiB frame written into fresh
// pages costs about 14 ms, and under 1 ms in pages written before. Only the pool lends files for
// reuse: it alone knows when every receiver is done with a frame (its chunk's results are back,
// or its worker is dead), while a pipe's or a Process's frame may still be read after its sender
// dropped it. The pool also bounds how many files it holds, which keeps a caller that encodes
// faster than the workers run from filling memory with frames.

#include <cstddef>
#include <memory>

#include "mproc/detail/frame.hpp"

namespace mproc::detail {

// An idle file that this process wrote before, of at least `bytes` bytes; nullptr if none. Its
// size is sealed: the frame written into it is sent only if it fills the file exactly.
std::unique_ptr<PayloadFile> reuse_payload_file(std::size_t bytes);
// Takes back a file from reuse_payload_file() that was not sent after all.
void return_payload_file(std::unique_ptr<PayloadFile> file);
// A sealed file as a frame holds it: if the frame is lent to a pool, the file becomes idle, for
// reuse, when the last holder lets go.
std::shared_ptr<const PayloadFile> share_payload_file(std::unique_ptr<PayloadFile> file);

// Called by the pool for each frame it takes: its file, if it has one, is reused once the pool
// drops the frame. Returns whether the frame has a file.
bool lend_payload_file(const Frame& frame);
// Waits, at most a second, while pools hold more than `files` lent files; called by a pool's
// submitter (never its collector, which is what returns them).
void wait_for_lent_payload_files(std::size_t files);
// Frees the idle files, for a pool that closes.
void drop_idle_payload_files() noexcept;

}  // namespace mproc::detail
