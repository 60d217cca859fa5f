#include "manager/sha256.hpp"

#include <bit>
#include <cstring>

namespace mproc::detail {

namespace {

constexpr std::array<std::uint32_t, 64> round_constants = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

std::uint32_t load_big_endian(const std::byte* p) noexcept {
    return (std::to_integer<std::uint32_t>(p[0]) << 24) |
           (std::to_integer<std::uint32_t>(p[1]) << 16) |
           (std::to_integer<std::uint32_t>(p[2]) << 8) | std::to_integer<std::uint32_t>(p[3]);
}

void store_big_endian(std::byte* p, std::uint64_t value, int bytes) noexcept {
    for (int i = bytes - 1; i >= 0; --i) {
        p[i] = static_cast<std::byte>(value & 0xff);
        value >>= 8;
    }
}

}  // namespace

Sha256::Sha256() noexcept
    : state_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19} {}

void Sha256::compress(const std::byte* block) noexcept {
    std::array<std::uint32_t, 64> w;
    for (int i = 0; i < 16; ++i) w[i] = load_big_endian(block + 4 * i);
    for (int i = 16; i < 64; ++i) {
        const std::uint32_t s0 =
            std::rotr(w[i - 15], 7) ^ std::rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        const std::uint32_t s1 =
            std::rotr(w[i - 2], 17) ^ std::rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, h] = state_;
    for (int i = 0; i < 64; ++i) {
        const std::uint32_t s1 = std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25);
        const std::uint32_t choice = (e & f) ^ (~e & g);
        const std::uint32_t t1 = h + s1 + choice + round_constants[i] + w[i];
        const std::uint32_t s0 = std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22);
        const std::uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
        const std::uint32_t t2 = s0 + majority;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
    state_[4] += e;
    state_[5] += f;
    state_[6] += g;
    state_[7] += h;
}

void Sha256::update(std::span<const std::byte> bytes) noexcept {
    total_bytes_ += bytes.size();
    while (!bytes.empty()) {
        if (block_used_ == 0 && bytes.size() >= block_.size()) {
            compress(bytes.data());
            bytes = bytes.subspan(block_.size());
            continue;
        }
        const std::size_t take = std::min(bytes.size(), block_.size() - block_used_);
        std::memcpy(block_.data() + block_used_, bytes.data(), take);
        block_used_ += take;
        bytes = bytes.subspan(take);
        if (block_used_ == block_.size()) {
            compress(block_.data());
            block_used_ = 0;
        }
    }
}

Sha256Digest Sha256::finish() noexcept {
    const std::uint64_t bit_length = total_bytes_ * 8;
    std::array<std::byte, 72> padding{};
    padding[0] = std::byte{0x80};
    // Pad to 56 bytes past a block boundary, then the 8-byte length: the message ends a block.
    const std::size_t pad = block_used_ < 56 ? 56 - block_used_ : 64 + 56 - block_used_;
    update(std::span(padding).first(pad));
    std::array<std::byte, 8> length;
    store_big_endian(length.data(), bit_length, 8);
    update(length);
    Sha256Digest digest;
    for (int i = 0; i < 8; ++i) store_big_endian(digest.data() + 4 * i, state_[i], 4);
    return digest;
}

Sha256Digest sha256(std::span<const std::byte> bytes) noexcept {
    Sha256 hash;
    hash.update(bytes);
    return hash.finish();
}

Sha256Digest hmac_sha256(std::span<const std::byte> key,
                         std::initializer_list<std::span<const std::byte>> parts) noexcept {
    std::array<std::byte, 64> block_key{};
    if (key.size() > block_key.size()) {
        const Sha256Digest hashed = sha256(key);
        std::memcpy(block_key.data(), hashed.data(), hashed.size());
    } else if (!key.empty()) {
        std::memcpy(block_key.data(), key.data(), key.size());
    }
    std::array<std::byte, 64> inner_pad;
    std::array<std::byte, 64> outer_pad;
    for (std::size_t i = 0; i < block_key.size(); ++i) {
        inner_pad[i] = block_key[i] ^ std::byte{0x36};
        outer_pad[i] = block_key[i] ^ std::byte{0x5c};
    }
    Sha256 inner;
    inner.update(inner_pad);
    for (const auto& part : parts) inner.update(part);
    const Sha256Digest inner_digest = inner.finish();
    Sha256 outer;
    outer.update(outer_pad);
    outer.update(inner_digest);
    return outer.finish();
}

bool digests_equal(std::span<const std::byte> a, std::span<const std::byte> b) noexcept {
    if (a.size() != b.size()) return false;
    // volatile keeps the compiler from stopping at the first difference.
    volatile unsigned char difference = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        difference = difference | std::to_integer<unsigned char>(a[i] ^ b[i]);
    }
    return difference == 0;
}

}  // namespace mproc::detail
