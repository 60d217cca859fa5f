#include "manager/address.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstring>

#include "manager/auth.hpp"
#include "mproc/errors.hpp"
#include "os/system_error.hpp"

namespace mproc::detail {

namespace {

constexpr std::string_view unix_prefix = "unix:@";

[[noreturn]] void bad_address(std::string_view text, std::string_view why) {
    throw Error("mproc: '" + std::string(text) + "' is not a manager address (" + std::string(why) +
                "); use \"host:port\" for TCP or \"unix:@name\" for a local socket");
}

sockaddr_un abstract_socket_address(const std::string& name, socklen_t& length) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    // An abstract name starts with a zero byte and is not terminated.
    std::memcpy(address.sun_path + 1, name.data(), name.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    return address;
}

sockaddr_in ipv4_socket_address(const ManagerAddress& address) {
    sockaddr_in result{};
    result.sin_family = AF_INET;
    result.sin_port = htons(address.port);
    const std::string& host = address.host;
    if (host.empty() || host == "*") {
        result.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (host == "localhost") {
        result.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (::inet_pton(AF_INET, host.c_str(), &result.sin_addr) != 1) {
        addrinfo hints{};
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        const int error = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
        if (error != 0 || found == nullptr) {
            throw Error("mproc: cannot resolve the manager host '" + host +
                        "': " + ::gai_strerror(error));
        }
        result.sin_addr = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
        ::freeaddrinfo(found);
    }
    return result;
}

std::string describe_ipv4(const sockaddr_in& address) {
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

UniqueFd new_socket(int family, bool nonblocking) {
    UniqueFd socket(
        ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
    if (!socket) throw_system_error("socket");
    return socket;
}

int poll_millis(const Deadline& deadline) {
    const auto left = deadline.remaining();
    if (!left) return -1;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*left).count();
    return static_cast<int>(std::clamp<long long>(ms, 0, INT_MAX));
}

// Waits for events on one socket; false past the deadline.
bool wait_for(int socket, short events, const Deadline& deadline) {
    while (true) {
        pollfd entry{socket, events, 0};
        const int ready = ::poll(&entry, 1, poll_millis(deadline));
        if (ready > 0) return true;
        if (ready == 0 && deadline.passed()) return false;
        if (ready < 0 && errno != EINTR) throw_system_error("poll");
    }
}

}  // namespace

ManagerAddress parse_manager_address(std::string_view text) {
    ManagerAddress address;
    if (text.starts_with(unix_prefix)) {
        address.family = ManagerAddress::Family::unix_abstract;
        address.name = std::string(text.substr(unix_prefix.size()));
        if (address.name.empty()) bad_address(text, "the socket name is empty");
        if (address.name.size() > sizeof(sockaddr_un::sun_path) - 1) {
            bad_address(text, "the socket name is too long");
        }
        return address;
    }
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) bad_address(text, "no port");
    address.family = ManagerAddress::Family::tcp;
    address.host = std::string(text.substr(0, colon));
    const std::string_view port = text.substr(colon + 1);
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || error != std::errc() || end != port.data() + port.size() || value > 65535) {
        bad_address(text, "the port is not a number from 0 to 65535");
    }
    address.port = static_cast<std::uint16_t>(value);
    return address;
}

std::string private_manager_address() {
    std::array<std::byte, 8> random;
    fill_random(random);
    std::string name = "unix:@mproc-manager-" + std::to_string(::getpid()) + "-";
    for (std::byte b : random) {
        constexpr char digits[] = "0123456789abcdef";
        name += digits[std::to_integer<unsigned>(b) >> 4];
        name += digits[std::to_integer<unsigned>(b) & 15];
    }
    return name;
}

UniqueFd listen_at(const ManagerAddress& address, std::string& bound) {
    UniqueFd socket;
    if (address.is_unix()) {
        socket = new_socket(AF_UNIX, true);
        socklen_t length = 0;
        const sockaddr_un unix_address = abstract_socket_address(address.name, length);
        if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&unix_address), length) != 0) {
            throw_system_error("bind to unix:@" + address.name);
        }
        bound = std::string(unix_prefix) + address.name;
    } else {
        socket = new_socket(AF_INET, true);
        const int one = 1;
        ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        const sockaddr_in ipv4 = ipv4_socket_address(address);
        if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&ipv4), sizeof ipv4) != 0) {
            throw_system_error("bind to " + describe_ipv4(ipv4));
        }
        sockaddr_in actual{};
        socklen_t length = sizeof actual;
        if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&actual), &length) != 0) {
            throw_system_error("getsockname");
        }
        bound = describe_ipv4(actual);
    }
    if (::listen(socket.get(), SOMAXCONN) != 0) throw_system_error("listen");
    return socket;
}

UniqueFd connect_to(const ManagerAddress& address, const std::string& text,
                    const Deadline& deadline) {
    // Connect without blocking, so that an unreachable host costs at most the deadline.
    UniqueFd socket;
    int result;
    if (address.is_unix()) {
        socket = new_socket(AF_UNIX, true);
        socklen_t length = 0;
        const sockaddr_un unix_address = abstract_socket_address(address.name, length);
        result = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&unix_address), length);
    } else {
        socket = new_socket(AF_INET, true);
        const sockaddr_in ipv4 = ipv4_socket_address(address);
        result = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&ipv4), sizeof ipv4);
    }
    if (result != 0 && errno != EINPROGRESS && errno != EAGAIN && errno != EINTR) {
        throw Error("mproc: cannot reach the manager at " + text + ": " + std::strerror(errno) +
                    " (has it ended?)");
    }
    if (result != 0) {
        if (!wait_for(socket.get(), POLLOUT, deadline)) {
            throw TimeoutError("mproc: the manager at " + text + " did not accept in time");
        }
        int error = 0;
        socklen_t length = sizeof error;
        ::getsockopt(socket.get(), SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
            throw Error("mproc: cannot reach the manager at " + text + ": " + std::strerror(error) +
                        " (has it ended?)");
        }
    }
    const int flags = ::fcntl(socket.get(), F_GETFL);
    if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
        throw_system_error("fcntl");
    }
    tune_connection(socket.get(), !address.is_unix());
    return socket;
}

UniqueFd accept_connection(int listener) noexcept {
    int fd;
    do {
        fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
    return UniqueFd(fd);
}

void tune_connection(int socket, bool tcp) noexcept {
    if (!tcp) return;
    const int one = 1;
    ::setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(socket, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    const int idle = 10;
    const int interval = 5;
    const int probes = 4;
    ::setsockopt(socket, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(socket, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(socket, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

long peer_uid(int socket) noexcept {
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return static_cast<long>(credentials.uid);
}

bool write_all(int socket, const void* data, std::size_t size) {
    const auto* at = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t sent = ::send(socket, at, size, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) return false;
            throw_system_error("send");
        }
        at += sent;
        size -= static_cast<std::size_t>(sent);
    }
    return true;
}

bool read_exact(int socket, void* data, std::size_t size, const Deadline& deadline) {
    auto* at = static_cast<char*>(data);
    while (size > 0) {
        if (!deadline.is_never() && !wait_for(socket, POLLIN, deadline)) {
            throw TimeoutError("mproc: the manager did not answer in time");
        }
        const ssize_t got = ::recv(socket, at, size, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) return false;
            throw_system_error("recv");
        }
        if (got == 0) return false;
        at += got;
        size -= static_cast<std::size_t>(got);
    }
    return true;
}

}  // namespace mproc::detail
