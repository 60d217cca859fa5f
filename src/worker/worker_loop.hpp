#pragma once

#include "mproc/detail/frame.hpp"
#include "mproc/detail/worker_status.hpp"

namespace mproc::detail {

// A worker's life after its process started: run the initializer, then run task frames from
// the pool and send back their results until told to stop or until the pool is gone. Ends the
// process; never returns.
[[noreturn]] void run_worker(UniqueFd pool_socket, WorkerStatus& status, const Frame* initializer);

}  // namespace mproc::detail
