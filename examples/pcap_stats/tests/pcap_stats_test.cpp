// pcap_stats: every statistic against a reference computed from the generator's description of
// its packets; the pool's result against the serial one; bad inputs; libpcap and tshark as
// independent readers.

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <mproc/mproc.hpp>

#include "analysis.hpp"
#include "capture.hpp"
#include "parallel.hpp"
#include "synthetic.hpp"

namespace fs = std::filesystem;
using namespace pcapstats;

namespace {

// A directory of its own for each test, removed at the end.
class TempDir {
  public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "pcap_stats_test.XXXXXX").string();
        path_ = ::mkdtemp(pattern.data());
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

  private:
    std::string path_;
};

// Relative closeness for the floating-point statistics; exact zeros compare exactly.
void expect_close(double expected, double actual, const char* what, std::int64_t window,
                  double floor = 0.0) {
    const double scale = std::max({std::abs(expected), std::abs(actual), floor});
    EXPECT_LE(std::abs(expected - actual), 1e-9 * scale + 1e-300)
        << what << " in window " << window << ": expected " << expected << ", got " << actual;
}

void expect_rows_equal(const WindowRow& e, const WindowRow& a) {
    const std::int64_t w = e.window;
    EXPECT_EQ(e.window, a.window);
    EXPECT_EQ(e.start_ns, a.start_ns) << "window " << w;
    EXPECT_EQ(e.packets, a.packets) << "window " << w;
    EXPECT_EQ(e.bytes, a.bytes) << "window " << w;
    EXPECT_EQ(e.src_ips, a.src_ips) << "window " << w;
    EXPECT_EQ(e.dst_ips, a.dst_ips) << "window " << w;
    EXPECT_EQ(e.syn, a.syn) << "window " << w;
    EXPECT_EQ(e.fin, a.fin) << "window " << w;
    EXPECT_EQ(e.tcp_src_ports, a.tcp_src_ports) << "window " << w;
    EXPECT_EQ(e.tcp_dst_ports, a.tcp_dst_ports) << "window " << w;
    EXPECT_EQ(e.udp_src_ports, a.udp_src_ports) << "window " << w;
    EXPECT_EQ(e.udp_dst_ports, a.udp_dst_ports) << "window " << w;
    EXPECT_EQ(e.other_frames, a.other_frames) << "window " << w;
    expect_close(e.src_entropy, a.src_entropy, "src_entropy", w);
    expect_close(e.dst_entropy, a.dst_entropy, "dst_entropy", w);
    expect_close(e.src_f2, a.src_f2, "src_f2", w);
    expect_close(e.dst_f2, a.dst_f2, "dst_f2", w);
    expect_close(e.mean_len, a.mean_len, "mean_len", w);
    expect_close(e.iat_mean, a.iat_mean, "iat_mean", w);
    expect_close(e.iat_std, a.iat_std, "iat_std", w);
    // Skewness and kurtosis are shape numbers of order one: where they are near zero (two
    // values, or equal ones) relative closeness means nothing, so closeness is to max(|x|, 1).
    expect_close(e.iat_skew, a.iat_skew, "iat_skew", w, 1.0);
    expect_close(e.iat_kurt, a.iat_kurt, "iat_kurt", w, 1.0);
    expect_close(e.icmp_frac, a.icmp_frac, "icmp_frac", w);
    expect_close(e.tcp_frac, a.tcp_frac, "tcp_frac", w);
    expect_close(e.udp_frac, a.udp_frac, "udp_frac", w);
}

void expect_reports_equal(const FileReport& e, const FileReport& a) {
    EXPECT_EQ(e.error, a.error);
    ASSERT_EQ(e.rows.size(), a.rows.size());
    for (std::size_t i = 0; i < e.rows.size(); ++i) expect_rows_equal(e.rows[i], a.rows[i]);
    expect_rows_equal(e.total, a.total);
}

// The statistics of a set of packets computed the plain way: whole lists, two-pass moments.
struct Reference {
    std::vector<const SyntheticPacket*> ipv4;
    std::vector<double> iat;
    std::uint64_t other = 0;

