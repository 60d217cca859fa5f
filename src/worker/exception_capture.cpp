#include "worker/exception_capture.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

#include "worker/throw_hook.hpp"

namespace mproc::detail {

namespace {

struct FreeDeleter {
    void operator()(void* p) const noexcept { std::free(p); }
};

std::string hex(std::uintptr_t value) {
    char digits[2 * sizeof value];
    const auto end = std::to_chars(digits, digits + sizeof digits, value, 16).ptr;
    return "0x" + std::string(digits, end);
}

// One frame: "#3  app::parse(std::string const&) + 0x4a  [/usr/bin/app+0x1f2a]". The module
// offset is what `addr2line -e /usr/bin/app 0x1f2a` needs to find the source line, which
// matters most for functions that are not in the dynamic symbol table and show as "??".
std::string describe_frame(int index, void* address) {
    // Built with += only: g++ 12 at -O2 reports a false -Wrestrict on "literal" + std::string.
    std::string line = "#";
    line += std::to_string(index);
    line += "  ";
    const auto pc = reinterpret_cast<std::uintptr_t>(address);
    // A return address can lie just past the end of its function when the call was the last
    // instruction (a call to a [[noreturn]] function such as __cxa_throw), so look up the
    // byte before it.
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(pc - 1), &info) == 0) {
        line += "??  [";
        line += hex(pc);
        line += "]";
        return line;
    }
    if (info.dli_sname != nullptr && info.dli_saddr != nullptr) {
        line += demangle(info.dli_sname);
        line += " + ";
        line += hex(pc - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
    } else {
        line += "??";
    }
    line += "  [";
    line += info.dli_fname != nullptr && info.dli_fname[0] != '\0' ? info.dli_fname : "?";
    line += "+";
    line += hex(pc - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
    line += "]";
    return line;
}

// Appends each frame on its own line, building in place so that a failure part way (out of
// memory) leaves the frames done so far.
void append_frames(std::string& out, void* const* frames, int count) {
    for (int i = 0; i < count; ++i) {
        if (!out.empty()) out += '\n';
        out += describe_frame(i, frames[i]);
    }
}

// The address of the thrown object, which is how the throw hook keys its records.
// libstdc++'s std::exception_ptr is exactly a pointer to that object, and has no accessor.
const void* object_of(const std::exception_ptr& exception) noexcept {
    static_assert(sizeof(std::exception_ptr) == sizeof(void*));
    const void* object = nullptr;
    std::memcpy(&object, static_cast<const void*>(&exception), sizeof object);
    return object;
}

std::string message_of_current() {
    try {
        throw;
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return std::string(kNonStdExceptionMessage);
    }
}

}  // namespace

std::string demangle(const char* mangled) {
    int status = 0;
    std::unique_ptr<char, FreeDeleter> plain(
        abi::__cxa_demangle(mangled, nullptr, nullptr, &status));
    return status == 0 && plain != nullptr ? std::string(plain.get()) : std::string(mangled);
}

void enable_throw_backtraces() noexcept {
    throw_hook::enable();
}

// noinline so that __builtin_return_address(0) is the caller's frame, where a fallback
// backtrace starts.
[[gnu::noinline]] ErrorInfo capture_current_exception() noexcept {
    ErrorInfo info;
    try {
        // Empty both outside a catch block and for an exception that is not a C++ one (the
        // forced unwinding of a cancelled thread): neither may be rethrown or inspected.
        const std::exception_ptr current = std::current_exception();
        const std::type_info* type = current ? abi::__cxa_current_exception_type() : nullptr;
        if (type == nullptr) {
            info.type_name = "(unknown)";
            info.message = "(no C++ exception is being handled)";
        } else {
            info.type_name = demangle(type->name());
            info.message = message_of_current();
        }

        void* frames[throw_hook::kMaxFrames];
        const int recorded =
            throw_hook::recorded_frames(object_of(current), type, frames, throw_hook::kMaxFrames);
        if (recorded > 0) {
            append_frames(info.traceback, frames, recorded);
        } else {
            const int depth = ::backtrace(frames, throw_hook::kMaxFrames);
            // Start at our caller; the frames above it are this function and its helpers.
            int first = 0;
            const void* caller = __builtin_return_address(0);
            while (first < depth && frames[first] != caller) ++first;
            if (first == depth) first = 0;
            info.traceback =
                "(no backtrace was recorded at the throw; this is where it was caught)";
            append_frames(info.traceback, frames + first, depth - first);
        }
    } catch (...) {
        // Out of memory or similar: what was filled in so far is the best report there is.
    }
    return info;
}

}  // namespace mproc::detail
