#include "synthetic.hpp"

#include <zlib.h>

#include <algorithm>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace pcapstats {
namespace {

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void put16(std::uint8_t* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) noexcept {
    put16(p, static_cast<std::uint16_t>(v >> 16));
    put16(p + 2, static_cast<std::uint16_t>(v));
}

std::uint16_t ip_checksum(const std::uint8_t* p, std::size_t n) noexcept {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < n; i += 2)
        sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

}  // namespace

SyntheticPacket TrafficGenerator::next() {
    const GeneratorOptions& o = options_;
    const std::uint64_t h = mix(o.seed * 0x100000001b3ull ^ mix(index_));
    const std::uint64_t h2 = mix(h);
    const std::uint64_t h3 = mix(h2);
    SyntheticPacket p;
    if (index_ == 0) {
        clock_ns_ = o.start_ns;
    } else {
        std::uint64_t iat_us = 1 + h % (2ull * o.mean_iat_us);
        if ((h >> 59) == 0) iat_us += (h >> 20) % 200'000;  // a pause, one packet in 32
        clock_ns_ += static_cast<std::int64_t>(iat_us) * 1000;
    }
    p.ts_ns = clock_ns_;
    const std::uint64_t k = (h >> 8) % 100;
    p.kind = k < 55   ? PacketKind::tcp
             : k < 80 ? PacketKind::udp
             : k < 88 ? PacketKind::icmp
             : k < 95 ? PacketKind::ipv6
                      : PacketKind::arp;
    const std::uint64_t a = h2 % o.sources, b = (h2 >> 20) % o.sources;
    p.src = 0x0a000001u + static_cast<std::uint32_t>(a * b / o.sources);
    const std::uint64_t d = (h2 >> 40) % o.destinations;
    p.dst = 0xc0a80001u + static_cast<std::uint32_t>(d * d / o.destinations);
    static constexpr std::uint16_t kServices[] = {80, 443, 53, 22, 25, 8080, 123};
    p.sport = static_cast<std::uint16_t>(1024 + h3 % 60000);
    const std::uint64_t s = (h3 >> 16) % 8;
    p.dport = s < 7 ? kServices[s] : static_cast<std::uint16_t>(1024 + (h3 >> 24) % 1000);
    const std::uint64_t f = (h3 >> 40) % 20;
    p.tcp_flags = f == 0 ? 0x02 : f == 1 ? 0x12 : f == 2 ? 0x11 : f == 3 ? 0x04 : 0x18;
    const auto payload = static_cast<std::uint16_t>((h3 >> 48) % (o.max_payload + 1u));
    switch (p.kind) {
        case PacketKind::tcp:
            p.ip_len = static_cast<std::uint16_t>(40 + payload);
            break;
        case PacketKind::udp:
        case PacketKind::icmp:
            p.ip_len = static_cast<std::uint16_t>(28 + payload);
            break;
        case PacketKind::ipv6:
            p.ip_len = static_cast<std::uint16_t>(8 + payload);
            break;
        case PacketKind::arp:
            p.ip_len = 0;
            break;
    }
    p.frame_len = p.kind == PacketKind::arp    ? 42u
                  : p.kind == PacketKind::ipv6 ? 14u + 40u + p.ip_len
                                               : 14u + p.ip_len;
    ++index_;
    return p;
}

