#pragma once

// The encoding of values inside a frame's items: a pair of cereal archives that append to a
// byte vector or a frame's buffer and read from a byte span. The bytes are cereal's binary layout
// (host byte order, 64-bit size prefixes, no names), and the reader treats them as hostile: bytes
// that do not decode give SerializationError, never a read past the end, undefined behaviour, or an
// allocation larger than the bytes that arrived can justify.
//
// Including this header makes every type below encodable, with no further include:
// arithmetic types, enums, std::string, std::vector, std::array, std::map, std::unordered_map,
// std::set, std::unordered_set, std::pair, std::tuple, std::optional, std::variant,
// std::monostate and std::chrono durations and time points, nested in any way, and any class
// with a cereal serialize() or save()/load() of its own.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include "mproc/detail/frame_buffer.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

// Appends the encoding of every value given to it to a caller's byte vector or frame buffer.
// Each primitive is one copy into it, with no stream in between, because encoding sits on the
// path of every task and every result.
class WireOutputArchive
    : public cereal::OutputArchive<WireOutputArchive, cereal::AllowEmptyClassElision> {
  public:
    // Appends to out; what out held before is kept. out must outlive the archive.
    explicit WireOutputArchive(std::vector<std::byte>& out) : OutputArchive(this), vector_(&out) {}
    explicit WireOutputArchive(FrameBuffer& out) : OutputArchive(this), frame_(&out) {}

    // Appends n bytes from data. Throws std::bad_alloc when the vector cannot grow, mproc::Error
    // when a frame's file cannot.
    void write_bytes(const void* data, std::size_t n) {
        if (frame_ != nullptr) {
            frame_->append(data, n);
        } else {
            const auto* first = static_cast<const std::byte*>(data);
            vector_->insert(vector_->end(), first, first + n);
        }
    }

  private:
    std::vector<std::byte>* vector_ = nullptr;
    FrameBuffer* frame_ = nullptr;
};

// What encode() appends to.
template <class Out>
concept byte_sink = std::is_same_v<Out, std::vector<std::byte>> || std::is_same_v<Out, FrameBuffer>;

// Reads values back from bytes that WireOutputArchive wrote, or from bytes that claim to be
// such. It never reads past the end of its span, and it refuses any size prefix larger than the
// bytes that remain, so no container is ever sized from a number the bytes cannot back.
class WireInputArchive
    : public cereal::InputArchive<WireInputArchive, cereal::AllowEmptyClassElision> {
  public:
    // Reads from bytes, which must outlive the archive.
    explicit WireInputArchive(std::span<const std::byte> bytes)
        : InputArchive(this), rest_(bytes) {}

    // Copies the next n bytes to data and moves past them. Throws SerializationError, and
    // copies nothing, when fewer than n bytes remain.
    void read_bytes(void* data, std::size_t n) {
        if (n > rest_.size()) refuse_read(n);
        // memcpy's pointers must not be null even for zero bytes, and an empty
        // vector's data() may be.
        if (n != 0) std::memcpy(data, rest_.data(), n);
        rest_ = rest_.subspan(n);
    }

    // Moves past the next n bytes and returns where they start. Throws SerializationError, and
    // moves nothing, when fewer than n bytes remain.
    const std::byte* take_bytes(std::size_t n) {
        if (n > rest_.size()) refuse_read(n);
        const std::byte* first = rest_.data();
        rest_ = rest_.subspan(n);
        return first;
    }

    // The bytes not read yet.
    std::size_t remaining() const noexcept { return rest_.size(); }

  private:
    [[noreturn]] void refuse_read(std::size_t n) const {
        throw SerializationError("mproc: a value needs " + std::to_string(n) +
                                 " more bytes but only " + std::to_string(rest_.size()) +
                                 " remain; the bytes are truncated or corrupt");
    }

    std::span<const std::byte> rest_;
};

// ---------------------------------------------------------------------------------------------
// The primitives cereal asks an archive for, modelled on cereal's binary archive. They are
// found by argument-dependent lookup through the archive type. The prologue and epilogue hooks
// are cereal's own no-op defaults: a binary layout carries no per-value framing.

