#pragma once

// Deterministic synthetic traffic for pcap_stats' tests and demo: a known mix of TCP (with SYN
// and FIN), UDP and ICMP over IPv4, plus IPv6 and ARP frames, on Ethernet. The same options
// give the same packets, so a test can compute every statistic from the packets' description
// without parsing the file that was written.

#include <cstdint>
#include <string>
#include <vector>

namespace pcapstats {

struct GeneratorOptions {
    std::uint64_t seed = 1;
    std::int64_t start_ns = 1'700'000'000'000'000'000;  // the first packet's time
    std::uint32_t snaplen = 65535;  // frames are cut to this in the file, as tcpdump -s does
    // Distinct source and destination addresses, drawn with a skew (small indices often).
    std::uint32_t sources = 1024;
    std::uint32_t destinations = 4096;
    // Inter-arrival times are uniform in [1, 2 * mean_iat_us) µs, with a long pause now and
    // then, so that windows differ and the distribution has a tail.
    std::uint32_t mean_iat_us = 250;
    std::uint32_t max_payload = 256;
};

enum class PacketKind : std::uint8_t { tcp, udp, icmp, ipv6, arp };

// One packet, described.
struct SyntheticPacket {
    std::int64_t ts_ns = 0;
    PacketKind kind = PacketKind::tcp;
    std::uint32_t src = 0, dst = 0;  // IPv4, host byte order
    std::uint16_t sport = 0, dport = 0;
    std::uint8_t tcp_flags = 0;
    std::uint16_t ip_len = 0;     // IPv4 total length (IPv6: payload length)
    std::uint32_t frame_len = 0;  // on the wire
};

// The packets, one after another.
class TrafficGenerator {
  public:
    explicit TrafficGenerator(GeneratorOptions options) : options_(options) {}
    SyntheticPacket next();
    // The Ethernet frame of a packet, whole (the writer cuts it to the snaplen).
    std::vector<std::uint8_t> frame(const SyntheticPacket& packet) const;
    const GeneratorOptions& options() const noexcept { return options_; }

  private:
    GeneratorOptions options_;
    std::uint64_t index_ = 0;
    std::int64_t clock_ns_ = 0;
};

// Writes a classic pcap (microsecond timestamps, Ethernet) to `path`, gzip-compressed if the
// path ends in .gz, until `packets` packets or `bytes` bytes of capture (whichever is set and
// comes first; 0: unset). Returns the number of packets written. Throws std::runtime_error.
std::uint64_t write_capture(const std::string& path, const GeneratorOptions& options,
                            std::uint64_t packets, std::uint64_t bytes);

}  // namespace pcapstats
