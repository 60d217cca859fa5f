#pragma once

// Names code (an entry that runs tasks, or a user's function) so that another process that
// runs the same program finds it. Every encode and decode of a code address goes through here:
// the one place to change when processes no longer share the parent's address layout.

#include <cstdint>

namespace mproc::detail {

class ResultWriter;
struct Frame;

// Runs the items of one task frame in a worker; one instantiation per (callable, arguments).
using EntryFn = void (*)(const Frame& frame, ResultWriter& out);

// Adds entry to the entries a worker will run and returns its address on the wire. Called
// during static initialisation, once per instantiation of an entry template.
std::uint64_t register_entry(EntryFn entry);
// The entry at a wire address; SerializationError when no such entry was registered.
EntryFn find_entry(std::uint64_t address);

// A function pointer on the wire, and back; decode throws SerializationError when the address
// does not lie in the code of a loaded module.
std::uint64_t encode_function_address(const void* function) noexcept;
const void* decode_function_address(std::uint64_t address);

}  // namespace mproc::detail
