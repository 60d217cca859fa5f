#include "analysis.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>

namespace pcapstats {

// ---- Moments -------------------------------------------------------------------------------

void Moments::add(double x) noexcept {
    const double n1 = static_cast<double>(n);
    ++n;
    const double nn = static_cast<double>(n);
    const double delta = x - mean;
    const double delta_n = delta / nn;
    const double delta_n2 = delta_n * delta_n;
    const double term1 = delta * delta_n * n1;
    mean += delta_n;
    m4 += term1 * delta_n2 * (nn * nn - 3 * nn + 3) + 6 * delta_n2 * m2 - 4 * delta_n * m3;
    m3 += term1 * delta_n * (nn - 2) - 3 * delta_n * m2;
    m2 += term1;
}

void Moments::merge(const Moments& b) noexcept {
    if (b.n == 0) return;
    if (n == 0) {
        *this = b;
        return;
    }
    const double na = static_cast<double>(n), nb = static_cast<double>(b.n);
    const double nn = na + nb;
    const double delta = b.mean - mean;
    const double d2 = delta * delta, d3 = d2 * delta, d4 = d2 * d2;
    const double new_m4 = m4 + b.m4 +
                          d4 * na * nb * (na * na - na * nb + nb * nb) / (nn * nn * nn) +
                          6 * d2 * (na * na * b.m2 + nb * nb * m2) / (nn * nn) +
                          4 * delta * (na * b.m3 - nb * m3) / nn;
    const double new_m3 =
        m3 + b.m3 + d3 * na * nb * (na - nb) / (nn * nn) + 3 * delta * (na * b.m2 - nb * m2) / nn;
    m2 = m2 + b.m2 + d2 * na * nb / nn;
    m3 = new_m3;
    m4 = new_m4;
    mean += delta * nb / nn;
    n += b.n;
}

double Moments::stddev() const noexcept {
    return n < 2 ? 0.0 : std::sqrt(m2 / static_cast<double>(n));
}

// Below this relative spread the central moments are rounding noise, not shape.
static bool degenerate(const Moments& m) noexcept {
    return m.n < 2 || m.m2 <= 1e-24 * static_cast<double>(m.n) * (m.mean * m.mean + 1e-300);
}

double Moments::skewness() const noexcept {
    if (degenerate(*this)) return 0.0;
    return std::sqrt(static_cast<double>(n)) * m3 / std::pow(m2, 1.5);
}

double Moments::kurtosis() const noexcept {
    if (degenerate(*this)) return 0.0;
    return static_cast<double>(n) * m4 / (m2 * m2) - 3.0;
}

// ---- Sets and states -----------------------------------------------------------------------

void PortSet::merge(const PortSet& other) {
    if (other.words.empty()) return;
    if (words.empty()) {
        words = other.words;
        return;
    }
    for (std::size_t i = 0; i < words.size(); ++i) words[i] |= other.words[i];
}

std::uint64_t PortSet::size() const noexcept {
    std::uint64_t count = 0;
    for (std::uint64_t w : words) count += static_cast<std::uint64_t>(std::popcount(w));
    return count;
}

static void merge_counts(AddressCounts& into, const AddressCounts& from) {
    if (into.empty()) {
        into = from;
        return;
    }
    for (const auto& [address, count] : from) into[address] += count;
}

void WindowState::merge(const WindowState& o) {
    packets += o.packets;
    bytes += o.bytes;
    other_frames += o.other_frames;
    icmp += o.icmp;
    tcp += o.tcp;
    udp += o.udp;
    syn += o.syn;
    fin += o.fin;
    merge_counts(src, o.src);
    merge_counts(dst, o.dst);
    iat.merge(o.iat);
    tcp_src_ports.merge(o.tcp_src_ports);
    tcp_dst_ports.merge(o.tcp_dst_ports);
    udp_src_ports.merge(o.udp_src_ports);
    udp_dst_ports.merge(o.udp_dst_ports);
}

double normalised_entropy(const AddressCounts& counts, std::uint64_t total) {
    if (counts.size() < 2 || total == 0) return 0.0;
    const double t = static_cast<double>(total);
    double h = 0;
    for (const auto& [address, count] : counts) {
        const double p = static_cast<double>(count) / t;
        h -= p * std::log2(p);
    }
    return h / std::log2(static_cast<double>(counts.size()));
}

double frequency_moment_f2(const AddressCounts& counts, std::uint64_t total) {
    if (total == 0) return 0.0;
    // Exact in integers (a sum of squares of counts fits 128 bits), one rounding at the end.
    __extension__ using Wide = unsigned __int128;
    Wide sum = 0;
    for (const auto& [address, count] : counts) sum += static_cast<Wide>(count) * count;
    const double t = static_cast<double>(total);
    return static_cast<double>(sum) / (t * t);
}

WindowRow make_row(const WindowState& s, std::int64_t window, std::int64_t start_ns) {
    WindowRow r;
    r.window = window;
    r.start_ns = start_ns;
    r.packets = s.packets;
    r.bytes = s.bytes;
    r.src_ips = s.src.size();
    r.dst_ips = s.dst.size();
    r.src_entropy = normalised_entropy(s.src, s.packets);
    r.dst_entropy = normalised_entropy(s.dst, s.packets);
    r.src_f2 = frequency_moment_f2(s.src, s.packets);
    r.dst_f2 = frequency_moment_f2(s.dst, s.packets);
    const double p = static_cast<double>(s.packets);
    if (s.packets > 0) {
        r.mean_len = static_cast<double>(s.bytes) / p;
        r.icmp_frac = static_cast<double>(s.icmp) / p;
        r.tcp_frac = static_cast<double>(s.tcp) / p;
        r.udp_frac = static_cast<double>(s.udp) / p;
    }
    r.iat_mean = s.iat.n > 0 ? s.iat.mean : 0.0;
    r.iat_std = s.iat.stddev();
    r.iat_skew = s.iat.skewness();
    r.iat_kurt = s.iat.kurtosis();
    r.syn = s.syn;
    r.fin = s.fin;
    r.tcp_src_ports = s.tcp_src_ports.size();
    r.tcp_dst_ports = s.tcp_dst_ports.size();
    r.udp_src_ports = s.udp_src_ports.size();
    r.udp_dst_ports = s.udp_dst_ports.size();
    r.other_frames = s.other_frames;
    return r;
}

// ---- Packets -------------------------------------------------------------------------------

namespace {

std::uint16_t be16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

// The IPv4 header inside a frame, or nullptr. Understands the link types that captures of
// IPv4 commonly have: Ethernet (with VLAN tags), raw IP, Linux cooked (v1 and v2), BSD loopback.
const std::uint8_t* ipv4_header(std::uint32_t linktype, std::span<const std::uint8_t> frame,
                                bool swapped, std::size_t& left) {
    const std::uint8_t* p = frame.data();
    std::size_t n = frame.size();
    std::uint16_t ethertype = 0;
    switch (linktype) {
        case 1: {  // Ethernet
            if (n < 14) return nullptr;
            ethertype = be16(p + 12);
            p += 14;
            n -= 14;
            while ((ethertype == 0x8100 || ethertype == 0x88a8) && n >= 4) {
                ethertype = be16(p + 2);
                p += 4;
                n -= 4;
            }
            break;
        }
        case 101:  // raw IP
        case 228:  // raw IPv4
            ethertype = n > 0 && (p[0] >> 4) == 4 ? 0x0800 : 0;
            break;
        case 113:  // Linux cooked v1
            if (n < 16) return nullptr;
            ethertype = be16(p + 14);
            p += 16;
            n -= 16;
            break;
        case 276:  // Linux cooked v2
            if (n < 20) return nullptr;
            ethertype = be16(p);
            p += 20;
            n -= 20;
            break;
        case 0: {  // BSD loopback: the family in the writer's byte order
            if (n < 4) return nullptr;
            std::uint32_t family;
            std::memcpy(&family, p, 4);
            if (swapped) family = __builtin_bswap32(family);
            ethertype = family == 2 ? 0x0800 : 0;
            p += 4;
            n -= 4;
            break;
        }
        case 108:  // OpenBSD loopback: the family in network order
            if (n < 4) return nullptr;
            ethertype = (p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 2) ? 0x0800 : 0;
            p += 4;
            n -= 4;
            break;
        default:
            return nullptr;
    }
    if (ethertype != 0x0800 || n < 20 || (p[0] >> 4) != 4 || (p[0] & 0x0f) < 5) return nullptr;
    left = n;
    return p;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// The per-range engine: windows open while packets may still reach them, rows once not.
class RangeAnalyser {
  public:
    RangeAnalyser(const RangeTask& task, RangeResult& result)
        : task_(task), result_(result), first_range_(task.begin <= kFileHeaderBytes) {}

    void packet(const Record& record, std::uint32_t linktype, bool swapped) {
        if (!have_origin_) {
            if (first_range_) result_.first_ts_ns = record.ts_ns;
            have_origin_ = true;
        }
        std::int64_t w = floor_div(record.ts_ns - result_.first_ts_ns, task_.window_ns);
        // A packet for a window already closed here (timestamps out of order by more than a
        // window) goes to the oldest window still open, the same rule in every process.
        if (w < closed_below_ && !(pinned_ && w <= pin_)) w = closed_below_;
        if (w > max_window_ || !seen_) {
            max_window_ = seen_ ? std::max(max_window_, w) : w;
            seen_ = true;
            close_windows();
        }
        WindowState& s = window(w);
        std::size_t left = 0;
        const std::uint8_t* ip = ipv4_header(linktype, record.data, swapped, left);
        if (ip == nullptr) {
            ++s.other_frames;
            return;
        }
        if (!result_.has_ipv4) {
            result_.has_ipv4 = true;
            result_.first_ipv4_ns = record.ts_ns;
            result_.first_ipv4_window = w;
            // Its window and the ones before may hold packets of the previous range, and will
            // get the inter-arrival time across the boundary: only the parent can close them.
            if (!first_range_) {
                pinned_ = true;
                pin_ = std::max(w, max_window_);
            }
        } else {
            s.iat.add(static_cast<double>(record.ts_ns - result_.last_ipv4_ns) * 1e-9);
        }
        result_.last_ipv4_ns = record.ts_ns;

        ++s.packets;
        s.bytes += be16(ip + 2);
        std::uint32_t src, dst;
        std::memcpy(&src, ip + 12, 4);
        std::memcpy(&dst, ip + 16, 4);
        ++s.src[src];
        ++s.dst[dst];
        const std::uint8_t protocol = ip[9];
        const std::size_t header = static_cast<std::size_t>(ip[0] & 0x0f) * 4;
        // Later fragments carry no transport header.
        const bool first_fragment = (be16(ip + 6) & 0x1fff) == 0;
        const std::uint8_t* l4 = ip + header;
        const std::size_t l4_left = left > header ? left - header : 0;
        if (protocol == 1) {
            ++s.icmp;
        } else if (protocol == 6) {
            ++s.tcp;
            if (first_fragment && l4_left >= 14) {
                s.tcp_src_ports.insert(be16(l4));
                s.tcp_dst_ports.insert(be16(l4 + 2));
                const std::uint8_t flags = l4[13];
                if (flags & 0x02) ++s.syn;
                if (flags & 0x01) ++s.fin;
            }
        } else if (protocol == 17) {
            ++s.udp;
            if (first_fragment && l4_left >= 4) {
                s.udp_src_ports.insert(be16(l4));
                s.udp_dst_ports.insert(be16(l4 + 2));
            }
        }
    }

    void finish() {
        for (auto& [w, state] : open_) result_.open.emplace(w, std::move(state));
        open_.clear();
    }

  private:
    WindowState& window(std::int64_t w) {
        if (w == current_index_ && current_ != nullptr) return *current_;
        current_ = &open_[w];
        current_index_ = w;
        return *current_;
    }

    // Windows more than one behind the newest are closed: a packet out of order by up to a
    // window still finds its own. Pinned ones stay for the parent.
    void close_windows() {
        if (!first_range_ && !result_.has_ipv4) return;
        const std::int64_t limit = max_window_ - 1;
        auto it = pinned_ ? open_.upper_bound(pin_) : open_.begin();
        while (it != open_.end() && it->first < limit) {
            result_.rows.push_back(
                make_row(it->second, it->first, result_.first_ts_ns + it->first * task_.window_ns));
            result_.closed_total.merge(it->second);
            if (current_ == &it->second) current_ = nullptr;
            it = open_.erase(it);
        }
        closed_below_ = std::max(closed_below_, limit);
    }

    const RangeTask& task_;
    RangeResult& result_;
    bool first_range_;
    bool have_origin_ = false;
    bool seen_ = false;
    bool pinned_ = false;
    std::int64_t pin_ = 0;
    std::int64_t max_window_ = 0;
    std::int64_t closed_below_ = INT64_MIN;
    std::map<std::int64_t, WindowState> open_;
    WindowState* current_ = nullptr;
    std::int64_t current_index_ = 0;
};

}  // namespace

RangeResult analyse_range(RangeTask task) {
    RangeResult result;
    result.file_index = task.file_index;
    result.range_index = task.range_index;
    result.first_ts_ns = task.first_ts_ns;
    result.window_ns = task.window_ns;
    result.begin = task.begin;
    result.end = task.end;
    std::unique_ptr<CaptureReader> reader;
    try {
        reader = std::make_unique<CaptureReader>(task.path, task.begin);
        RangeAnalyser analyser(task, result);
        const std::uint32_t linktype = reader->format().linktype;
        const bool swapped = reader->format().swapped;
        Record record;
        while (reader->offset() < task.end && reader->next(record)) {
            ++result.frames;
            analyser.packet(record, linktype, swapped);
        }
        analyser.finish();
        result.end_offset = reader->offset();
    } catch (const CaptureError& e) {
        result.error = e.what();
        if (reader) {
            std::string compression = reader->compression_error();
            if (!compression.empty()) result.error = std::move(compression);
        }
    } catch (const std::bad_alloc&) {
        result.error = "out of memory while analysing it";
    }
    if (!result.error.empty()) {
        result.rows.clear();
        result.open.clear();
        result.closed_total = {};
    }
    return result;
}

// ---- Merging -------------------------------------------------------------------------------

struct FileMerger::Pending {
    std::map<std::uint32_t, RangeResult> early;  // arrived before the ranges ahead of them
    std::map<std::int64_t, WindowState> open;    // windows that ranges share, or may share
    std::vector<WindowRow> rows;
    WindowState total;
    std::optional<RangeResult> previous;  // the last range taken in, without its data
    std::optional<std::int64_t> previous_ipv4;
};

FileMerger::FileMerger(std::string path, std::uint32_t range_count)
    : path_(std::move(path)), range_count_(range_count), pending_(std::make_unique<Pending>()) {}
FileMerger::~FileMerger() = default;
FileMerger::FileMerger(FileMerger&&) noexcept = default;
FileMerger& FileMerger::operator=(FileMerger&&) noexcept = default;

void FileMerger::add(RangeResult result) {
    ++received_;
    if (!error_.empty() || !fits_) return;
    if (!result.error.empty()) {
        error_ = std::move(result.error);
        pending_ = std::make_unique<Pending>();
        return;
    }
    const std::uint32_t index = result.range_index;
    pending_->early.emplace(index, std::move(result));
    // Ranges are taken in order: the inter-arrival time across a boundary needs the range
    // before, and a window can be closed only once every range that may reach it is in.
    for (auto it = pending_->early.find(next_); it != pending_->early.end();
         it = pending_->early.find(next_)) {
        take(it->second);
        pending_->early.erase(it);
        ++next_;
        if (!fits_) return;
    }
}

void FileMerger::take(RangeResult& r) {
    Pending& p = *pending_;
    if (p.previous) {
        // The reader of a range stops at the first record at or past its end: a boundary
        // guessed right is exactly where a record starts, and the next range begins there.
        if (p.previous->end_offset != p.previous->end || r.begin != p.previous->end) {
            fits_ = false;
            return;
        }
    } else {
        origin_ = r.first_ts_ns;
        window_ns_ = r.window_ns;
    }
    std::int64_t newest = INT64_MIN;
    for (auto& [w, state] : r.open) {
        p.open[w].merge(state);
        newest = std::max(newest, w);
    }
    // The inter-arrival time across the boundary goes to the window of the range's first IPv4
    // packet, which that range left open for this.
    if (r.has_ipv4 && p.previous_ipv4) {
        p.open[r.first_ipv4_window].iat.add(
            static_cast<double>(r.first_ipv4_ns - *p.previous_ipv4) * 1e-9);
    }
    if (r.has_ipv4) p.previous_ipv4 = r.last_ipv4_ns;
    for (const WindowRow& row : r.rows) newest = std::max(newest, row.window);
    p.rows.insert(p.rows.end(), r.rows.begin(), r.rows.end());
    p.total.merge(r.closed_total);
    // Later ranges start no earlier than one window before this one's newest (timestamps out
    // of order by more do not fit, and finish() finds that): older windows are complete.
    if (newest != INT64_MIN) close_before(newest - 1);
    r.rows = {};
    r.open.clear();
    r.closed_total = {};
    p.previous = std::move(r);
}

void FileMerger::close_before(std::int64_t window) {
    Pending& p = *pending_;
    for (auto it = p.open.begin(); it != p.open.end() && it->first < window;) {
        p.rows.push_back(make_row(it->second, it->first, 0));
        p.total.merge(it->second);
        it = p.open.erase(it);
    }
}

std::optional<FileReport> FileMerger::finish() {
    FileReport report;
    report.path = path_;
    if (!error_.empty()) {
        report.error = error_;
        return report;
    }
    if (!fits_ || next_ != range_count_) return std::nullopt;
    close_before(INT64_MAX);
    Pending& p = *pending_;
    std::sort(p.rows.begin(), p.rows.end(),
              [](const WindowRow& a, const WindowRow& b) { return a.window < b.window; });
    // Windows with no packet at all still get their (empty) row, as tshark's io,stat does.
    std::vector<WindowRow> filled;
    filled.reserve(p.rows.size());
    for (const WindowRow& row : p.rows) {
        if (!filled.empty()) {
            if (row.window == filled.back().window) return std::nullopt;  // closed twice
            for (std::int64_t w = filled.back().window + 1; w < row.window; ++w) {
                WindowRow empty;
                empty.window = w;
                filled.push_back(empty);
            }
        }
        filled.push_back(row);
    }
    for (WindowRow& row : filled) row.start_ns = origin_ + row.window * window_ns_;
    report.rows = std::move(filled);
    report.total = make_row(p.total, kTotalWindow, origin_);
    pending_ = std::make_unique<Pending>();
    return report;
}

std::optional<FileReport> merge_ranges(const std::string& path, std::vector<RangeResult> results) {
    FileMerger merger(path, static_cast<std::uint32_t>(results.size()));
    for (RangeResult& r : results) merger.add(std::move(r));
    return merger.finish();
}

// ---- Planning ------------------------------------------------------------------------------

std::vector<RangeTask> plan_tasks(const std::vector<std::string>& paths,
                                  const AnalysisOptions& options) {
    std::vector<RangeTask> tasks;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        RangeTask whole;
        whole.path = paths[i];
        whole.file_index = static_cast<std::uint32_t>(i);
        whole.window_ns = options.window_ns;
        struct stat st {};
        if (::stat(paths[i].c_str(), &st) == 0)
            whole.bytes = static_cast<std::uint64_t>(st.st_size);
        std::vector<RangeTask> ranges;
        try {
            if (S_ISREG(st.st_mode) && whole.bytes > options.range_bytes &&
                !is_gzip_file(paths[i])) {
                CaptureReader reader(paths[i], 0, 4096);  // only the first record
                Record first;
                if (reader.next(first)) {
                    std::vector<std::uint64_t> offsets;
                    for (std::uint64_t o = options.range_bytes;
                         o + options.range_bytes / 2 < whole.bytes; o += options.range_bytes)
                        offsets.push_back(o);
                    std::vector<std::uint64_t> bounds =
                        find_record_boundaries(paths[i], reader.format(), first.ts_ns, offsets);
                    bounds.insert(bounds.begin(), 0);
                    for (std::size_t k = 0; k < bounds.size(); ++k) {
                        RangeTask t = whole;
                        t.range_index = static_cast<std::uint32_t>(k);
                        t.begin = bounds[k];
                        t.end = k + 1 < bounds.size() ? bounds[k + 1] : UINT64_MAX;
                        t.first_ts_ns = first.ts_ns;
                        t.bytes = (k + 1 < bounds.size() ? bounds[k + 1] : whole.bytes) - bounds[k];
                        ranges.push_back(t);
                    }
                }
            }
        } catch (const CaptureError&) {
            ranges.clear();  // the whole-file task will report it
        }
        if (ranges.size() <= 1) {
            tasks.push_back(whole);
        } else {
            for (RangeTask& t : ranges) t.range_count = static_cast<std::uint32_t>(ranges.size());
            tasks.insert(tasks.end(), ranges.begin(), ranges.end());
        }
    }
    return tasks;
}

FileReport analyse_whole(const std::string& path, std::int64_t window_ns) {
    RangeTask task;
    task.path = path;
    task.window_ns = window_ns;
    std::vector<RangeResult> results;
    results.push_back(analyse_range(task));
    // One range always fits with itself.
    return *merge_ranges(path, std::move(results));
}

std::vector<FileReport> analyse_serial(const std::vector<std::string>& paths,
                                       const AnalysisOptions& options) {
    std::vector<FileReport> reports;
    for (const std::string& path : paths) reports.push_back(analyse_whole(path, options.window_ns));
    return reports;
}

}  // namespace pcapstats
