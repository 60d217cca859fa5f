#pragma once

// The statistics of pcap_stats: per time window of a capture, over its IPv4 packets, kept as
// mergeable state (counts, per-address counts, port sets, central moments) so that ranges of
// packets analysed apart, in any process, merge into exactly what one pass over the whole file
// gives: integers equal, floating-point values equal up to rounding.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "capture.hpp"

namespace pcapstats {

// Count, mean and central moments M2..M4 of a series, updated one value at a time and merged
// with Pébay's formulas ("Formulas for robust, one-pass parallel computation of covariances
// and arbitrary-order statistical moments", 2008).
struct Moments {
    std::uint64_t n = 0;
    double mean = 0, m2 = 0, m3 = 0, m4 = 0;

    void add(double x) noexcept;
    void merge(const Moments& other) noexcept;
    // Population statistics; 0 where undefined (fewer than two values, or all equal).
    double stddev() const noexcept;
    double skewness() const noexcept;
    double kurtosis() const noexcept;  // excess kurtosis: 0 for a normal distribution

    template <class Archive>
    void serialize(Archive& ar) {
        ar(n, mean, m2, m3, m4);
    }
};

// The distinct values of 16-bit ports: a bitmap, allocated on first use.
struct PortSet {
    std::vector<std::uint64_t> words;

    void insert(std::uint16_t port) {
        if (words.empty()) words.assign(1024, 0);
        words[port >> 6] |= std::uint64_t{1} << (port & 63);
    }
    void merge(const PortSet& other);
    std::uint64_t size() const noexcept;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(words);
    }
};

using AddressCounts = std::unordered_map<std::uint32_t, std::uint64_t>;

// Everything a window (or a whole file) needs to give its row, in a form that merges.
struct WindowState {
    std::uint64_t packets = 0;       // IPv4 packets
    std::uint64_t bytes = 0;         // sum of IPv4 total length
    std::uint64_t other_frames = 0;  // frames that are not IPv4 (IPv6, ARP, ...)
    std::uint64_t icmp = 0, tcp = 0, udp = 0, syn = 0, fin = 0;
    AddressCounts src, dst;
    // Inter-arrival times in seconds: each IPv4 packet but the file's first contributes the
    // time since the IPv4 packet before it, to the window it falls in.
    Moments iat;
    PortSet tcp_src_ports, tcp_dst_ports, udp_src_ports, udp_dst_ports;

    void merge(const WindowState& other);

    template <class Archive>
    void serialize(Archive& ar) {
        ar(packets, bytes, other_frames, icmp, tcp, udp, syn, fin, src, dst, iat, tcp_src_ports,
           tcp_dst_ports, udp_src_ports, udp_dst_ports);
    }
};

// One line of the output. window is -1 for the file's total.
struct WindowRow {
    std::int64_t window = 0;
    std::int64_t start_ns = 0;  // since the epoch
    std::uint64_t packets = 0, bytes = 0, src_ips = 0, dst_ips = 0;
    double src_entropy = 0, dst_entropy = 0, src_f2 = 0, dst_f2 = 0, mean_len = 0;
    double iat_mean = 0, iat_std = 0, iat_skew = 0, iat_kurt = 0;
    double icmp_frac = 0, tcp_frac = 0, udp_frac = 0;
    std::uint64_t syn = 0, fin = 0;
    std::uint64_t tcp_src_ports = 0, tcp_dst_ports = 0, udp_src_ports = 0, udp_dst_ports = 0;
    std::uint64_t other_frames = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(window, start_ns, packets, bytes, src_ips, dst_ips, src_entropy, dst_entropy, src_f2,
           dst_f2, mean_len, iat_mean, iat_std, iat_skew, iat_kurt, icmp_frac, tcp_frac, udp_frac,
           syn, fin, tcp_src_ports, tcp_dst_ports, udp_src_ports, udp_dst_ports, other_frames);
    }
};

inline constexpr std::int64_t kTotalWindow = -1;

// Normalised Shannon entropy of the counts: H / log2(distinct), 0 for fewer than two values.
double normalised_entropy(const AddressCounts& counts, std::uint64_t total);
// Second frequency moment over the square of the total: sum(count^2) / total^2.
double frequency_moment_f2(const AddressCounts& counts, std::uint64_t total);
// The row of a state.
WindowRow make_row(const WindowState& state, std::int64_t window, std::int64_t start_ns);

