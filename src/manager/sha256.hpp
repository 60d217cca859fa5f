#pragma once

// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the manager's authentication
// handshake. Small and dependency-free: mproc links no crypto library.

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

namespace mproc::detail {

using Sha256Digest = std::array<std::byte, 32>;

// An incremental SHA-256: update() any number of times, then finish() once.
class Sha256 {
  public:
    Sha256() noexcept;
    void update(std::span<const std::byte> bytes) noexcept;
    void update(std::string_view text) noexcept { update(std::as_bytes(std::span(text))); }
    Sha256Digest finish() noexcept;

  private:
    void compress(const std::byte* block) noexcept;

    std::array<std::uint32_t, 8> state_;
    std::array<std::byte, 64> block_{};
    std::size_t block_used_ = 0;
    std::uint64_t total_bytes_ = 0;
};

Sha256Digest sha256(std::span<const std::byte> bytes) noexcept;

// HMAC-SHA256 of the concatenation of `parts` under `key` (a key of any length).
Sha256Digest hmac_sha256(std::span<const std::byte> key,
                         std::initializer_list<std::span<const std::byte>> parts) noexcept;

// Compares two digests in time that does not depend on where they differ.
bool digests_equal(std::span<const std::byte> a, std::span<const std::byte> b) noexcept;

}  // namespace mproc::detail
