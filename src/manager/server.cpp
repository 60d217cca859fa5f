#include "manager/server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "manager/address.hpp"
#include "manager/auth.hpp"
#include "manager/client.hpp"
#include "manager/protocol.hpp"
#include "manager/store.hpp"
#include "os/process.hpp"
#include "os/socket.hpp"
#include "os/system_error.hpp"
#include "worker/child_exit.hpp"
#include "worker/exception_capture.hpp"

namespace mproc::detail {

namespace {

using namespace std::chrono_literals;

// A connection that has not proved its key by then is dropped.
constexpr auto handshake_timeout = 10s;
// While a client has this much unsent response, its further requests wait.
constexpr std::size_t max_unsent_bytes = 4 << 20;
constexpr std::size_t read_block = 64 * 1024;
// Buffers that grew past this for one large frame are given back when drained.
constexpr std::size_t kept_buffer_bytes = 1 << 20;
// After the listener fails for lack of descriptors, accepting pauses this long.
constexpr auto accept_pause = 100ms;

enum Token : std::uint64_t { stop_token = 1, parent_token = 2, listener_token = 3 };
constexpr ClientId first_client = 16;

struct Connection {
    ClientId id = 0;
    UniqueFd socket;
    bool authenticated = false;
    bool same_code = false;
    bool parked = false;
    Challenge challenge{};
    std::vector<std::byte> in;
    std::size_t in_start = 0;
    std::size_t in_end = 0;
    std::vector<std::byte> out;
    std::size_t out_sent = 0;
    // Descriptors that go with the response starting at an offset of out: sent with its first
    // byte (SCM_RIGHTS), as the client reads them.
    std::deque<std::pair<std::size_t, std::vector<UniqueFd>>> out_fds;
    std::uint32_t events = 0;  // what epoll watches for now

    std::size_t buffered() const noexcept { return in_end - in_start; }
    std::size_t unsent() const noexcept { return out.size() - out_sent; }
};

class ServerLoop {
  public:
    ServerLoop(UniqueFd listener, bool unix_socket, std::string authkey, std::uint64_t incarnation,
               UniqueFd stop, UniqueFd parent)
        : listener_(std::move(listener)),
          unix_socket_(unix_socket),
          authkey_(std::move(authkey)),
          incarnation_(incarnation),
          stop_(std::move(stop)),
          parent_(std::move(parent)),
          epoll_(::epoll_create1(EPOLL_CLOEXEC)),
          own_uid_(static_cast<long>(::geteuid())),
          own_code_(code_identity()) {
        if (!epoll_) throw_system_error("epoll_create1");
        watch(stop_.get(), stop_token, EPOLLIN);
        watch(parent_.get(), parent_token, EPOLLIN);
        watch(listener_.get(), listener_token, EPOLLIN);
    }

    // Serves until asked to stop or until the parent dies.
    void run() {
        std::array<epoll_event, 64> events;
        while (true) {
            const int count = ::epoll_wait(epoll_.get(), events.data(),
                                           static_cast<int>(events.size()), wait_millis());
            if (count < 0) {
                if (errno == EINTR) continue;
                throw_system_error("epoll_wait");
            }
            for (int i = 0; i < count; ++i) {
                const std::uint64_t token = events[i].data.u64;
                if (token == stop_token || token == parent_token) return;
                if (token == listener_token) {
                    try {
                        accept_all();
                    } catch (const std::exception&) {
                        // One connection could not be set up (no memory, no randomness);
                        // the others go on, and the listener is tried again next time.
                    }
                } else {
                    isolated(token, [&] { on_client(token, events[i].events); });
                }
                run_pending();
            }
            const auto now = StoreClock::now();
            store_.expire(now);
            deliver_completions();
            expire_handshakes(now);
            if (paused_until_ && now >= *paused_until_) {
                paused_until_.reset();
                change(listener_.get(), listener_token, EPOLLIN);
            }
            run_pending();
        }
    }

  private:
    void watch(int fd, std::uint64_t token, std::uint32_t events) {
        epoll_event event{};
        event.events = events;
        event.data.u64 = token;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
            throw_system_error("epoll_ctl");
        }
    }
    void change(int fd, std::uint64_t token, std::uint32_t events) {
        epoll_event event{};
        event.events = events;
        event.data.u64 = token;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event);
    }

