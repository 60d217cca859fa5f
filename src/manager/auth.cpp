#include "manager/auth.hpp"

#include <sys/random.h>

#include <cerrno>
#include <string>

#include "mproc/detail/code_address.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "os/build_id.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

std::span<const std::byte> bytes_of(std::string_view text) noexcept {
    return std::as_bytes(std::span(text.data(), text.size()));
}

}  // namespace

void fill_random(std::span<std::byte> out) {
    while (!out.empty()) {
        const ssize_t got = ::getrandom(out.data(), out.size(), 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw_system_error("getrandom");
        }
        out = out.subspan(static_cast<std::size_t>(got));
    }
}

Challenge random_challenge() {
    Challenge challenge;
    fill_random(challenge);
    return challenge;
}

Sha256Digest client_proof(std::string_view key, const Challenge& server_challenge) noexcept {
    return hmac_sha256(bytes_of(key), {bytes_of("mproc-manager-client"), server_challenge});
}

Sha256Digest server_proof(std::string_view key, const Challenge& client_challenge,
                          const Challenge& server_challenge, std::uint64_t incarnation) noexcept {
    return hmac_sha256(bytes_of(key),
                       {bytes_of("mproc-manager-server"), client_challenge, server_challenge,
                        std::as_bytes(std::span(&incarnation, 1))});
}

std::uint64_t random_incarnation() {
    std::uint64_t incarnation = 0;
    while (incarnation == 0) fill_random(std::as_writable_bytes(std::span(&incarnation, 1)));
    return incarnation;
}

std::uint64_t code_identity() {
    static const std::uint64_t identity = [] {
        // The wire address of one function of mproc stands for the layout of the code; the
        // build id says that the code is the same.
        const std::uint64_t anchor =
            encode_function_address(reinterpret_cast<const void*>(&find_update_entry));
        const std::string& build = program_build_id();
        std::uint64_t hash = fnv1a(0xcbf29ce484222325, &anchor, sizeof anchor);
        return fnv1a(hash, build.data(), build.size());
    }();
    return identity;
}

}  // namespace mproc::detail
