#pragma once

// Large frames' files, written again for later frames instead of freed. A fresh memfd page
// costs about 3 µs to allocate and map on these machines, so a 16 MiB frame written into fresh
// pages costs about 14 ms, and under 1 ms in pages written before. Only lent files are kept:
// those of the frames a pool sends its workers and a worker sends back, which go to one
// receiver at a time, and whose sender holds them until that receiver is done. A file is
// written again only once its sender holds no frame in it any more and its receiver has handed
// it back (see payload_file.hpp), so no receiver ever sees a frame change under it. The files
// of other frames (a pipe's, a Process's) are freed with their frame.
//
// A pool also bounds how many files its frames hold (wait): a caller that encodes faster than
// the workers run would otherwise fill memory with frames, each in fresh pages.

#include <cstddef>
#include <memory>

#include "mproc/detail/frame.hpp"

namespace mproc::detail {

// An idle file of at least `bytes` bytes that was handed back; nullptr if none. Its size is
// sealed: the frame written into it is sent only if it fills the file exactly.
std::unique_ptr<PayloadFile> reuse_payload_file(std::size_t bytes);
// Takes back a file from reuse_payload_file() that was not sent after all.
void return_payload_file(std::unique_ptr<PayloadFile> file);
// A sealed file as a frame holds it: when the last holder lets go, the file is freed, or, if
// it was lent, becomes idle, waiting to be handed back.
std::shared_ptr<const PayloadFile> share_payload_file(std::unique_ptr<PayloadFile> file);

// Lends the frame's file, if it has one and this process wrote it, for reuse once the frame is
// dropped and the file handed back; the file counts as held until then. Returns whether it
// did.
bool lend_payload_file(const Frame& frame);
// Waits, at most a second, while pools hold more than `files` files; called by a pool's
// submitter (never by its collector, which is what lets them go).
void wait_for_lent_payload_files(std::size_t files);
// Frees the idle files, for a pool that is done.
void drop_idle_payload_files() noexcept;

}  // namespace mproc::detail