// Arithmetic values travel as their object representation, in host byte order: both ends of a
// frame are the same build on the same machine. bool has its own overloads below.
template <class T>
requires(std::is_arithmetic_v<T> &&
         !std::is_same_v<T, bool>) void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar,
                                                                  const T& value) {
    ar.write_bytes(std::addressof(value), sizeof value);
}

// Throws SerializationError when fewer than sizeof(T) bytes remain. Every byte pattern is a
// valid value of an integer or floating-point type, so nothing else can go wrong.
template <class T>
requires(std::is_arithmetic_v<T> &&
         !std::is_same_v<T, bool>) void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, T& value) {
    ar.read_bytes(std::addressof(value), sizeof value);
}

// A bool is one byte, 0 or 1.
template <class T>
requires std::is_same_v<T, bool>
void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar, const T& value) {
    const std::uint8_t byte = value ? 1 : 0;
    ar.write_bytes(&byte, 1);
}

// Throws SerializationError when no byte remains, or when the byte is neither 0 nor 1: a bool
// object holding any other byte is undefined behaviour, and such a byte can only come from
// corruption, so it is refused rather than folded to true.
template <class T>
requires std::is_same_v<T, bool>
void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, T& value) {
    std::uint8_t byte = 0;
    ar.read_bytes(&byte, 1);
    if (byte > 1) {
        throw SerializationError("mproc: a bool is encoded as the byte " + std::to_string(byte) +
                                 " rather than 0 or 1; the bytes are corrupt");
    }
    value = byte == 1;
}

// Names are for text archives; the binary layout drops them.
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar, const cereal::NameValuePair<T>& pair) {
    ar(pair.value);
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, cereal::NameValuePair<T>& pair) {
    ar(pair.value);
}

// A container's element count, as cereal's 64-bit size_type.
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar, const cereal::SizeTag<T>& tag) {
    ar(tag.size);
}

// Throws SerializationError when the count is larger than the bytes that remain. Every element
// of a string or of a vector of numbers takes at least one byte, so a larger count is a lie,
// and it must be refused here, before cereal sizes the container from it. The price: a
// container whose elements encode to zero bytes (empty structs, std::monostate, std::tuple<>)
// cannot hold more elements than the bytes that follow its count; such a value is refused.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, cereal::SizeTag<T>& tag) {
    ar(tag.size);
    if (static_cast<std::uint64_t>(tag.size) > ar.remaining()) {
        throw SerializationError("mproc: a container claims " + std::to_string(tag.size) +
                                 " elements but only " + std::to_string(ar.remaining()) +
                                 " bytes follow; the bytes are corrupt");
    }
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar, const cereal::BinaryData<T>& data) {
    ar.write_bytes(data.data, static_cast<std::size_t>(data.size));
}

// Throws SerializationError when fewer bytes remain than the block needs, or when the block is
// an array of bool and a byte is neither 0 nor 1.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar, cereal::BinaryData<T>& data) {
    const auto size = static_cast<std::size_t>(data.size);
    ar.read_bytes(data.data, size);
    // cereal hands std::array<bool, N> and bool[N] over as one block. Their bytes are checked
    // as bytes, which reads no bool, and a bad block is zeroed so that no bool is left holding
    // an invalid representation.
    using Element = std::remove_cv_t<
        std::remove_all_extents_t<std::remove_pointer_t<std::remove_reference_t<T>>>>;
    if constexpr (std::is_same_v<Element, bool>) {
        const auto* bytes = static_cast<const unsigned char*>(data.data);
        if (std::any_of(bytes, bytes + size, [](unsigned char b) { return b > 1; })) {
            std::memset(data.data, 0, size);
            throw SerializationError(
                "mproc: an array of bool holds a byte other than 0 or 1; the bytes are corrupt");
        }
    }
}

// Enums travel as their underlying integer (cereal's save_minimal and load_minimal). An enum
// with a fixed underlying type (every enum class, and `enum E : int`) can hold any value of
// that type, so any bytes decode. An unscoped enum without one can only hold the values of its
// enumerators' bit range; a corrupt value would be undefined behaviour the moment it is read,
// and that range cannot be known here. Such enums are therefore refused at compile time.

