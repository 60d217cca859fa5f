#pragma once

// pipe<T>() and Connection<T>: two connected ends that carry values of T both ways, as Python's
// multiprocessing.Pipe() and its Connection objects do.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/fd_passing.hpp"
#include "mproc/detail/frame.hpp"
#include "mproc/detail/unique_fd.hpp"
#include "mproc/detail/wire_archive.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {

// One end of a pipe, whatever it carries: one end of a SOCK_STREAM Unix socket pair, and the
// locks that let the threads of a process share it. A message is one frame (frame.hpp) holding
// one item, its descriptors riding on its first byte. A receive reads exactly one frame and not
// a byte beyond it, so no message ever waits in one process's buffer: an end that is forked or
// sent to another process leaves nothing behind that the new holder would miss.
class ConnectionCore {
  public:
    // The two ends of a new pipe. Throws mproc::Error when the kernel refuses (EMFILE, ...).
    static std::pair<std::shared_ptr<ConnectionCore>, std::shared_ptr<ConnectionCore>> make_pipe();
    // Takes ownership of socket, an end received from another process. Throws
    // SerializationError, closing it, when it is not a SOCK_STREAM Unix socket.
    static std::shared_ptr<ConnectionCore> adopt(UniqueFd socket);

    // Takes ownership of socket, a SOCK_STREAM Unix socket; not checked.
    explicit ConnectionCore(UniqueFd socket) noexcept : socket_(std::move(socket)) {}
    ConnectionCore(const ConnectionCore&) = delete;
    ConnectionCore& operator=(const ConnectionCore&) = delete;

    // Sends the frame whole, blocking while the socket is full. Frames from the threads of one
    // process never interleave. Throws StateError when this end is closed (before or during
    // the send) or the other end is gone.
    void send(const Frame& frame);
    // The next frame, whole, with its descriptors. Throws StateError when this end is closed
    // (before or during the wait) or when the other end is gone and nothing is left to read;
    // SerializationError when the bytes are not a frame or a frame was cut off. After bytes
    // that are not a frame, where the next frame starts is lost: every later receive throws
    // SerializationError.
    Frame receive();
    // Whether receive() would return without waiting for the other end: bytes have arrived, or
    // the other end is gone. Waits at most timeout for that, or without limit for nullopt.
    // Throws StateError when this end is closed.
    bool poll(std::optional<std::chrono::nanoseconds> timeout);
    // Closes this process's descriptor. A send, receive or poll running in another thread ends
    // with StateError, within a tenth of a second; close() waits for that. A second close does
    // nothing.
    void close() noexcept;
    bool closed() const noexcept { return closing_.load(std::memory_order_acquire); }
    // A duplicate of the socket, for sending this end elsewhere. StateError when closed.
    UniqueFd duplicate_socket();

  private:
    using Clock = std::chrono::steady_clock;
    // Throws StateError once close() has begun.
    void check_open() const;
    // Waits until poll(2) reports events (or a hang-up). False once deadline passes. Wakes
    // every tenth of a second to see whether close() has begun, and throws StateError if so.
    bool wait_until_ready(short events, std::optional<Clock::time_point> deadline) const;
    // Reads at most n bytes, at least one, waiting for them; 0 when the other end is gone.
    // Descriptors that arrive are appended to fds.
    std::size_t read_some(std::byte* into, std::size_t n, std::vector<UniqueFd>& fds);

    // Held (shared) by every use of socket_, and alone by close(), so that the descriptor is
    // never closed under a system call that uses it (its number could be reused by then).
    std::shared_mutex socket_mutex_;
    // One send and one receive at a time, so that the frames of two threads never interleave.
    // A send and a receive may run together: they touch nothing in common but the socket.
    std::mutex send_mutex_;
    std::mutex receive_mutex_;
    std::atomic<bool> closing_{false};
    // Read by poll() without the receive lock.
    std::atomic<bool> peer_gone_{false};
    std::atomic<bool> lost_frame_boundary_{false};
    UniqueFd socket_;
};

// The frame that carries value as one message. Throws SerializationError when value cannot be
// encoded, is larger than a frame may be (1 GiB), or holds more than 253 handles.
template <class T>
Frame encode_message(const T& value) {
    FrameWriter writer(FrameKind::task, 0);
    FdOutbox outbox;
    writer.begin_item();
    {
        FdOutboxScope scope(outbox);
        encode(writer.buffer(), value);
    }
    writer.end_item();
    writer.add_fds(outbox.take());
    return writer.finish();
}

// The bytes of the one value a message frame holds; SerializationError when the frame is not
// a message (another kind, or not exactly one item).
std::span<const std::byte> message_item(const Frame& frame);

// The value a message frame holds. Throws SerializationError when it does not decode as T.
template <class T>
T decode_message(const Frame& frame) {
    const std::span<const std::byte> item = message_item(frame);
    FdInbox inbox(frame.fds);
    FdInboxScope scope(inbox);
    T value{};
    decode(item, value);
    return value;
}

// A wait given as any duration, as ConnectionCore::poll takes it: nullopt (no limit) past a
// century, which also keeps the deadline from overflowing the clock; zero when negative.
template <class Rep, class Period>
std::optional<std::chrono::nanoseconds> wait_limit(std::chrono::duration<Rep, Period> timeout) {
    using Seconds = std::chrono::duration<double>;
    if (Seconds(timeout) >= Seconds(std::chrono::hours(24 * 365 * 100))) return std::nullopt;
    if (timeout <= timeout.zero()) return std::chrono::nanoseconds::zero();
    return std::chrono::ceil<std::chrono::nanoseconds>(timeout);
}

// The index an unconnected Connection writes in place of a descriptor.
inline constexpr std::uint32_t no_connection = std::numeric_limits<std::uint32_t>::max();

}  // namespace detail

