#pragma once

// How much memory the calling process holds, cheaply enough to ask after every chunk a worker
// runs (PoolOptions::max_memory_per_child).

#include <cstddef>

namespace mproc::detail {

// The resident set size of the calling process in bytes: the second field of
// /proc/<pid>/statm times the page size. 0 when /proc cannot be read, which a caller must
// take as "unknown" rather than "small". Thread-safe. Each calling thread keeps a descriptor
// open (close-on-exec) for its next call, closed when the thread ends; a forked child opens
// its own on its first call, since the parent's would go on reading the parent's figures.
std::size_t resident_bytes();

}  // namespace mproc::detail