    int wait_millis() const {
        std::optional<StoreClock::time_point> next = store_.next_deadline();
        auto consider = [&next](StoreClock::time_point at) {
            if (!next || at < *next) next = at;
        };
        if (!handshakes_.empty()) consider(handshakes_.front().first);
        if (paused_until_) consider(*paused_until_);
        if (!next) return -1;
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - StoreClock::now());
        return static_cast<int>(std::clamp<long long>(left.count(), 0, INT_MAX));
    }

    Connection* find(ClientId id) {
        auto found = connections_.find(id);
        return found == connections_.end() ? nullptr : found->second.get();
    }

    // ----------------------------------------------------------------------------- accepting

    void accept_all() {
        while (true) {
            UniqueFd socket = accept_connection(listener_.get());
            if (!socket) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    // The pending connection stays in the backlog; try again shortly rather
                    // than spin on a listener that stays readable.
                    paused_until_ = StoreClock::now() + accept_pause;
                    change(listener_.get(), listener_token, 0);
                }
                return;
            }
            if (unix_socket_ && peer_uid(socket.get()) != own_uid_) continue;  // closes it
            tune_connection(socket.get(), !unix_socket_);
            auto connection = std::make_unique<Connection>();
            connection->id = next_id_++;
            connection->challenge = random_challenge();
            const Hello hello{handshake_magic, handshake_version, 0, connection->challenge};
            // An empty socket buffer takes 48 bytes whole; a peer that cannot is dropped.
            if (::send(socket.get(), &hello, sizeof hello, MSG_DONTWAIT | MSG_NOSIGNAL) !=
                static_cast<ssize_t>(sizeof hello)) {
                continue;
            }
            connection->socket = std::move(socket);
            connection->events = EPOLLIN | EPOLLRDHUP;
            watch(connection->socket.get(), connection->id, connection->events);
            handshakes_.emplace_back(StoreClock::now() + handshake_timeout, connection->id);
            connections_.emplace(connection->id, std::move(connection));
        }
    }

    void expire_handshakes(StoreClock::time_point now) {
        while (!handshakes_.empty() && handshakes_.front().first <= now) {
            const ClientId id = handshakes_.front().second;
            handshakes_.pop_front();
            if (Connection* c = find(id); c != nullptr && !c->authenticated) drop(id);
        }
    }

    // Checks the client's answer once it has arrived whole. False when the client was
    // dropped (a wrong key).
    bool authenticate(Connection& c) {
        if (c.buffered() < sizeof(Answer)) return true;
        Answer answer;
        std::memcpy(&answer, c.in.data() + c.in_start, sizeof answer);
        c.in_start = c.in_end = 0;
        Verdict verdict{};
        if (!digests_equal(answer.proof, client_proof(authkey_, c.challenge))) {
            // Told, so that the client can say "wrong key" rather than "connection lost".
            ::send(c.socket.get(), &verdict, sizeof verdict, MSG_DONTWAIT | MSG_NOSIGNAL);
            drop(c.id);
            return false;
        }
        verdict.accepted = 1;
        verdict.incarnation = incarnation_;
        verdict.proof = server_proof(authkey_, answer.challenge, c.challenge, incarnation_);
        c.authenticated = true;
        c.same_code = answer.code_identity == own_code_;
        const auto* bytes = reinterpret_cast<const std::byte*>(&verdict);
        c.out.insert(c.out.end(), bytes, bytes + sizeof verdict);
        return true;
    }

    // ----------------------------------------------------------------------------- clients

    void on_client(ClientId id, std::uint32_t events) {
        Connection* c = find(id);
        if (c == nullptr) return;
        if (events & EPOLLERR) return drop(id);
        if (events & EPOLLOUT) {
            if (!flush(*c)) return;
            pending_.push_back(id);  // requests held back by the unsent bytes may go on
        }
        if (events & EPOLLIN) {
            if (!receive(*c)) return drop(id);
        } else if (events & (EPOLLHUP | EPOLLRDHUP)) {
            // Not reading from it (it waits for a reply), and it hung up: it is gone.
            return drop(id);
        }
    }

    // Reads what has arrived and runs the requests that are whole. False when the peer
    // closed or failed (the caller drops it).
    bool receive(Connection& c) {
        if (c.authenticated && c.buffered() == 0) {
            // The usual case: requests arrive whole. They are read into the loop's own buffer
            // and run from there; the connection keeps only what is left of a partial one,
            // so an idle connection holds no read buffer at all.
            const ssize_t got = receive_into(c, scratch_.data(), scratch_.size());
            if (got <= 0) return got < 0;
            c.in_start = c.in_end = 0;
            const auto bytes =
                std::span<const std::byte>(scratch_).first(static_cast<std::size_t>(got));
            const std::size_t used = run_requests(c, bytes);
            if (used == dropped) return true;
            keep(c, bytes.subspan(used));
            finish_processing(c);
            return true;
        }
        std::size_t want = read_block;
        if (!c.authenticated) {
            // Before the handshake, read the answer and nothing more.
            want = sizeof(Answer) - c.buffered();
            if (c.in.size() < sizeof(Answer)) c.in.resize(sizeof(Answer));
        } else if (c.buffered() >= sizeof(FrameHeader)) {
            FrameHeader header;
            std::memcpy(&header, c.in.data() + c.in_start, sizeof header);
            const std::size_t whole = sizeof header + header.payload_bytes;
            // A large frame: read to its end, growing with what arrives, never to what its
            // header claims.
            if (whole > read_block && whole > c.buffered()) {
                want = std::min(whole - c.buffered(), std::max(c.buffered(), read_block));
            }
        }
        make_room(c, want);
        const ssize_t got = receive_into(c, c.in.data() + c.in_end, want);
        if (got <= 0) return got < 0;
        c.in_end += static_cast<std::size_t>(got);
        if (c.authenticated) {
            process(c);
        } else if (authenticate(c) && c.authenticated) {
            finish_processing(c);  // sends the verdict
        }
        return true;
    }

    // recv without waiting: the byte count, 0 when the peer closed or failed, -1 when nothing
    // is waiting.
    static ssize_t receive_into(Connection& c, std::byte* into, std::size_t size) {
        ssize_t got;
        do {
            got = ::recv(c.socket.get(), into, size, MSG_DONTWAIT);
        } while (got < 0 && errno == EINTR);
        if (got < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : 0;
        return got;
    }

    // Makes room for want more bytes at the end of c's buffer.
    static void make_room(Connection& c, std::size_t want) {
        if (c.in_start > 0 && (c.in_start == c.in_end || c.in.size() - c.in_end < want)) {
            std::memmove(c.in.data(), c.in.data() + c.in_start, c.buffered());
            c.in_end -= c.in_start;
            c.in_start = 0;
        }
        if (c.in.size() < c.in_end + want) c.in.resize(c.in_end + want);
    }

    // Keeps bytes not run yet in c's own buffer.
    static void keep(Connection& c, std::span<const std::byte> bytes) {
        if (bytes.empty()) return;
        make_room(c, bytes.size());
        std::memcpy(c.in.data() + c.in_end, bytes.data(), bytes.size());
        c.in_end += bytes.size();
    }

    // Runs the complete requests buffered for c, in order, while it is not waiting for a
    // parked one and its unsent responses are few; then sends what it can.
    void process(Connection& c) {
        if (c.authenticated) {
            const std::size_t used =
                run_requests(c, std::span<const std::byte>(c.in).subspan(c.in_start, c.buffered()));
            if (used == dropped) return;
            c.in_start += used;
        }
        finish_processing(c);
    }

    void finish_processing(Connection& c) {
        if (c.in_start == c.in_end) {
            c.in_start = c.in_end = 0;
            c.in = {};  // requests usually arrive whole, into the loop's buffer
        }
        if (!flush(c)) return;
        update_interest(c);
    }

    static constexpr std::size_t dropped = static_cast<std::size_t>(-1);

    // Runs the whole requests at the front of bytes, as long as c may go on; the number of
    // bytes used, or `dropped` when c was dropped for a frame that cannot be followed.
    std::size_t run_requests(Connection& c, std::span<const std::byte> bytes) {
        std::size_t used = 0;
        while (!c.parked && c.unsent() < max_unsent_bytes &&
               bytes.size() - used >= sizeof(FrameHeader)) {
            FrameHeader header;
            std::memcpy(&header, bytes.data() + used, sizeof header);
            try {
                check_header(header);
                if (header.kind != static_cast<std::uint16_t>(FrameKind::request)) {
                    throw SerializationError("mproc: a frame sent to a manager is not a request");
                }
            } catch (const SerializationError& e) {
                // The stream cannot be followed past a bad header: answer once, then drop.
                write_error_reply(c.out, 0, ReplyStatus::bad_request, e.what());
                const ClientId id = c.id;
                if (flush(c)) drop(id);
                return dropped;
            }
            const std::size_t whole = sizeof header + header.payload_bytes;
            if (bytes.size() - used < whole) break;
            const std::size_t response_at = c.out.size();
            std::vector<UniqueFd> descriptors;
            const Store::Outcome outcome = store_.execute(
                {c.id, c.same_code, unix_socket_}, bytes.subspan(used, whole), c.out, &descriptors);
            if (!descriptors.empty()) c.out_fds.emplace_back(response_at, std::move(descriptors));
            used += whole;
            if (outcome == Store::Outcome::parked) c.parked = true;
            deliver_completions();
        }
        return used;
    }

    // Sends what the socket takes now. False when the client was dropped.
    bool flush(Connection& c) {
        while (c.unsent() > 0) {
            const ssize_t sent = send_some(c);
            if (sent < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                drop(c.id);
                return false;
            }
            c.out_sent += static_cast<std::size_t>(sent);
        }
        if (c.unsent() == 0) {
            c.out_fds.clear();
            c.out.clear();
            c.out_sent = 0;
            if (c.out.capacity() > kept_buffer_bytes) c.out = {};
        }
        update_interest(c);
        return true;
    }

    // One send of c's unsent bytes, up to the next response that carries descriptors, or of
    // that response's first bytes with its descriptors.
    static ssize_t send_some(Connection& c) {
        std::size_t end = c.out.size();
        if (!c.out_fds.empty() && c.out_fds.front().first == c.out_sent) {
            const std::vector<UniqueFd>& owned = c.out_fds.front().second;
            std::vector<int> fds;
            for (const UniqueFd& fd : owned) fds.push_back(fd.get());
            if (c.out_fds.size() > 1) end = c.out_fds[1].first;
            iovec bytes{c.out.data() + c.out_sent, end - c.out_sent};
            msghdr message{};
            message.msg_iov = &bytes;
            message.msg_iovlen = 1;
            ControlBuffer control;
            attach_fds(message, control, fds);
            const ssize_t sent = ::sendmsg(c.socket.get(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent > 0) c.out_fds.pop_front();
            return sent;
        }
        if (!c.out_fds.empty()) end = c.out_fds.front().first;
        return ::send(c.socket.get(), c.out.data() + c.out_sent, end - c.out_sent,
                      MSG_DONTWAIT | MSG_NOSIGNAL);
    }

    void update_interest(Connection& c) {
        std::uint32_t events = EPOLLRDHUP;
        if (!c.parked && c.unsent() < max_unsent_bytes) events |= EPOLLIN;
        if (c.unsent() > 0) events |= EPOLLOUT;
        if (events != c.events) {
            c.events = events;
            change(c.socket.get(), c.id, events);
        }
    }

    void deliver_completions() {
        for (auto& completion : store_.take_completions()) {
            Connection* c = find(completion.client);
            if (c == nullptr) continue;  // it left while it waited
            c->out.insert(c->out.end(), completion.response.begin(), completion.response.end());
            c->parked = false;
            pending_.push_back(c->id);
        }
    }

    // Connections whose parked request completed (or whose backlog drained): send their
    // responses and run the requests they sent meanwhile.
    void run_pending() {
        while (!pending_.empty()) {
            const ClientId id = pending_.front();
            pending_.pop_front();
            isolated(id, [&] {
                if (Connection* c = find(id)) process(*c);
            });
        }
    }

    // Runs work for one client; whatever it throws (std::bad_alloc for a response too large
    // to build, say) costs that client its connection, and no one else anything.
    template <class Work>
    void isolated(ClientId id, Work&& work) {
        try {
            work();
        } catch (const std::exception&) {
            try {
                drop(id);
            } catch (const std::exception&) {
                connections_.erase(id);
            }
        }
    }

    void drop(ClientId id) {
        auto found = connections_.find(id);
        if (found == connections_.end()) return;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, found->second->socket.get(), nullptr);
        connections_.erase(found);
        // Its locks go to their next waiters, whose responses are delivered here.
        store_.forget_client(id);
        deliver_completions();
    }

    UniqueFd listener_;
    bool unix_socket_;
    std::string authkey_;
    std::uint64_t incarnation_;
    UniqueFd stop_;
    UniqueFd parent_;
    UniqueFd epoll_;
    long own_uid_;
    std::uint64_t own_code_;
    Store store_;
    std::unordered_map<ClientId, std::unique_ptr<Connection>> connections_;
    std::deque<std::pair<StoreClock::time_point, ClientId>> handshakes_;
    std::deque<ClientId> pending_;
    std::optional<StoreClock::time_point> paused_until_;
    ClientId next_id_ = first_client;
    std::vector<std::byte> scratch_ = std::vector<std::byte>(read_block);
};