    WindowRow row(std::int64_t window, std::int64_t start_ns) const {
        WindowRow r;
        r.window = window;
        r.start_ns = start_ns;
        r.other_frames = other;
        std::map<std::uint32_t, std::uint64_t> src, dst;
        std::set<std::uint16_t> ts, td, us, ud;
        for (const SyntheticPacket* p : ipv4) {
            ++r.packets;
            r.bytes += p->ip_len;
            ++src[p->src];
            ++dst[p->dst];
            if (p->kind == PacketKind::tcp) {
                ts.insert(p->sport);
                td.insert(p->dport);
                r.syn += (p->tcp_flags & 2) ? 1 : 0;
                r.fin += (p->tcp_flags & 1) ? 1 : 0;
            } else if (p->kind == PacketKind::udp) {
                us.insert(p->sport);
                ud.insert(p->dport);
            }
        }
        auto entropy = [&](const std::map<std::uint32_t, std::uint64_t>& m) {
            if (m.size() < 2) return 0.0;
            double h = 0;
            for (auto& [k, c] : m) {
                const double q = double(c) / double(r.packets);
                h -= q * std::log2(q);
            }
            return h / std::log2(double(m.size()));
        };
        auto f2 = [&](const std::map<std::uint32_t, std::uint64_t>& m) {
            double s = 0;
            for (auto& [k, c] : m) s += double(c) * double(c);
            return r.packets ? s / (double(r.packets) * double(r.packets)) : 0.0;
        };
        r.src_ips = src.size();
        r.dst_ips = dst.size();
        r.src_entropy = entropy(src);
        r.dst_entropy = entropy(dst);
        r.src_f2 = f2(src);
        r.dst_f2 = f2(dst);
        r.tcp_src_ports = ts.size();
        r.tcp_dst_ports = td.size();
        r.udp_src_ports = us.size();
        r.udp_dst_ports = ud.size();
        std::uint64_t icmp = 0, tcp = 0, udp = 0;
        for (const SyntheticPacket* p : ipv4) {
            icmp += p->kind == PacketKind::icmp;
            tcp += p->kind == PacketKind::tcp;
            udp += p->kind == PacketKind::udp;
        }
        if (r.packets) {
            r.mean_len = double(r.bytes) / double(r.packets);
            r.icmp_frac = double(icmp) / double(r.packets);
            r.tcp_frac = double(tcp) / double(r.packets);
            r.udp_frac = double(udp) / double(r.packets);
        }
        const double n = double(iat.size());
        if (!iat.empty()) {
            double mean = 0;
            for (double x : iat) mean += x;
            mean /= n;
            double m2 = 0, m3 = 0, m4 = 0;
            for (double x : iat) {
                const double d = x - mean;
                m2 += d * d;
                m3 += d * d * d;
                m4 += d * d * d * d;
            }
            r.iat_mean = mean;
            if (iat.size() >= 2) {
                r.iat_std = std::sqrt(m2 / n);
                r.iat_skew = std::sqrt(n) * m3 / std::pow(m2, 1.5);
                r.iat_kurt = n * m4 / (m2 * m2) - 3;
            }
        }
        return r;
    }
};

// The expected report of a generated capture of `count` packets.
FileReport expected_report(const GeneratorOptions& options, std::uint64_t count,
                           std::int64_t window_ns, std::vector<SyntheticPacket>& packets) {
    TrafficGenerator generator(options);
    packets.clear();
    for (std::uint64_t i = 0; i < count; ++i) packets.push_back(generator.next());
    const std::int64_t origin = packets.front().ts_ns;
    std::map<std::int64_t, Reference> windows;
    Reference total;
    const SyntheticPacket* previous = nullptr;
    for (const SyntheticPacket& p : packets) {
        const std::int64_t w = (p.ts_ns - origin) / window_ns;
        Reference& ref = windows[w];
        if (p.kind == PacketKind::ipv6 || p.kind == PacketKind::arp) {
            ++ref.other;
            ++total.other;
            continue;
        }
        ref.ipv4.push_back(&p);
        total.ipv4.push_back(&p);
        if (previous != nullptr) {
            const double iat = double(p.ts_ns - previous->ts_ns) * 1e-9;
            ref.iat.push_back(iat);
            total.iat.push_back(iat);
        }
        previous = &p;
    }
    FileReport report;
    for (std::int64_t w = 0; w <= windows.rbegin()->first; ++w) {
        report.rows.push_back(windows[w].row(w, origin + w * window_ns));
    }
    report.total = total.row(kTotalWindow, origin);
    return report;
}

struct Case {
    std::uint32_t snaplen;
    bool gzip;
    double window_s;
};

class EveryStatistic : public testing::TestWithParam<Case> {};

