// The manager's wire, below the proxies: SHA-256 and HMAC against published vectors, the
// server's request decoder and store fed bytes directly, and a real server fed garbage
// through raw sockets. Whatever arrives, the server answers with an error or drops that one
// connection, and goes on serving the others.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "manager/address.hpp"
#include "manager/auth.hpp"
#include "manager/protocol.hpp"
#include "manager/sha256.hpp"
#include "manager/shared_dict.hpp"
#include "manager/store.hpp"
#include "mproc/manager.hpp"
#include "mproc/process.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::detail;

std::string hex(std::span<const std::byte> bytes) {
    std::string text;
    for (std::byte b : bytes) {
        constexpr char digits[] = "0123456789abcdef";
        text += digits[std::to_integer<unsigned>(b) >> 4];
        text += digits[std::to_integer<unsigned>(b) & 15];
    }
    return text;
}

std::vector<std::byte> repeated(unsigned char byte, std::size_t count) {
    return std::vector<std::byte>(count, static_cast<std::byte>(byte));
}

std::span<const std::byte> text(const char* s) {
    return std::as_bytes(std::span(s, std::strlen(s)));
}

std::string hmac_hex(std::span<const std::byte> key, std::span<const std::byte> data) {
    return hex(hmac_sha256(key, {data}));
}

// ---------------------------------------------------------------------------------------------
// SHA-256 and HMAC

