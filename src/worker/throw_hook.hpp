#pragma once

// The internal interface of throw_hook.cpp, which replaces __cxa_throw to remember the stack
// at each throw, and __cxa_free_exception to forget it. That file must not see <cxxabi.h>,
// whose declarations of those functions would clash with the replacements, so everything that
// needs the C++ ABI lives on the other side of this header (exception_capture.cpp).

#include <typeinfo>

namespace mproc::detail::throw_hook {

// The most frames one throw records; deeper stacks lose their outermost frames.
inline constexpr int kMaxFrames = 64;

// Turns recording on for every thread of this process, for good. Resolves the real
// __cxa_throw and loads the unwinder now, so that the hook itself never allocates. Safe to
// call more than once.
void enable() noexcept;

// Copies into `frames` (room for `capacity`) the return addresses recorded when the live
// exception object at `object`, of type `type`, was thrown, by any thread, innermost first,
// starting at the function that threw. Returns how many were copied: 0 when that throw was not
// recorded (recording was off, the exception never went through __cxa_throw, or so many newer
// throws happened that its record was reused).
int recorded_frames(const void* object, const std::type_info* type, void** frames,
                    int capacity) noexcept;

}  // namespace mproc::detail::throw_hook
