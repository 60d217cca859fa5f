#pragma once

// The handshake that opens every manager connection, before any request is read:
//
//   server -> client   hello:   magic, protocol version, a random 32-byte challenge
//   client -> server   answer:  HMAC(key, "client" | challenge), its own 32-byte challenge,
//                               the identity of its code
//   server -> client   verdict: accepted (1) or refused (0), the server's incarnation, and
//                               HMAC(key, "server" | both challenges | incarnation) proving
//                               that the server knows the key too
//
// A wrong key gets a refusal and the connection is closed; the server goes on serving the
// others. Both challenges are fresh random bytes, so an answer recorded once is of no use
// again. The code identity tells the server whether the client runs the same build at the
// same offsets, which an update function (named by its code address) needs. The incarnation
// is a random number drawn when the server starts: a proxy carries it, so that a proxy of a
// server that has ended is refused by a new server at the same address rather than given
// that server's container of the same id.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "manager/sha256.hpp"

namespace mproc::detail {

inline constexpr std::array<char, 8> handshake_magic = {'M', 'P', 'R', 'O', 'C', 'M', 'G', 'R'};
inline constexpr std::uint32_t handshake_version = 1;
using Challenge = std::array<std::byte, 32>;

struct Hello {
    std::array<char, 8> magic;
    std::uint32_t version;
    std::uint32_t reserved;
    Challenge challenge;
};
static_assert(sizeof(Hello) == 48);

struct Answer {
    Sha256Digest proof;
    Challenge challenge;
    std::uint64_t code_identity;
};
static_assert(sizeof(Answer) == 72);

struct Verdict {
    std::uint8_t accepted;
    std::array<std::byte, 7> reserved;
    std::uint64_t incarnation;
    Sha256Digest proof;
};
static_assert(sizeof(Verdict) == 48);

// Bytes from the kernel's random source (getrandom); mproc::Error if it fails.
void fill_random(std::span<std::byte> out);
Challenge random_challenge();

Sha256Digest client_proof(std::string_view key, const Challenge& server_challenge) noexcept;
Sha256Digest server_proof(std::string_view key, const Challenge& client_challenge,
                          const Challenge& server_challenge, std::uint64_t incarnation) noexcept;
// A random incarnation, never 0 (which stands for "not known yet").
std::uint64_t random_incarnation();

// This process's code identity: equal in two processes exactly when code addresses on the
// wire mean the same code in both (same build, code_address.hpp's encoding).
std::uint64_t code_identity();

}  // namespace mproc::detail