// Every dict keeps a descriptor open in the server (its memfd), so a program with many dicts
// would run out at the usual soft limit of 1024; the server takes what the hard limit allows.
void allow_many_descriptors() noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

[[noreturn]] void serve(UniqueFd listener, bool unix_socket, const std::string& address,
                        const std::string& authkey, std::uint64_t incarnation, UniqueFd stop,
                        pid_t parent) noexcept {
    run_child_entry("manager", [&] {
        // Watch the parent through a pidfd rather than the death signal, which fires when
        // the *thread* that made the Manager ends.
        UniqueFd parent_fd = open_pidfd(parent);
        ::prctl(PR_SET_PDEATHSIG, 0);
        if (!parent_fd || ::getppid() != parent) ::_exit(0);
        set_process_title("mproc-manager");
        // Ctrl-C reaches the whole process group; the server ends with its owner instead,
        // after the owner has had its chance to use it while it cleans up (as Python's).
        ::signal(SIGINT, SIG_IGN);
        enable_throw_backtraces();
        mark_serving(address);
        allow_many_descriptors();
        ServerLoop(std::move(listener), unix_socket, authkey, incarnation, std::move(stop),
                   std::move(parent_fd))
            .run();
    });
}

}  // namespace

ServerProcess start_manager_server(UniqueFd listener, bool unix_socket, const std::string& address,
                                   const std::string& authkey, std::uint64_t incarnation) {
    // A socket rather than a pipe, so that telling a server that has already died (killed,
    // crashed) to stop is sent without SIGPIPE, which would end the Manager's owner.
    auto [stop_read, stop_write] = make_socket_pair(SOCK_STREAM);
    const pid_t parent = ::getpid();
    const pid_t pid = fork_child();
    if (pid == 0) {
        stop_write.reset();
        serve(std::move(listener), unix_socket, address, authkey, incarnation, std::move(stop_read),
              parent);
    }
    ServerProcess server;
    server.pid = pid;
    server.pidfd = open_pidfd(pid);
    server.stop = std::move(stop_write);
    return server;
}

void stop_manager_server(ServerProcess& server) noexcept {
    if (server.pid == 0) return;
    const char byte = 1;
    while (::send(server.stop.get(), &byte, 1, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    try {
        if (!wait_pidfd(server.pidfd, std::chrono::seconds(5))) {
            signal_pidfd(server.pidfd, SIGKILL);
        }
        reap(server.pid, true);
    } catch (...) {
        // Nothing more can be done; the kernel reaps it when this process ends.
    }
    server.pid = 0;
    server.pidfd.reset();
    server.stop.reset();
}

}  // namespace mproc::detail