namespace wire_detail {

template <class T>
concept enum_without_fixed_underlying_type = std::is_enum_v<T> && !requires {
    T{std::underlying_type_t<T>{}};
};

template <class T>
inline constexpr bool always_false = false;

}  // namespace wire_detail

template <class T>
requires wire_detail::enum_without_fixed_underlying_type<T> std::underlying_type_t<T>
CEREAL_SAVE_MINIMAL_FUNCTION_NAME(const WireOutputArchive&, const T&) {
    static_assert(wire_detail::always_false<T>,
                  "mproc sends an unscoped enum only when it has a fixed underlying type: "
                  "declare it as `enum E : int { ... }` or make it an enum class");
    return {};
}

template <class T>
requires wire_detail::enum_without_fixed_underlying_type<
    typename cereal::common_detail::is_enum<T>::type>
void CEREAL_LOAD_MINIMAL_FUNCTION_NAME(
    const WireInputArchive&, T&&, const typename cereal::common_detail::is_enum<T>::base_type&) {
    static_assert(wire_detail::always_false<T>,
                  "mproc receives an unscoped enum only when it has a fixed underlying type: "
                  "declare it as `enum E : int { ... }` or make it an enum class");
}

// ---------------------------------------------------------------------------------------------
// std::vector, more carefully than cereal's generic version, in the same layout (a size tag,
// then the elements). cereal resizes a vector to its count before it reads one element, so a
// count that the bytes do not back would allocate count * sizeof(T) bytes for nothing. Here a
// vector of numbers or std::byte is sized only when its whole block is present, and any other
// vector grows one decoded element at a time, so what is allocated follows what has arrived.
// vector<bool> keeps cereal's version, which reads one checked bool per element.

namespace wire_detail {

// Element types whose encoding is their object representation and for which every byte pattern
// is a valid value, so that a whole vector is one copy.
template <class T>
inline constexpr bool is_block_copyable =
    (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) || std::is_same_v<T, std::byte>;

}  // namespace wire_detail

template <class T, class A>
requires(!std::is_same_v<T, bool>) void CEREAL_SAVE_FUNCTION_NAME(WireOutputArchive& ar,
                                                                  const std::vector<T, A>& vector) {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(vector.size())));
    if constexpr (wire_detail::is_block_copyable<T>) {
        ar.write_bytes(vector.data(), vector.size() * sizeof(T));
    } else {
        for (const auto& element : vector) ar(element);
    }
}

// Throws SerializationError when the count is larger than the bytes that follow can hold, or
// when an element does not decode.
template <class T, class A>
requires(!std::is_same_v<T, bool>) void CEREAL_LOAD_FUNCTION_NAME(WireInputArchive& ar,
                                                                  std::vector<T, A>& vector) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    vector.clear();
    if constexpr (wire_detail::is_block_copyable<T>) {
        if (count > ar.remaining() / sizeof(T)) {
            throw SerializationError("mproc: a vector claims " + std::to_string(count) +
                                     " elements of " + std::to_string(sizeof(T)) +
                                     " bytes but only " + std::to_string(ar.remaining()) +
                                     " bytes follow; the bytes are corrupt");
        }
        if constexpr (sizeof(T) == 1) {
            // One copy, without first zero-filling the vector: the bytes of a large argument
            // are worth not touching twice.
            const auto* first = reinterpret_cast<const T*>(ar.take_bytes(count));
            vector.assign(first, first + count);
        } else {
            vector.resize(static_cast<std::size_t>(count));
            ar.read_bytes(vector.data(), vector.size() * sizeof(T));
        }
    } else {
        // Reserving no more elements than there are bytes left keeps the first allocation in
        // proportion to the message; past that the vector grows as elements actually decode.
        vector.reserve(static_cast<std::size_t>(
            std::min<std::uint64_t>(count, ar.remaining() / sizeof(T) + 1)));
        for (cereal::size_type i = 0; i < count; ++i) {
            vector.emplace_back();
            ar(vector.back());
        }
    }
}

// ---------------------------------------------------------------------------------------------

