#pragma once

#include <string>

namespace mproc::detail {

// What identifies the build of the running program: its GNU build-id note when the linker
// wrote one, else the identity of its file (device, inode, size, modification time). Two
// processes with the same value run the same code at the same offsets.
const std::string& program_build_id();

}  // namespace mproc::detail
