#pragma once

#include "worker/spawn.hpp"

namespace mproc::detail {

// Serves the role of a process that spawn_program started, reading its bootstrap from
// channel; ends the process, and never throws into the main that called mproc::init.
[[noreturn]] void serve_spawned_role(Role role, UniqueFd channel) noexcept;

}  // namespace mproc::detail