TEST(ManagerCrypto, Sha256MatchesTheFipsExamples) {
    EXPECT_EQ(hex(sha256(text(""))),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(hex(sha256(text("abc"))),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(hex(sha256(text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    Sha256 million;
    const std::string chunk(1000, 'a');
    for (int i = 0; i < 1000; ++i) million.update(chunk);
    EXPECT_EQ(hex(million.finish()),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ManagerCrypto, HmacSha256MatchesRfc4231) {
    // Test cases 1 to 7 of RFC 4231, section 4.
    EXPECT_EQ(hmac_hex(repeated(0x0b, 20), text("Hi There")),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    EXPECT_EQ(hmac_hex(text("Jefe"), text("what do ya want for nothing?")),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    EXPECT_EQ(hmac_hex(repeated(0xaa, 20), repeated(0xdd, 50)),
              "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    std::vector<std::byte> counting;
    for (int i = 1; i <= 25; ++i) counting.push_back(static_cast<std::byte>(i));
    EXPECT_EQ(hmac_hex(counting, repeated(0xcd, 50)),
              "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    EXPECT_EQ(hmac_hex(repeated(0x0c, 20), text("Test With Truncation")).substr(0, 32),
              "a3b6167473100ee06e0c796c2955552b");
    EXPECT_EQ(hmac_hex(repeated(0xaa, 131),
                       text("Test Using Larger Than Block-Size Key - Hash Key First")),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    EXPECT_EQ(hmac_hex(repeated(0xaa, 131),
                       text("This is a test using a larger than block-size key and a larger "
                            "than block-size data. The key needs to be hashed before being "
                            "used by the HMAC algorithm.")),
              "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST(ManagerCrypto, HmacOverPartsEqualsHmacOverTheirConcatenation) {
    const auto key = text("key");
    EXPECT_EQ(hex(hmac_sha256(key, {text("Hi "), text("There")})), hmac_hex(key, text("Hi There")));
}

TEST(ManagerCrypto, DigestsEqualComparesEveryByte) {
    const Sha256Digest a = sha256(text("a"));
    Sha256Digest b = a;
    EXPECT_TRUE(digests_equal(a, b));
    b[31] ^= std::byte{1};
    EXPECT_FALSE(digests_equal(a, b));
    EXPECT_FALSE(digests_equal(a, std::span(b).first(31)));
}

TEST(ManagerCrypto, ProofsDependOnKeyAndChallenge) {
    const Challenge one = random_challenge();
    const Challenge two = random_challenge();
    EXPECT_NE(one, two);
    EXPECT_EQ(client_proof("k", one), client_proof("k", one));
    EXPECT_NE(client_proof("k", one), client_proof("K", one));
    EXPECT_NE(client_proof("k", one), client_proof("k", two));
    EXPECT_NE(server_proof("k", one, two, 1), server_proof("k", two, one, 1));
    EXPECT_NE(server_proof("k", one, two, 1), server_proof("k", one, two, 2));
}

// ---------------------------------------------------------------------------------------------
// Building and reading frames by hand

template <class... Items>
std::vector<std::byte> request_frame(ManagerOp op, std::uint64_t container, std::uint64_t signature,
                                     std::uint64_t sequence, const Items&... items) {
    std::vector<std::byte> out;
    FrameAppender appender(out, FrameKind::request, sequence);
    const RequestHead head{static_cast<std::uint32_t>(op), 0, container, signature};
    appender.add_bytes(&head, sizeof head);
    (appender.add(items), ...);
    appender.finish();
    return out;
}

struct ParsedReply {
    std::uint64_t sequence = 0;
    ReplyStatus status = ReplyStatus::ok;
    std::string message;
    std::vector<std::vector<std::byte>> items;
};

ParsedReply parse_reply(std::span<const std::byte> frame) {
    ParsedReply reply;
    FrameHeader header;
    std::memcpy(&header, frame.data(), sizeof header);
    check_header(header);
    EXPECT_EQ(header.kind, static_cast<std::uint16_t>(FrameKind::response));
    EXPECT_EQ(frame.size(), sizeof header + header.payload_bytes);
    reply.sequence = header.sequence;
    ItemReader items(frame.subspan(sizeof header));
    const auto status = items.next();
    reply.status = static_cast<ReplyStatus>(status[0]);
    reply.message.assign(reinterpret_cast<const char*>(status.data()) + 1, status.size() - 1);
    while (!items.at_end()) {
        const auto item = items.next();
        reply.items.emplace_back(item.begin(), item.end());
    }
    return reply;
}

template <class T>
T item_as(const std::vector<std::byte>& item) {
    T value{};
    decode(std::span<const std::byte>(item), value);
    return value;
}

constexpr ClientInfo client_a{100, true};
constexpr ClientInfo client_b{101, true};

std::uint64_t create(Store& store, ContainerKind kind, std::uint64_t signature,
                     const std::string& name = "", std::uint64_t maxsize = 0) {
    CreateSpec spec{static_cast<std::uint8_t>(kind), signature, name, "test", maxsize};
    std::vector<std::byte> out;
    EXPECT_EQ(store.execute(client_a, request_frame(ManagerOp::create, 0, 0, 1, spec), out),
              Store::Outcome::answered);
    const ParsedReply reply = parse_reply(out);
    EXPECT_EQ(reply.status, ReplyStatus::ok) << reply.message;
    return item_as<std::uint64_t>(reply.items.at(0));
}

ParsedReply run(Store& store, const ClientInfo& client, const std::vector<std::byte>& frame) {
    std::vector<std::byte> out;
    EXPECT_EQ(store.execute(client, frame, out), Store::Outcome::answered);
    return parse_reply(out);
}

// ---------------------------------------------------------------------------------------------
// decode_request

TEST(ManagerDecoder, AcceptsAWellFormedRequest) {
    const auto frame = request_frame(ManagerOp::dict_set, 3, 77, 9, std::string("k"), 5);
    const Request request = decode_request(frame);
    EXPECT_EQ(request.op(), ManagerOp::dict_set);
    EXPECT_EQ(request.head.container, 3u);
    EXPECT_EQ(request.head.signature, 77u);
    EXPECT_EQ(request.header.sequence, 9u);
    ASSERT_EQ(request.item_count, 2u);
    EXPECT_EQ(item_as<std::string>({request.item(0).begin(), request.item(0).end()}), "k");
    EXPECT_THROW(request.item(2), mproc::SerializationError);
}

TEST(ManagerDecoder, RefusesEveryKindOfMalformedFrame) {
    const auto good = request_frame(ManagerOp::dict_get, 1, 1, 1, 42);
    auto with_header = [&](auto change) {
        auto frame = good;
        FrameHeader header;
        std::memcpy(&header, frame.data(), sizeof header);
        change(header);
        std::memcpy(frame.data(), &header, sizeof header);
        return frame;
    };
    const std::vector<std::vector<std::byte>> bad = {
        {},
        std::vector<std::byte>(good.begin(), good.begin() + 20),
        with_header([](FrameHeader& h) { h.magic ^= 1; }),
        with_header([](FrameHeader& h) { h.version = 99; }),
        with_header([](FrameHeader& h) { h.kind = static_cast<std::uint16_t>(FrameKind::task); }),
        with_header([](FrameHeader& h) { h.kind = 999; }),
        with_header([](FrameHeader& h) { h.fd_count = 1; }),
        with_header([](FrameHeader& h) { h.payload_bytes += 1; }),
        with_header([](FrameHeader& h) { h.payload_bytes = std::uint64_t{1} << 40; }),
        with_header([](FrameHeader& h) { h.item_count = 0; }),
        with_header([](FrameHeader& h) { h.item_count = 3; }),
        with_header([](FrameHeader& h) { h.item_count = 1; }),  // bytes after the last item
        std::vector<std::byte>(good.begin(), good.end() - 1),
    };
    for (std::size_t i = 0; i < bad.size(); ++i) {
        EXPECT_THROW(decode_request(bad[i]), mproc::SerializationError) << "case " << i;
    }
    // A head of the wrong size, and one with unknown flags.
    std::vector<std::byte> short_head;
    FrameAppender appender(short_head, FrameKind::request, 1);
    appender.add(std::uint64_t{1});
    appender.finish();
    EXPECT_THROW(decode_request(short_head), mproc::SerializationError);
    std::vector<std::byte> flagged;
    FrameAppender flags(flagged, FrameKind::request, 1);
    const RequestHead head{static_cast<std::uint32_t>(ManagerOp::dict_size), 1, 1, 1};
    flags.add_bytes(&head, sizeof head);
    flags.finish();
    EXPECT_THROW(decode_request(flagged), mproc::SerializationError);
}

TEST(ManagerDecoder, RandomMutationsOfARequestNeverCrashTheStore) {
    Store store;
    const std::uint64_t signature = 55;
    const std::uint64_t dict = create(store, ContainerKind::dict, signature);
    const auto good = request_frame(ManagerOp::dict_set, dict, signature, 1, std::string("key"),
                                    std::string("value"));
    std::mt19937 random(12345);
    for (int round = 0; round < 20000; ++round) {
        auto frame = good;
        const int flips = 1 + static_cast<int>(random() % 4);
        for (int f = 0; f < flips; ++f) {
            frame[random() % frame.size()] = static_cast<std::byte>(random() & 0xff);
        }
        if (random() % 8 == 0) frame.resize(random() % frame.size());
        std::vector<std::byte> out;
        store.execute(client_a, frame, out);  // an answer or an error, never a crash
        if (out.empty()) continue;            // parked: a mutated op that waits
        const ParsedReply reply = parse_reply(out);
        (void)reply;
    }
    EXPECT_EQ(run(store, client_a, request_frame(ManagerOp::dict_size, dict, signature, 2)).status,
              ReplyStatus::ok);
}

// ---------------------------------------------------------------------------------------------
// Store

TEST(ManagerStore, AGarbageFrameGetsABadRequestAnswer) {
    Store store;
    std::vector<std::byte> garbage(200);
    std::mt19937 random(7);
    for (auto& b : garbage) b = static_cast<std::byte>(random());
    FrameHeader header{};
    header.sequence = 5;
    std::memcpy(garbage.data(), &header, sizeof header);
    std::vector<std::byte> out;
    EXPECT_EQ(store.execute(client_a, garbage, out), Store::Outcome::answered);
    const ParsedReply reply = parse_reply(out);
    EXPECT_EQ(reply.status, ReplyStatus::bad_request);
    EXPECT_EQ(reply.sequence, 5u);
    EXPECT_EQ(store.container_count(), 0u);
}

TEST(ManagerStore, ARequestWithAnotherSignatureIsATypeMismatch) {
    Store store;
    const std::uint64_t dict = create(store, ContainerKind::dict, 55);
    const ParsedReply reply =
        run(store, client_a, request_frame(ManagerOp::dict_size, dict, 56, 2));
    EXPECT_EQ(reply.status, ReplyStatus::type_mismatch);
    EXPECT_NE(reply.message.find("test"), std::string::npos) << reply.message;
}

TEST(ManagerStore, UnknownContainersOperationsAndMissingArgumentsAreBadRequests) {
    Store store;
    const std::uint64_t dict = create(store, ContainerKind::dict, 55);
    EXPECT_EQ(run(store, client_a, request_frame(ManagerOp::dict_size, 99, 55, 2)).status,
              ReplyStatus::bad_request);
    EXPECT_EQ(run(store, client_a, request_frame(static_cast<ManagerOp>(77), dict, 55, 2)).status,
              ReplyStatus::bad_request);
    EXPECT_EQ(run(store, client_a, request_frame(ManagerOp::dict_set, dict, 55, 2, 1)).status,
              ReplyStatus::bad_request);
    // A list operation on a dict, with the dict's own signature.
    EXPECT_EQ(run(store, client_a, request_frame(ManagerOp::list_size, dict, 55, 2)).status,
              ReplyStatus::bad_request);
    // A create of an unknown kind.
    CreateSpec spec{99, 1, "", "", 0};
    EXPECT_EQ(run(store, client_a, request_frame(ManagerOp::create, 0, 0, 2, spec)).status,
              ReplyStatus::bad_request);
}

TEST(ManagerStore, AnUpdateFromAClientOfOtherCodeIsRefused) {
    Store store;
    const std::uint64_t dict = create(store, ContainerKind::dict, 55);
    const ClientInfo stranger{102, false};
    const auto frame = request_frame(ManagerOp::dict_update, dict, 55, 2, 1, std::string());
    EXPECT_EQ(run(store, stranger, frame).status, ReplyStatus::misuse);
}

TEST(ManagerStore, AnUpdateNamingAnUnregisteredEntryIsABadRequest) {
    Store store;
    const std::uint64_t dict = create(store, ContainerKind::dict, 55);
    std::vector<std::byte> frame;
    FrameAppender appender(frame, FrameKind::request, 2, /*entry=*/0x1234, /*function=*/0x5678);
    const RequestHead head{static_cast<std::uint32_t>(ManagerOp::dict_update), 0, dict, 55};
    appender.add_bytes(&head, sizeof head);
    appender.add(1);
    appender.add();
    appender.finish();
    EXPECT_EQ(run(store, client_a, frame).status, ReplyStatus::bad_request);
}

std::vector<std::byte> encoded(const auto& value) {
    std::vector<std::byte> bytes;
    encode(bytes, value);
    return bytes;
}

TEST(ManagerStore, ATcpClientAndALocalClientWorkOnTheSameDictMemory) {
    Store store;
    const std::uint64_t dict = create(store, ContainerKind::dict, 55);
    const ClientInfo tcp{103, true, false};
    const ClientInfo local{104, true, true};
    ASSERT_EQ(run(store, tcp, request_frame(ManagerOp::dict_set, dict, 55, 2, std::string("k"), 1))
                  .status,
              ReplyStatus::ok);

    std::vector<std::byte> out;
    std::vector<UniqueFd> descriptors;
    store.execute(local, request_frame(ManagerOp::dict_attach, dict, 55, 3), out, &descriptors);
    ASSERT_EQ(parse_reply(out).status, ReplyStatus::ok) << parse_reply(out).message;
    FrameHeader header;
    std::memcpy(&header, out.data(), sizeof header);
    EXPECT_EQ(header.fd_count, 2u);
    ASSERT_EQ(descriptors.size(), 2u);
    auto shared = SharedDict::adopt(std::move(descriptors[0]), 55);
    {
        SharedDict::Access access(*shared);
        const auto value = access.find(encoded(std::string("k")));
        ASSERT_TRUE(value.has_value());
        EXPECT_EQ(std::vector<std::byte>(value->begin(), value->end()), encoded(1));
        access.set(encoded(std::string("j")), encoded(2));
    }

    const ParsedReply got =
        run(store, tcp, request_frame(ManagerOp::dict_get, dict, 55, 4, std::string("j")));
    ASSERT_EQ(got.items.size(), 1u);
    EXPECT_EQ(item_as<int>(got.items[0]), 2);
    const ParsedReply keys = run(store, tcp, request_frame(ManagerOp::dict_keys, dict, 55, 5));
    EXPECT_EQ(item_as<std::vector<std::string>>(keys.items.at(0)),
              (std::vector<std::string>{"k", "j"}));
}

TEST(ManagerStore, ADictsMemoryIsSentOnlyToALocalClientWithTheRightTypes) {
    Store store;
    const std::uint64_t dict = create(store, ContainerKind::dict, 55);
    const ClientInfo tcp{103, true, false};
    const ClientInfo local{104, true, true};
    std::vector<UniqueFd> descriptors;
    std::vector<std::byte> out;
    store.execute(tcp, request_frame(ManagerOp::dict_attach, dict, 55, 2), out, &descriptors);
    EXPECT_EQ(parse_reply(out).status, ReplyStatus::misuse);
    out.clear();
    store.execute(local, request_frame(ManagerOp::dict_attach, dict, 56, 3), out, &descriptors);
    EXPECT_EQ(parse_reply(out).status, ReplyStatus::type_mismatch);
    // Without a way to send descriptors (as a caller that cannot pass them).
    EXPECT_EQ(run(store, local, request_frame(ManagerOp::dict_attach, dict, 55, 4)).status,
              ReplyStatus::misuse);
    EXPECT_TRUE(descriptors.empty());
}

TEST(ManagerStore, AParkedGetIsAnsweredByTheNextPut) {
    Store store;
    const std::uint64_t queue = create(store, ContainerKind::queue, 9);
    std::vector<std::byte> out;
    EXPECT_EQ(store.execute(client_a,
                            request_frame(ManagerOp::queue_get, queue, 9, 7, wait_forever), out),
              Store::Outcome::parked);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(
        run(store, client_b, request_frame(ManagerOp::queue_put, queue, 9, 8, WireTimeout{0}, 42))
            .status,
        ReplyStatus::ok);
    auto completions = store.take_completions();
    ASSERT_EQ(completions.size(), 1u);
    EXPECT_EQ(completions[0].client, client_a.id);
    const ParsedReply reply = parse_reply(completions[0].response);
    EXPECT_EQ(reply.sequence, 7u);
    EXPECT_EQ(item_as<int>(reply.items.at(0)), 42);
}

TEST(ManagerStore, AParkedGetPastItsDeadlineIsAnsweredEmpty) {
    Store store;
    const std::uint64_t queue = create(store, ContainerKind::queue, 9);
    std::vector<std::byte> out;
    const WireTimeout ten_ms = 10'000'000;
    ASSERT_EQ(
        store.execute(client_a, request_frame(ManagerOp::queue_get, queue, 9, 7, ten_ms), out),
        Store::Outcome::parked);
    ASSERT_TRUE(store.next_deadline().has_value());
    store.expire(*store.next_deadline());
    auto completions = store.take_completions();
    ASSERT_EQ(completions.size(), 1u);
    EXPECT_EQ(parse_reply(completions[0].response).status, ReplyStatus::empty);
    EXPECT_FALSE(store.next_deadline().has_value());
}

TEST(ManagerStore, AForgottenClientsWaitIsDroppedAndItsLocksPassOn) {
    Store store;
    const std::uint64_t queue = create(store, ContainerKind::queue, 9);
    const std::uint64_t lock = create(store, ContainerKind::lock, 3);
    std::vector<std::byte> out;
    // a holds the lock; b waits for it; a also... cannot wait twice, so c waits on the queue.
    EXPECT_EQ(run(store, client_a, request_frame(ManagerOp::lock_acquire, lock, 3, 1, wait_forever))
                  .status,
              ReplyStatus::ok);
    ASSERT_EQ(store.execute(client_b,
                            request_frame(ManagerOp::lock_acquire, lock, 3, 2, wait_forever), out),
              Store::Outcome::parked);
    const ClientInfo client_c{103, true};
    ASSERT_EQ(store.execute(client_c,
                            request_frame(ManagerOp::queue_get, queue, 9, 3, wait_forever), out),
              Store::Outcome::parked);
    store.forget_client(client_c.id);
    store.forget_client(client_a.id);
    auto completions = store.take_completions();
    ASSERT_EQ(completions.size(), 1u);  // b got the lock; c's wait went with c
    EXPECT_EQ(completions[0].client, client_b.id);
    EXPECT_TRUE(item_as<bool>(parse_reply(completions[0].response).items.at(0)));
    // The item put now stays in the queue: no one waits for it any more.
    run(store, client_b, request_frame(ManagerOp::queue_put, queue, 9, 4, WireTimeout{0}, 1));
    EXPECT_TRUE(store.take_completions().empty());
    const ParsedReply size =
        run(store, client_b, request_frame(ManagerOp::queue_size, queue, 9, 5));
    EXPECT_EQ(item_as<std::uint64_t>(size.items.at(0)), 1u);
}

// ---------------------------------------------------------------------------------------------
// A real server, through raw sockets

struct RawClient {
    UniqueFd socket;
    Hello hello{};

    explicit RawClient(const std::string& address) {
        socket = connect_to(parse_manager_address(address), address, Deadline::after(10s));
        EXPECT_TRUE(read_exact(socket.get(), &hello, sizeof hello, Deadline::after(10s)));
    }
    // Completes the handshake with key; whether the server accepted.
    bool authenticate(const std::string& key) {
        const Answer answer{client_proof(key, hello.challenge), random_challenge(), 0};
        EXPECT_TRUE(write_all(socket.get(), &answer, sizeof answer));
        Verdict verdict{};
        if (!read_exact(socket.get(), &verdict, sizeof verdict, Deadline::after(10s))) return false;
        return verdict.accepted == 1;
    }
    void send(std::span<const std::byte> bytes) {
        write_all(socket.get(), bytes.data(), bytes.size());
    }
    // The next response frame, or nullopt when the server closed the connection.
    std::optional<std::vector<std::byte>> receive() {
        std::vector<std::byte> frame(sizeof(FrameHeader));
        if (!read_exact(socket.get(), frame.data(), frame.size(), Deadline::after(10s))) {
            return std::nullopt;
        }
        FrameHeader header;
        std::memcpy(&header, frame.data(), sizeof header);
        frame.resize(sizeof header + header.payload_bytes);
        if (!read_exact(socket.get(), frame.data() + sizeof header, header.payload_bytes,
                        Deadline::after(10s))) {
            return std::nullopt;
        }
        return frame;
    }
    // Whether the server closes the connection within a few seconds, after whatever it
    // still sends (a refusal, an error reply).
    bool closed_by_server() {
        const Deadline deadline = Deadline::after(10s);
        char byte;
        try {
            for (int i = 0; i < (1 << 20); ++i) {
                if (!read_exact(socket.get(), &byte, 1, deadline)) return true;
            }
        } catch (const mproc::TimeoutError&) {
        }
        return false;
    }
};

// The proof that a server still serves: a proxy of it works.
void expect_serving(mproc::DictProxy<std::string, int>& d) {
    d.set("alive", 1);
    EXPECT_EQ(d.at("alive"), 1);
}

TEST(ManagerServer, AWrongAnswerToTheChallengeIsRefusedAndDropped) {
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    RawClient raw(manager.address());
    EXPECT_EQ(raw.hello.magic, handshake_magic);
    EXPECT_FALSE(raw.authenticate("not the key"));
    EXPECT_TRUE(raw.closed_by_server());
    expect_serving(d);
}

TEST(ManagerServer, GarbageInsteadOfAHandshakeIsDropped) {
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    RawClient raw(manager.address());
    const std::vector<std::byte> garbage(1000, std::byte{0x41});
    raw.send(garbage);
    EXPECT_TRUE(raw.closed_by_server());
    expect_serving(d);
}

TEST(ManagerServer, ASilentConnectionHoldsUpNoOne) {
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    RawClient silent(manager.address());  // says nothing after the hello
    RawClient half(manager.address());
    ASSERT_TRUE(half.authenticate(manager.authkey()));
    const auto frame = request_frame(ManagerOp::dict_size, 1, 1, 1);
    half.send(std::span(frame).first(30));  // half a header, then nothing
    expect_serving(d);
}

TEST(ManagerServer, AFrameWithABadHeaderGetsAnErrorAndTheConnectionDropped) {
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    RawClient raw(manager.address());
    ASSERT_TRUE(raw.authenticate(manager.authkey()));
    std::vector<std::byte> garbage(100, std::byte{0x5a});
    raw.send(garbage);
    auto reply = raw.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(parse_reply(*reply).status, ReplyStatus::bad_request);
    EXPECT_TRUE(raw.closed_by_server());
    expect_serving(d);
}

TEST(ManagerServer, AMalformedRequestInAGoodFrameGetsAnErrorAndTheConnectionStays) {
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    RawClient raw(manager.address());
    ASSERT_TRUE(raw.authenticate(manager.authkey()));
    std::vector<std::byte> frame;
    FrameAppender appender(frame, FrameKind::request, 1);
    appender.add(std::string("not a head"));
    appender.finish();
    raw.send(frame);
    auto reply = raw.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(parse_reply(*reply).status, ReplyStatus::bad_request);
    // The same connection still works: a well-formed request on it is answered.
    CreateSpec spec{static_cast<std::uint8_t>(ContainerKind::list), 5, "", "list<raw>", 0};
    raw.send(request_frame(ManagerOp::create, 0, 0, 2, spec));
    reply = raw.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(parse_reply(*reply).status, ReplyStatus::ok);
    expect_serving(d);
}

TEST(ManagerServer, AClientThatClaimsAHugeFrameAndLeavesIsForgotten) {
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    {
        RawClient raw(manager.address());
        ASSERT_TRUE(raw.authenticate(manager.authkey()));
        auto frame = request_frame(ManagerOp::dict_set, 1, 1, 1, std::string("k"), 1);
        FrameHeader header;
        std::memcpy(&header, frame.data(), sizeof header);
        header.payload_bytes = default_max_payload_bytes();  // claims all memory, sends a few
        std::memcpy(frame.data(), &header, sizeof header);
        raw.send(frame);
    }
    expect_serving(d);
}

// Ends with exit code 1 (an exception) if the server says hello to another user.
void connect_as_another_user(std::string address) {
    if (::setresuid(65534, 65534, 65534) != 0) throw std::runtime_error("setresuid failed");
    UniqueFd socket = connect_to(parse_manager_address(address), address, Deadline::after(10s));
    Hello hello{};
    if (read_exact(socket.get(), &hello, sizeof hello, Deadline::after(10s))) {
        throw std::runtime_error("the server greeted a connection from another user");
    }
}

TEST(ManagerServer, ALocalConnectionFromAnotherUserIsDroppedBeforeTheHandshake) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    mproc::Process other(connect_as_another_user, manager.address());
    other.start();
    ASSERT_TRUE(other.join(60s));
    EXPECT_EQ(other.exitcode(), 0);
    expect_serving(d);
}

}  // namespace