// One piece of work: the records of one capture between two byte offsets, or all of it.
struct RangeTask {
    std::string path;
    std::uint32_t file_index = 0;
    std::uint32_t range_index = 0;
    std::uint32_t range_count = 1;
    std::uint64_t begin = 0;                  // 0: from the first record
    std::uint64_t end = UINT64_MAX;           // stop before a record that starts here or later
    std::int64_t first_ts_ns = 0;             // the file's first packet; read when begin is 0
    std::int64_t window_ns = 10'000'000'000;  // the window length
    std::uint64_t bytes = 0;                  // the range's size, for scheduling

    template <class Archive>
    void serialize(Archive& ar) {
        ar(path, file_index, range_index, range_count, begin, end, first_ts_ns, window_ns, bytes);
    }
};

// What a range gives back. Windows that lie wholly inside the range come back as rows (and
// in closed_total); the ones it shares with its neighbours, or may share, come back as state.
struct RangeResult {
    std::uint32_t file_index = 0;
    std::uint32_t range_index = 0;
    std::string error;                          // not empty: the capture is unusable, this says why
    std::uint64_t begin = 0, end = UINT64_MAX;  // the task's
    std::int64_t window_ns = 0;
    std::uint64_t end_offset = 0;  // where reading stopped: must be the next range's begin
    std::uint64_t frames = 0;
    std::int64_t first_ts_ns = 0;  // the file's first packet (the windows' origin)
    bool has_ipv4 = false;
    std::int64_t first_ipv4_ns = 0, last_ipv4_ns = 0;
    std::int64_t first_ipv4_window = 0;
    std::vector<WindowRow> rows;
    WindowState closed_total;
    std::map<std::int64_t, WindowState> open;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(file_index, range_index, error, begin, end, window_ns, end_offset, frames, first_ts_ns,
           has_ipv4, first_ipv4_ns, last_ipv4_ns, first_ipv4_window, rows, closed_total, open);
    }
};

// Analyses one range. Never throws for a bad capture: the reason is in `error`.
RangeResult analyse_range(RangeTask task);

// The result for one input file.
struct FileReport {
    std::string path;
    std::string error;            // not empty: the file was skipped, this says why
    std::vector<WindowRow> rows;  // every window from the first to the last, in order
    WindowRow total;              // window == kTotalWindow
};

// Merges the results of one file's ranges as they arrive, in any order, into its report.
// Memory stays small: results are taken in range order (one that arrives early waits), and a
// window is closed into its row as soon as no later range can reach it.
class FileMerger {
  public:
    FileMerger(std::string path, std::uint32_t range_count);
    ~FileMerger();
    FileMerger(FileMerger&&) noexcept;
    FileMerger& operator=(FileMerger&&) noexcept;

    void add(RangeResult result);
    // True once every range has been added.
    bool complete() const noexcept { return received_ == range_count_; }
    // The report (with `error` set if a range failed), or nullopt when the ranges do not fit
    // together: analyse the file whole instead. Call once, after complete().
    std::optional<FileReport> finish();

  private:
    struct Pending;
    void take(RangeResult& result);
    void close_before(std::int64_t window);

    std::string path_;
    std::uint32_t range_count_;
    std::uint32_t received_ = 0;
    std::uint32_t next_ = 0;
    bool fits_ = true;
    std::string error_;
    std::int64_t origin_ = 0;
    std::int64_t window_ns_ = 0;
    std::unique_ptr<Pending> pending_;
};

// Merges the results of one file's ranges (all of them, any order) into its report. Returns
// nullopt when the ranges do not fit together (a boundary guessed wrong, or timestamps out of
// order by more than a window across a boundary): analyse the file whole instead.
std::optional<FileReport> merge_ranges(const std::string& path, std::vector<RangeResult> results);

struct AnalysisOptions {
    std::int64_t window_ns = 10'000'000'000;
    // Plain captures larger than this are split into ranges of about this size.
    std::uint64_t range_bytes = 32ull << 20;
};

// Cuts the inputs into tasks: a plain capture larger than range_bytes into ranges, anything
// else (small, gzip, or unreadable: its task reports why) whole.
std::vector<RangeTask> plan_tasks(const std::vector<std::string>& paths,
                                  const AnalysisOptions& options);

// One file analysed whole, in this process.
FileReport analyse_whole(const std::string& path, std::int64_t window_ns);

// Every file analysed whole, one after another, in this process.
std::vector<FileReport> analyse_serial(const std::vector<std::string>& paths,
                                       const AnalysisOptions& options);

}  // namespace pcapstats
