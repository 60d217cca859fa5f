#include "mproc/detail/wire_archive.hpp"

#include "worker/exception_capture.hpp"

namespace mproc::detail::wire_detail {

void throw_value_error(ValueFailure failure, const std::type_info& type, const char* what) {
    const std::string name = demangle(type.name());
    switch (failure) {
        case ValueFailure::unencodable:
            throw SerializationError("mproc: a value of type " + name +
                                     " could not be encoded: " + what);
        case ValueFailure::undecodable:
            throw SerializationError("mproc: a value of type " + name +
                                     " could not be decoded: " + what);
        case ValueFailure::corrupt:
            break;
    }
    throw SerializationError("mproc: bytes that arrived do not decode as a value of type " + name +
                             "; they are corrupt or truncated (" + std::string(what) + ")");
}

}  // namespace mproc::detail::wire_detail
