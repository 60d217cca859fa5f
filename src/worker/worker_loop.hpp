#pragma once

#include <memory>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/worker_status.hpp"
#include "transport/link.hpp"

namespace mproc::detail {

// A worker's life after its process started: run the initializer, then run task frames from
// the pool and send back their results until told to stop or until the pool is gone. Ends the
// process (child_exit.hpp: with exit_link_broken when its link to the pool fails); never
// returns, and never throws into the stack it was forked from.
[[noreturn]] void run_worker(std::unique_ptr<Link> pool, WorkerStatus& status, ClaimBoard& board,
                             const Frame* initializer) noexcept;
// Tells the pool that this worker cannot serve (its initializer threw, or it runs another
// build): sends the error being handled as an init_failed frame and ends the process.
[[noreturn]] void refuse_to_serve(Link& pool, int exit_code) noexcept;

}  // namespace mproc::detail
