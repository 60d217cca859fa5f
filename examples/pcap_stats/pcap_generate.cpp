// pcap_generate: writes a deterministic synthetic capture (see synthetic.hpp), for pcap_stats'
// tests and demo.
//
//   pcap_generate OUT.pcap[.gz] [--size BYTES[K|M|G]] [--packets N] [--seed S] [--snaplen N]

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "synthetic.hpp"

namespace {

int usage() {
    std::fprintf(stderr,
                 "usage: pcap_generate OUT.pcap[.gz] [--size BYTES[K|M|G]] [--packets N]\n"
                 "                     [--seed S] [--snaplen N]\n"
                 "Writes a deterministic capture: TCP (with SYN and FIN), UDP and ICMP over "
                 "IPv4,\nplus IPv6 and ARP. Without --size or --packets: 10000 packets.\n");
    return 1;
}

std::uint64_t parse_size(const std::string& text) {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    double scale = 1;
    const std::string suffix = text.substr(used);
    if (suffix == "K" || suffix == "k")
        scale = 1e3;
    else if (suffix == "M" || suffix == "m")
        scale = 1e6;
    else if (suffix == "G" || suffix == "g")
        scale = 1e9;
    else if (!suffix.empty())
        throw std::invalid_argument("bad size suffix: " + suffix);
    return static_cast<std::uint64_t>(value * scale);
}

}  // namespace

int main(int argc, char** argv) {
    std::string out;
    std::uint64_t packets = 0, bytes = 0;
    pcapstats::GeneratorOptions options;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
                return argv[++i];
            };
            if (arg == "--size")
                bytes = parse_size(value());
            else if (arg == "--packets")
                packets = std::stoull(value());
            else if (arg == "--seed")
                options.seed = std::stoull(value());
            else if (arg == "--snaplen")
                options.snaplen = static_cast<std::uint32_t>(std::stoul(value()));
            else if (arg == "-h" || arg == "--help")
                return usage();
            else if (!arg.empty() && arg[0] == '-')
                throw std::invalid_argument("unknown option " + arg);
            else if (out.empty())
                out = arg;
            else
                throw std::invalid_argument("more than one output");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pcap_generate: %s\n", e.what());
        return usage();
    }
    if (out.empty()) return usage();
    if (packets == 0 && bytes == 0) packets = 10000;
    try {
        const std::uint64_t written = pcapstats::write_capture(out, options, packets, bytes);
        std::printf("%s: %llu packets\n", out.c_str(), static_cast<unsigned long long>(written));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pcap_generate: %s\n", e.what());
        return 1;
    }
    return 0;
}