// One end of a pipe: sends values of T to the other end and receives the values it sends, like
// a Connection of Python's multiprocessing.Pipe(). Messages arrive whole and in the order they
// were sent; a value of any size up to 1 GiB encoded travels, and a value holding handles
// (SharedArray, SharedMemory, another Connection) travels with their descriptors, so the
// receiver shares what the sender shares.
//
// It is a handle: copies share one end, and the threads of a process may use them at once
// (their messages do not interleave; a send and a recv may run together). An end reaches
// another process by inheritance (a fork made after pipe(): Process, a Pool's workers) or
// sent through mproc as its descriptor (a Process or task argument, a message of another
// pipe). Like std::span, a const handle still sends and receives.
//
// As in Python, nothing coordinates processes that use the same end: when two of them read
// (or write) one end at the same time, their messages may interleave and arrive corrupt. Give
// each end to one process at a time, or use a Queue.
//
// The other end counts as closed once every process that held it has closed it or ended, so a
// forked child that keeps a copy of the end it does not use keeps it open: close it in the
// child, as in Python. A fork made while another thread is inside a send or recv leaves that
// Connection unusable in the child.
template <class T>
class Connection {
    static_assert(std::is_same_v<T, std::remove_cvref_t<T>>,
                  "mproc::Connection<T> carries values: T cannot be a reference or const");
    static_assert(std::is_default_constructible_v<T>,
                  "mproc::Connection<T> needs a default-constructible T: a received value is "
                  "decoded into one");

  public:
    using value_type = T;

    // An end connected to nothing: closed() is true, and send, recv and poll throw StateError.
    // What cereal loads into and a moved-from Connection is in.
    Connection() noexcept = default;
    // The handle of core; for mproc's internals and tests (pipe() makes connected ends).
    explicit Connection(std::shared_ptr<detail::ConnectionCore> core) noexcept
        : core_(std::move(core)) {}

    // Sends value to the other end, blocking while the pipe is full (until the other end
    // reads). Throws SerializationError when value cannot be encoded or is larger than 1 GiB
    // encoded, and nothing is sent then; StateError when this end is closed or unconnected, or
    // when the other end was closed (Python raises BrokenPipeError there).
    void send(const T& value) const {
        detail::ConnectionCore& end = core("send on");
        end.send(detail::encode_message(value));
    }

    // The next value the other end sent, waiting for it without limit. Throws StateError
    // saying "the other end of the pipe was closed" when it was (every copy in every process
    // closed or gone) and every value it sent has been received: Python's EOFError. Throws
    // StateError when this end is closed or unconnected, and SerializationError when the
    // message does not decode as T or the bytes that arrived are not a message; after the
    // latter, every later recv throws SerializationError too, as the next message cannot be
    // found.
    T recv() const { return detail::decode_message<T>(core("recv on").receive()); }

    // True when a recv would return without waiting for the other end to send: a message has
    // arrived (or begun to), or the other end was closed (recv then throws). poll() does not
    // wait; poll(timeout) waits at most timeout, and a timeout of a century or more waits
    // without limit. Throws StateError when this end is closed or unconnected.
    bool poll() const { return core("poll").poll(std::chrono::nanoseconds::zero()); }
    template <class Rep, class Period>
    bool poll(std::chrono::duration<Rep, Period> timeout) const {
        return core("poll").poll(detail::wait_limit(timeout));
    }

    // Closes this end in this process, for every copy of the handle here; a send, recv or poll
    // running in another thread ends with StateError. Processes that also hold this end (by
    // fork or by a send) keep theirs. Closing twice, or an unconnected end, does nothing.
    void close() const noexcept {
        if (core_) core_->close();
    }
    // True once close() was called on this end in this process, or when it is unconnected.
    bool closed() const noexcept { return !core_ || core_->closed(); }

    // cereal's hook for sending: hands a duplicate of this end's descriptor to the frame being
    // encoded. Throws SerializationError outside mproc's encoding, StateError when this end is
    // closed. An unconnected end travels as one.
    template <class Archive>
    void save(Archive& archive) const {
        detail::FdOutbox& outbox = detail::require_fd_outbox("Connection");
        if (!core_) {
            archive(detail::no_connection);
            return;
        }
        archive(outbox.add(core_->duplicate_socket()));
    }

    // cereal's hook for receiving: this becomes a handle to the end whose descriptor the frame
    // being decoded carries. Throws SerializationError outside mproc's decoding, when the frame
    // lacks the descriptor, or when it is not a socket; on a throw, *this is unchanged.
    template <class Archive>
    void load(Archive& archive) {
        detail::FdInbox& inbox = detail::require_fd_inbox("Connection");
        std::uint32_t index = 0;
        archive(index);
        if (index == detail::no_connection) {
            core_.reset();
            return;
        }
        core_ = detail::ConnectionCore::adopt(inbox.take(index));
    }

  private:
    detail::ConnectionCore& core(const char* what) const {
        if (!core_) {
            throw StateError(std::string("mproc: ") + what +
                             " a Connection that is not connected (default-constructed or "
                             "moved from); make one with mproc::pipe<T>()");
        }
        return *core_;
    }

    std::shared_ptr<detail::ConnectionCore> core_;
};

// Two connected ends, each able to send to and receive from the other, like Python's
// multiprocessing.Pipe() (duplex). Throws mproc::Error when the kernel refuses a socket pair
// (out of descriptors).
template <class T>
std::pair<Connection<T>, Connection<T>> pipe() {
    auto [first, second] = detail::ConnectionCore::make_pipe();
    return {Connection<T>(std::move(first)), Connection<T>(std::move(second))};
}

}  // namespace mproc
