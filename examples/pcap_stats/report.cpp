#include "report.hpp"

#include <sys/wait.h>

#include <cctype>
#include <cinttypes>
#include <filesystem>
#include <stdexcept>

namespace pcapstats {
namespace {

std::string quoted(const std::string& field) {
    if (field.find_first_of(",\"\n") == std::string::npos) return field;
    std::string out = "\"";
    for (char c : field) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + '"';
}

// Exact: seconds and nanoseconds from the integer, no rounding through a double.
std::string seconds(std::int64_t ns) {
    char text[48];
    const bool negative = ns < 0;
    const std::uint64_t magnitude = negative ? 0 - static_cast<std::uint64_t>(ns) : ns;
    std::snprintf(text, sizeof text, "%s%" PRIu64 ".%09" PRIu64, negative ? "-" : "",
                  magnitude / 1'000'000'000, magnitude % 1'000'000'000);
    return text;
}

}  // namespace

std::string csv_header() {
    return "file,window,start_s,packets,bytes,src_ips,dst_ips,src_entropy,dst_entropy,src_f2,"
           "dst_f2,mean_len,iat_mean,iat_std,iat_skew,iat_kurt,icmp_frac,tcp_frac,udp_frac,syn,"
           "fin,tcp_src_ports,tcp_dst_ports,udp_src_ports,udp_dst_ports,other_frames";
}

std::string csv_row(const std::string& file, const WindowRow& r) {
    char text[1024];
    const std::string window = r.window == kTotalWindow ? "total" : std::to_string(r.window);
    std::snprintf(
        text, sizeof text,
        ",%s,%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
        ",%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,%.12g,"
        "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
        window.c_str(), seconds(r.start_ns).c_str(), r.packets, r.bytes, r.src_ips, r.dst_ips,
        r.src_entropy, r.dst_entropy, r.src_f2, r.dst_f2, r.mean_len, r.iat_mean, r.iat_std,
        r.iat_skew, r.iat_kurt, r.icmp_frac, r.tcp_frac, r.udp_frac, r.syn, r.fin, r.tcp_src_ports,
        r.tcp_dst_ports, r.udp_src_ports, r.udp_dst_ports, r.other_frames);
    return quoted(file) + text;
}

void write_csv(std::FILE* out, const std::vector<FileReport>& reports) {
    std::fprintf(out, "%s\n", csv_header().c_str());
    for (const FileReport& report : reports) {
        if (!report.error.empty()) continue;
        for (const WindowRow& row : report.rows)
            std::fprintf(out, "%s\n", csv_row(report.path, row).c_str());
        std::fprintf(out, "%s\n", csv_row(report.path, report.total).c_str());
    }
}

std::vector<std::string> write_plots(const std::string& directory,
                                     const std::vector<FileReport>& reports) {
    std::filesystem::create_directories(directory);
    std::vector<std::string> written;
    std::FILE* gnuplot = ::popen("gnuplot", "w");
    if (gnuplot == nullptr) throw std::runtime_error("cannot run gnuplot");
    for (std::size_t i = 0; i < reports.size(); ++i) {
        const FileReport& report = reports[i];
        if (!report.error.empty() || report.rows.empty()) continue;
        std::string stem = std::filesystem::path(report.path).filename().string();
        for (char& c : stem)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
        const std::string png =
            (std::filesystem::path(directory) / (std::to_string(i) + "_" + stem + ".png")).string();
        std::string title;
        for (char c : stem) title += (c == '_' || c == '"' || c == '\\') ? ' ' : c;
        // The data travel inline, as a datablock: no temporary file to clean up.
        std::fprintf(gnuplot, "$d << EOD\n");
        for (const WindowRow& r : report.rows) {
            std::fprintf(gnuplot,
                         "%" PRId64 " %" PRIu64 " %" PRIu64 " %.9g %.9g %.9g %.9g %.9g %.9g %.9g\n",
                         r.window, r.packets, r.bytes, r.src_entropy, r.dst_entropy, r.iat_mean,
                         r.iat_std, r.tcp_frac, r.udp_frac, r.icmp_frac);
        }
        std::fprintf(gnuplot, "EOD\n");
        std::fprintf(gnuplot,
                     "set terminal pngcairo size 1200,900 noenhanced\n"
                     "set output '%s'\n"
                     "set multiplot layout 2,2 title '%s'\n"
                     "set grid\nset key top right\nset xlabel 'window'\n"
                     "set ytics nomirror\nset y2tics\n"
                     "set title 'traffic'\nset ylabel 'packets'\nset y2label 'bytes'\n"
                     "plot $d using 1:2 with linespoints title 'packets', "
                     "$d using 1:3 axes x1y2 with linespoints title 'bytes'\n"
                     "unset y2tics\nunset y2label\nset ytics mirror\n"
                     "set title 'address entropy (normalised)'\nset ylabel 'entropy'\n"
                     "set key bottom right\n"
                     "set yrange [0:1.05]\n"
                     "plot $d using 1:4 with linespoints title 'source', "
                     "$d using 1:5 with linespoints title 'destination'\n"
                     "set autoscale y\nset key top right\n"
                     "set title 'inter-arrival time'\nset ylabel 'seconds'\n"
                     "plot $d using 1:6 with linespoints title 'mean', "
                     "$d using 1:7 with linespoints title 'std'\n"
                     "set title 'protocol mix'\nset ylabel 'fraction'\nset yrange [0:1.05]\n"
                     "plot $d using 1:8 with linespoints title 'tcp', "
                     "$d using 1:9 with linespoints title 'udp', "
                     "$d using 1:10 with linespoints title 'icmp'\n"
                     "set autoscale y\nunset multiplot\nset output\n",
                     png.c_str(), title.c_str());
        written.push_back(png);
    }
    const int status = ::pclose(gnuplot);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("gnuplot failed (is gnuplot-nox installed?)");
    return written;
}

}  // namespace pcapstats