TEST_P(EveryStatistic, MatchesAReferenceComputedFromTheGeneratedPackets) {
    const Case c = GetParam();
    TempDir dir;
    GeneratorOptions options;
    options.seed = 7;
    options.snaplen = c.snaplen;
    const std::string path = dir.file(c.gzip ? "g.pcap.gz" : "g.pcap");
    ASSERT_EQ(write_capture(path, options, 20000, 0), 20000u);
    const auto window_ns = static_cast<std::int64_t>(c.window_s * 1e9);
    std::vector<SyntheticPacket> packets;
    FileReport expected = expected_report(options, 20000, window_ns, packets);
    expected.path = path;

    const FileReport actual = analyse_whole(path, window_ns);
    ASSERT_EQ(actual.error, "");
    expect_reports_equal(expected, actual);
    // The mix the generator promises is really there.
    EXPECT_GT(expected.total.syn, 0u);
    EXPECT_GT(expected.total.fin, 0u);
    EXPECT_GT(expected.total.icmp_frac, 0.0);
    EXPECT_GT(expected.total.udp_frac, 0.0);
    EXPECT_GT(expected.total.other_frames, 0u);
}

INSTANTIATE_TEST_SUITE_P(Captures, EveryStatistic,
                         testing::Values(Case{65535, false, 10}, Case{64, false, 2},
                                         Case{65535, true, 10}, Case{65535, false, 0.01}),
                         [](const testing::TestParamInfo<Case>& info) {
                             const Case& c = info.param;
                             return std::string(c.gzip ? "Gzip" : "Plain") + "Snaplen" +
                                    std::to_string(c.snaplen) + "Window" +
                                    std::to_string(static_cast<int>(c.window_s * 1000)) + "ms";
                         });

class PoolResult : public testing::TestWithParam<double> {};

TEST_P(PoolResult, EqualsTheSerialOneWhenLargeFilesAreCutIntoRanges) {
    TempDir dir;
    std::vector<std::string> paths;
    for (int i = 0; i < 3; ++i) {
        GeneratorOptions options;
        options.seed = 100 + static_cast<std::uint64_t>(i);
        paths.push_back(dir.file("r" + std::to_string(i) + (i == 2 ? ".pcap.gz" : ".pcap")));
        write_capture(paths.back(), options, 0, 3'000'000);
    }
    AnalysisOptions options;
    options.window_ns = static_cast<std::int64_t>(GetParam() * 1e9);
    options.range_bytes = 200'000;
    const std::vector<RangeTask> tasks = plan_tasks(paths, options);
    ASSERT_GT(tasks.size(), 20u) << "the plain files should be cut into ranges";

    const std::vector<FileReport> serial = analyse_serial(paths, options);
    // The ranges really merge (no fallback to a whole-file pass hides a mistake).
    std::vector<RangeResult> first_file;
    for (const RangeTask& task : tasks)
        if (task.file_index == 0) first_file.push_back(analyse_range(task));
    ASSERT_GT(first_file.size(), 10u);
    const std::optional<FileReport> merged = merge_ranges(paths[0], std::move(first_file));
    ASSERT_TRUE(merged.has_value());
    expect_reports_equal(serial[0], *merged);

    mproc::Pool pool(2);
    const std::vector<FileReport> parallel = analyse_parallel(pool, paths, options);
    ASSERT_EQ(serial.size(), parallel.size());
    for (std::size_t i = 0; i < serial.size(); ++i) {
        ASSERT_EQ(serial[i].error, "") << paths[i];
        expect_reports_equal(serial[i], parallel[i]);
    }
}

// Windows shorter than a range, about a range, and spanning many ranges.
INSTANTIATE_TEST_SUITE_P(Windows, PoolResult, testing::Values(0.05, 1.0, 10.0, 1000.0),
                         [](const testing::TestParamInfo<double>& info) {
                             return "Window" + std::to_string(static_cast<int>(info.param * 1000)) +
                                    "ms";
                         });

