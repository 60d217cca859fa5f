#pragma once

// What a worker reports about an exception that escaped a task. The parent turns it into an
// mproc::RemoteError; it travels between them through cereal.

#include <string>

// Included here so that serialize() works wherever an ErrorInfo is archived, without the
// archiving code having to know that its members are strings.
#include <cereal/types/string.hpp>

namespace mproc::detail {

// The facts about one exception: its demangled type name ("app::ParseError", "int"), its
// message (what(), or a fixed text when the type has none) and the worker's backtrace at the
// throw, one frame per line, innermost first. Any of them may be empty when it could not be
// found out.
struct ErrorInfo {
    std::string type_name;
    std::string message;
    std::string traceback;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(type_name, message, traceback);
    }
};

}  // namespace mproc::detail