namespace wire_detail {

// What went wrong with a value, for its SerializationError's message.
enum class ValueFailure { unencodable, undecodable, corrupt };

// Throws SerializationError about a value of type `type` that could not be encoded or decoded
// (or whose bytes are corrupt); `what` is the message of the exception that said so, kept whole.
[[noreturn]] void throw_value_error(ValueFailure failure, const std::type_info& type,
                                    const char* what);

// Archives one value, turning what its own save or load throws (and cereal's refusals) into
// SerializationError: an mproc::Error passes unchanged, and while encoding so does
// std::bad_alloc.
template <class T, class Archive>
void archive_value(Archive& archive, T& value) {
    constexpr bool encoding = std::is_same_v<Archive, WireOutputArchive>;
    try {
        archive(value);
    } catch (const Error&) {
        throw;
    } catch (const cereal::Exception& e) {
        throw_value_error(encoding ? ValueFailure::unencodable : ValueFailure::corrupt, typeid(T),
                          e.what());
    } catch (const std::bad_alloc&) {
        if constexpr (encoding) throw;
        // Unreachable from a size prefix (they are checked first), but a type's own load may
        // still size something from the bytes.
        throw_value_error(ValueFailure::corrupt, typeid(T), "an allocation failed");
    } catch (const std::exception& e) {
        throw_value_error(encoding ? ValueFailure::unencodable : ValueFailure::undecodable,
                          typeid(T), e.what());
    }
}

}  // namespace wire_detail

// Appends the encoding of values, in order, to out. Throws SerializationError when a value
// cannot be encoded (cereal refuses it, or its own save throws: the message names its type and
// keeps the save's message), and lets std::bad_alloc and mproc::Error through. On any exception
// out is cut back to the size it had, so a half-written value never reaches a frame.
template <byte_sink Out, class... T>
void encode(Out& out, const T&... values) {
    if constexpr ((wire_detail::is_block_copyable<T> && ...)) {
        // The same bytes as the archive writes, without building one: on a tiny task, the
        // archive's construction costs more than the task.
        const std::size_t start = out.size();
        out.resize(start + (sizeof(T) + ... + 0));
        std::byte* at = out.data() + start;
        ((std::memcpy(at, std::addressof(values), sizeof(T)), at += sizeof(T)), ...);
        return;
    }
    const std::size_t start = out.size();
    try {
        WireOutputArchive archive(out);
        (wire_detail::archive_value(archive, values), ...);
    } catch (...) {
        out.resize(start);
        throw;
    }
}

// Decodes values, in order, from in, which must hold exactly their encoding. Throws
// SerializationError when the bytes are truncated or corrupt (a read past the end, a size
// prefix the bytes cannot back, a bool byte other than 0 or 1, a variant index out of range,
// an allocation that fails), when a type's own load throws (the message names the type and
// keeps the load's message), or when bytes are left over after the last value. An mproc::Error
// from a type's own load passes through unchanged. On an exception the values may hold anything
// valid; they must not be trusted.
template <class... T>
void decode(std::span<const std::byte> in, T&... values) {
    if constexpr ((wire_detail::is_block_copyable<T> && ...)) {
        // Plain copies, as in encode, with the archive's checks: no byte read past the end,
        // none left over.
        constexpr std::size_t size = (sizeof(T) + ... + 0);
        if (in.size() != size) {
            throw SerializationError("mproc: values of " + std::to_string(size) +
                                     " bytes arrived as " + std::to_string(in.size()) +
                                     " bytes; the bytes are truncated, corrupt or were encoded "
                                     "as other types");
        }
        const std::byte* at = in.data();
        ((std::memcpy(std::addressof(values), at, sizeof(T)), at += sizeof(T)), ...);
        return;
    }
    WireInputArchive archive(in);
    (wire_detail::archive_value(archive, values), ...);
    if (archive.remaining() != 0) {
        throw SerializationError("mproc: " + std::to_string(archive.remaining()) +
                                 " bytes are left over after the decoded values; the "
                                 "bytes are corrupt or were encoded as other types");
    }
}

}  // namespace mproc::detail

// cereal's machinery for std types and for user classes asks these to find the archives.
CEREAL_REGISTER_ARCHIVE(mproc::detail::WireOutputArchive)
CEREAL_REGISTER_ARCHIVE(mproc::detail::WireInputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(mproc::detail::WireInputArchive, mproc::detail::WireOutputArchive)