std::vector<std::uint8_t> TrafficGenerator::frame(const SyntheticPacket& p) const {
    std::vector<std::uint8_t> f(p.frame_len, 0);
    std::uint8_t* e = f.data();
    static constexpr std::uint8_t kMacs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
    std::memcpy(e, kMacs, 12);
    std::uint8_t* l3 = e + 14;
    std::size_t l4_len = 0;
    std::uint8_t* l4 = nullptr;
    std::uint8_t proto = 0;
    switch (p.kind) {
        case PacketKind::arp:
            put16(e + 12, 0x0806);
            put16(l3, 1);
            put16(l3 + 2, 0x0800);
            l3[4] = 6;
            l3[5] = 4;
            put16(l3 + 6, 1);
            std::memcpy(l3 + 8, kMacs + 6, 6);
            put32(l3 + 14, p.src);
            put32(l3 + 24, p.dst);
            return f;
        case PacketKind::ipv6:
            put16(e + 12, 0x86dd);
            l3[0] = 0x60;
            put16(l3 + 4, p.ip_len);
            l3[6] = 17;
            l3[7] = 64;
            l3[8] = 0xfd;
            put32(l3 + 20, p.src);
            l3[24] = 0xfd;
            put32(l3 + 36, p.dst);
            l4 = l3 + 40;
            put16(l4, p.sport);
            put16(l4 + 2, p.dport);
            put16(l4 + 4, p.ip_len);
            return f;
        case PacketKind::tcp:
            proto = 6;
            l4_len = 20;
            break;
        case PacketKind::udp:
            proto = 17;
            l4_len = 8;
            break;
        case PacketKind::icmp:
            proto = 1;
            l4_len = 8;
            break;
    }
    put16(e + 12, 0x0800);
    l3[0] = 0x45;
    put16(l3 + 2, p.ip_len);
    put16(l3 + 4, static_cast<std::uint16_t>(index_));
    put16(l3 + 6, 0x4000);
    l3[8] = 64;
    l3[9] = proto;
    put32(l3 + 12, p.src);
    put32(l3 + 16, p.dst);
    put16(l3 + 10, ip_checksum(l3, 20));
    l4 = l3 + 20;
    if (proto == 1) {
        l4[0] = 8;
        put16(l4 + 4, p.sport);
        put16(l4 + 6, p.dport);
    } else {
        put16(l4, p.sport);
        put16(l4 + 2, p.dport);
        if (proto == 6) {
            put32(l4 + 4, static_cast<std::uint32_t>(p.ts_ns / 1000));
            l4[12] = 0x50;
            l4[13] = p.tcp_flags;
            put16(l4 + 14, 65535);
        } else {
            put16(l4 + 4, static_cast<std::uint16_t>(p.ip_len - 20));
        }
    }
    for (std::size_t i = 20 + l4_len; i < p.ip_len; ++i) l3[i] = static_cast<std::uint8_t>(i);
    return f;
}

namespace {

// Where the bytes go: a FILE* or a gzFile.
class CaptureSink {
  public:
    explicit CaptureSink(const std::string& path) {
        if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) {
            gz_ = gzopen(path.c_str(), "wb1");
            if (gz_ == nullptr) throw std::runtime_error("cannot create " + path);
            gzbuffer(gz_, 1 << 18);
        } else {
            file_ = std::fopen(path.c_str(), "wb");
            if (file_ == nullptr) throw std::runtime_error("cannot create " + path);
            std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
        }
    }
    ~CaptureSink() {
        if (gz_ != nullptr) gzclose(gz_);
        if (file_ != nullptr) std::fclose(file_);
    }
    void write(const void* data, std::size_t n) {
        const bool ok = gz_ != nullptr
                            ? gzwrite(gz_, data, static_cast<unsigned>(n)) == static_cast<int>(n)
                            : std::fwrite(data, 1, n, file_) == n;
        if (!ok) throw std::runtime_error("write failed");
        written_ += n;
    }
    void close() {
        const bool ok = gz_ != nullptr ? gzclose(gz_) == Z_OK : std::fclose(file_) == 0;
        gz_ = nullptr;
        file_ = nullptr;
        if (!ok) throw std::runtime_error("write failed at close");
    }
    std::uint64_t written() const noexcept { return written_; }

  private:
    gzFile gz_ = nullptr;
    std::FILE* file_ = nullptr;
    std::uint64_t written_ = 0;
};

}  // namespace

std::uint64_t write_capture(const std::string& path, const GeneratorOptions& options,
                            std::uint64_t packets, std::uint64_t bytes) {
    CaptureSink sink(path);
    const std::uint32_t header[6] = {0xa1b2c3d4, 2u | (4u << 16), 0, 0, options.snaplen, 1};
    sink.write(header, sizeof header);
    TrafficGenerator generator(options);
    std::uint64_t count = 0;
    while ((packets == 0 || count < packets) && (bytes == 0 || sink.written() < bytes)) {
        const SyntheticPacket p = generator.next();
        const std::vector<std::uint8_t> f = generator.frame(p);
        const auto incl =
            static_cast<std::uint32_t>(std::min<std::size_t>(f.size(), options.snaplen));
        const std::uint32_t record[4] = {static_cast<std::uint32_t>(p.ts_ns / 1'000'000'000),
                                         static_cast<std::uint32_t>(p.ts_ns % 1'000'000'000 / 1000),
                                         incl, p.frame_len};
        sink.write(record, sizeof record);
        sink.write(f.data(), incl);
        ++count;
        if (packets == 0 && bytes == 0) break;
    }
    sink.close();
    return count;
}

}  // namespace pcapstats