TEST(Boundaries, AreFoundExactlyWhereRecordsStart) {
    TempDir dir;
    const std::string path = dir.file("b.pcap");
    write_capture(path, GeneratorOptions{}, 0, 2'000'000);
    std::set<std::uint64_t> starts;
    CaptureReader reader(path);
    Record record;
    std::int64_t first = -1;
    while (true) {
        const std::uint64_t at = reader.offset();
        if (!reader.next(record)) break;
        if (first < 0) first = record.ts_ns;
        starts.insert(at);
    }
    std::vector<std::uint64_t> offsets;
    for (std::uint64_t o = 1000; o < 2'000'000; o += 77'777) offsets.push_back(o);
    const auto found = find_record_boundaries(path, reader.format(), first, offsets);
    ASSERT_EQ(found.size(), offsets.size());
    for (std::size_t i = 0; i < found.size(); ++i) {
        EXPECT_TRUE(starts.count(found[i])) << found[i];
        // The first record start at or after the offset.
        EXPECT_EQ(found[i], *starts.lower_bound(offsets[i]));
    }
}

TEST(Moments, MergedInPiecesEqualOnePass) {
    Moments whole, left, right;
    std::vector<double> xs;
    for (int i = 0; i < 1000; ++i) xs.push_back(std::exp(std::sin(i * 0.37) * 3));
    for (std::size_t i = 0; i < xs.size(); ++i) {
        whole.add(xs[i]);
        (i < 377 ? left : right).add(xs[i]);
    }
    left.merge(right);
    EXPECT_EQ(left.n, whole.n);
    expect_close(whole.mean, left.mean, "mean", 0);
    expect_close(whole.stddev(), left.stddev(), "std", 0);
    expect_close(whole.skewness(), left.skewness(), "skew", 0);
    expect_close(whole.kurtosis(), left.kurtosis(), "kurt", 0);
}

// ---- Bad input ------------------------------------------------------------------------------

struct BadInputs {
    TempDir dir;
    std::string good, truncated, not_capture, missing, directory, corrupt_gzip, cut_gzip;

    BadInputs() {
        good = dir.file("good.pcap");
        write_capture(good, GeneratorOptions{}, 5000, 0);
        truncated = dir.file("truncated.pcap");
        write_capture(truncated, GeneratorOptions{}, 5000, 0);
        fs::resize_file(truncated, fs::file_size(truncated) - 7);
        not_capture = dir.file("notes.txt");
        std::ofstream(not_capture) << "this is not a capture, only some words\n";
        missing = dir.file("no_such_file.pcap");
        directory = dir.file("a_directory.pcap");
        fs::create_directory(directory);
        corrupt_gzip = dir.file("corrupt.pcap.gz");
        write_capture(corrupt_gzip, GeneratorOptions{}, 20000, 0);
        {
            std::fstream f(corrupt_gzip, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(static_cast<std::streamoff>(fs::file_size(corrupt_gzip) / 2));
            const char garbage[64] = {'\xff', '\x00', '\x13', '\x77'};
            f.write(garbage, sizeof garbage);
        }
        cut_gzip = dir.file("cut.pcap.gz");
        write_capture(cut_gzip, GeneratorOptions{}, 20000, 0);
        fs::resize_file(cut_gzip, fs::file_size(cut_gzip) / 2);
    }
    std::vector<std::string> all() const {
        return {truncated, good, not_capture, missing, directory, corrupt_gzip, cut_gzip};
    }
};

TEST(BadInput, IsReportedByNameWithItsReasonAndTheOthersStillCount) {
    BadInputs inputs;
    AnalysisOptions options;
    options.range_bytes = 50'000;  // the truncated file is cut into ranges too
    mproc::Pool pool(2);
    const std::vector<FileReport> reports = analyse_parallel(pool, inputs.all(), options);
    ASSERT_EQ(reports.size(), 7u);
    EXPECT_NE(reports[0].error.find("truncated"), std::string::npos) << reports[0].error;
    EXPECT_EQ(reports[1].error, "");
    EXPECT_EQ(reports[1].total.packets + reports[1].total.other_frames, 5000u);
    EXPECT_NE(reports[2].error.find("not a pcap capture"), std::string::npos) << reports[2].error;
    EXPECT_NE(reports[3].error.find("cannot open"), std::string::npos) << reports[3].error;
    EXPECT_NE(reports[4].error.find("directory"), std::string::npos) << reports[4].error;
    EXPECT_NE(reports[5].error.find("corrupt gzip"), std::string::npos) << reports[5].error;
    EXPECT_FALSE(reports[6].error.empty());
    // Serially, the same verdicts.
    const std::vector<FileReport> serial = analyse_serial(inputs.all(), options);
    for (std::size_t i = 0; i < serial.size(); ++i) EXPECT_EQ(serial[i].error, reports[i].error);
}

std::string run(const std::string& command, int& status) {
    std::string out;
    std::FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return out;
    char buffer[4096];
    std::size_t got;
    while ((got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, got);
    status = ::pclose(pipe);
    return out;
}

TEST(BadInput, MakesTheProgramExitWithStatusTwoAndNameEachSkippedFile) {
    BadInputs inputs;
    TempDir out;
    std::string command = std::string(PCAP_STATS_BIN) + " -o " + out.file("out.csv");
    for (const auto& path : inputs.all()) command += " '" + path + "'";
    int status = 0;
    const std::string err = run(command + " 2>&1", status);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 2) << err;
    for (const auto& path : inputs.all()) {
        if (path == inputs.good) continue;
        EXPECT_NE(err.find("skipped " + path + ": "), std::string::npos) << path << "\n" << err;
    }
    std::ifstream csv(out.file("out.csv"));
    std::string line;
    std::getline(csv, line);
    EXPECT_EQ(line.rfind("file,window,start_s,packets,bytes,src_ips,dst_ips,src_entropy,"
                         "dst_entropy,src_f2,dst_f2,mean_len,iat_mean,iat_std,iat_skew,iat_kurt,"
                         "icmp_frac,tcp_frac,udp_frac,syn,fin",
                         0),
              0u);
    int good_rows = 0, total_rows = 0;
    while (std::getline(csv, line)) {
        EXPECT_EQ(line.rfind(inputs.good + ",", 0), 0u) << line;
        ++good_rows;
        total_rows += line.find(",total,") != std::string::npos;
    }
    EXPECT_GT(good_rows, 1);
    EXPECT_EQ(total_rows, 1);
}

// ---- Independent readers --------------------------------------------------------------------

TEST(Libpcap, ReadsTheGeneratedCaptureAsItWasDescribed) {
    TempDir dir;
    GeneratorOptions options;
    options.snaplen = 80;
    const std::string path = dir.file("l.pcap");
    write_capture(path, options, 3000, 0);
    char error[PCAP_ERRBUF_SIZE];
    pcap_t* pcap = pcap_open_offline(path.c_str(), error);
    ASSERT_NE(pcap, nullptr) << error;
    EXPECT_EQ(pcap_datalink(pcap), DLT_EN10MB);
    TrafficGenerator generator(options);
    pcap_pkthdr* header;
    const u_char* data;
    int count = 0;
    while (pcap_next_ex(pcap, &header, &data) == 1) {
        const SyntheticPacket p = generator.next();
        EXPECT_EQ(std::int64_t{header->ts.tv_sec} * 1'000'000'000 + header->ts.tv_usec * 1000,
                  p.ts_ns);
        EXPECT_EQ(header->len, p.frame_len);
        EXPECT_EQ(header->caplen, std::min<std::uint32_t>(p.frame_len, 80));
        ++count;
    }
    pcap_close(pcap);
    EXPECT_EQ(count, 3000);
}

TEST(Tshark, CountsTheSamePacketsPerWindowInARealLoopbackCapture) {
    if (std::system("command -v tcpdump >/dev/null 2>&1 && command -v tshark >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "tcpdump or tshark is not installed (apt-get install tcpdump tshark)";
    TempDir dir;
    const std::string path = dir.file("lo.pcap");
    // Traffic in bursts of different sizes, so that the 2-second windows differ.
    const std::string script = "tcpdump -i lo -U -s 256 -w '" + path +
                               "' ip >/dev/null 2>&1 & pid=$!; sleep 1; "
                               "python3 -c '\n"
                               "import socket, time\n"
                               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                               "for burst in (5, 40, 15, 60, 25):\n"
                               "    for i in range(burst):\n"
                               "        s.sendto(b\"x\" * i, (\"127.0.0.1\", 9))\n"
                               "        time.sleep(1.1 / burst)\n"
                               "'; sleep 0.5; kill -INT $pid; wait $pid";
    int status = std::system(script.c_str());
    std::error_code ec;
    if (status != 0 && (!fs::exists(path, ec) || fs::file_size(path, ec) <= 24))
        GTEST_SKIP() << "tcpdump cannot capture on the loopback here (no CAP_NET_RAW?)";
    if (!fs::exists(path, ec) || fs::file_size(path, ec) <= 24)
        GTEST_SKIP() << "tcpdump captured nothing on the loopback";

    const FileReport report = analyse_whole(path, 2'000'000'000);
    ASSERT_EQ(report.error, "");
    const std::string table =
        run("tshark -r '" + path + "' -q -z io,stat,2,ip 2>/dev/null", status);
    const std::regex line(R"(\|\s*([0-9.]+)\s*<>\s*(\S+)\s*\|\s*([0-9]+)\s*\|)");
    std::vector<std::uint64_t> counts;
    for (std::sregex_iterator it(table.begin(), table.end(), line), end; it != end; ++it)
        counts.push_back(std::stoull((*it)[3]));
    ASSERT_FALSE(counts.empty()) << table;
    // tshark lists intervals up to the last packet; so does pcap_stats.
    ASSERT_EQ(counts.size(), report.rows.size()) << table;
    for (std::size_t i = 0; i < counts.size(); ++i)
        EXPECT_EQ(counts[i], report.rows[i].packets) << "window " << i << "\n" << table;
    EXPECT_GE(report.total.packets, 145u);
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
