#include "capture.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pcapstats {
namespace {

constexpr std::uint32_t kMagicMicro = 0xa1b2c3d4;
constexpr std::uint32_t kMagicNano = 0xa1b23c4d;
constexpr std::uint32_t kMagicPcapng = 0x0a0d0d0a;

std::uint32_t load32(const std::uint8_t* p, bool swapped) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

std::string errno_text(int error) {
    return std::strerror(error);
}

// A record header decoded, before its bytes are looked at.
struct RecordHeader {
    std::int64_t ts_ns;
    std::uint32_t incl_len;
    std::uint32_t orig_len;
};

RecordHeader decode_record_header(const std::uint8_t* p, const CaptureFormat& f) noexcept {
    const std::uint32_t sec = load32(p, f.swapped);
    const std::uint32_t frac = load32(p + 4, f.swapped);
    const std::int64_t frac_ns = f.nanosecond ? frac : std::int64_t{frac} * 1000;
    return {std::int64_t{sec} * 1'000'000'000 + frac_ns, load32(p + 8, f.swapped),
            load32(p + 12, f.swapped)};
}

std::uint32_t record_limit(const CaptureFormat& f) noexcept {
    return std::max(f.snaplen, kMaxRecordBytes);
}

// Headers that a writer could have produced: used to find boundaries from arbitrary offsets.
bool plausible(const std::uint8_t* p, const CaptureFormat& f, std::int64_t first_ts_ns) noexcept {
    const std::uint32_t frac = load32(p + 4, f.swapped);
    if (frac >= (f.nanosecond ? 1'000'000'000u : 1'000'000u)) return false;
    const RecordHeader h = decode_record_header(p, f);
    constexpr std::int64_t kDay = 86'400LL * 1'000'000'000;
    if (h.ts_ns < first_ts_ns - kDay || h.ts_ns > first_ts_ns + 3650 * kDay) return false;
    return h.incl_len > 0 && h.incl_len <= h.orig_len && h.incl_len <= record_limit(f) &&
           h.orig_len <= 4 * kMaxRecordBytes;
}

}  // namespace

CaptureFormat parse_file_header(std::span<const std::uint8_t> bytes) {
    if (bytes.empty()) throw CaptureError("not a capture: the file is empty");
    if (bytes.size() >= 4) {
        const std::uint32_t magic = load32(bytes.data(), false);
        if (magic == kMagicPcapng)
            throw CaptureError(
                "not a classic pcap capture: it is pcapng (convert it with "
                "'editcap -F pcap in.pcapng out.pcap')");
    }
    if (bytes.size() < kFileHeaderBytes) {
        throw CaptureError("not a capture: " + std::to_string(bytes.size()) +
                           " bytes, shorter than a pcap file header");
    }
    const std::uint32_t magic = load32(bytes.data(), false);
    CaptureFormat f;
    if (magic == kMagicMicro || magic == kMagicNano) {
        f.swapped = false;
    } else if (__builtin_bswap32(magic) == kMagicMicro || __builtin_bswap32(magic) == kMagicNano) {
        f.swapped = true;
    } else {
        char text[64];
        std::snprintf(text, sizeof text, "not a pcap capture (magic 0x%08x)", magic);
        throw CaptureError(text);
    }
    f.nanosecond = load32(bytes.data(), f.swapped) == kMagicNano;
    f.snaplen = load32(bytes.data() + 16, f.swapped);
    f.linktype = load32(bytes.data() + 20, f.swapped) & 0x0fffffff;
    return f;
}

// Where the reader's bytes come from: a descriptor, or zlib over one.
class CaptureReader::Source {
  public:
    virtual ~Source() = default;
    // Up to n bytes; 0 at the end. Throws CaptureError on a read or decompression error.
    virtual std::size_t read(std::uint8_t* out, std::size_t n) = 0;
};

namespace {

class PlainSource final : public CaptureReader::Source {
  public:
    explicit PlainSource(int fd) : fd_(fd) {}
    ~PlainSource() override { ::close(fd_); }
    std::size_t read(std::uint8_t* out, std::size_t n) override {
        for (;;) {
            const ssize_t got = ::read(fd_, out, n);
            if (got >= 0) return static_cast<std::size_t>(got);
            if (errno != EINTR) throw CaptureError("cannot read: " + errno_text(errno));
        }
    }
    void seek(std::uint64_t offset) {
        if (::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0)
            throw CaptureError("cannot seek: " + errno_text(errno));
    }

  private:
    int fd_;
};

// zlib names a stream opened from a descriptor "<fd:N>"; the user knows the file's name.
std::string without_fd_name(const char* message) {
    std::string text = message;
    if (text.rfind("<fd:", 0) == 0) {
        const auto colon = text.find(": ");
        if (colon != std::string::npos) text.erase(0, colon + 2);
    }
    return text;
}

class GzipSource final : public CaptureReader::Source {
  public:
    explicit GzipSource(int fd) : file_(gzdopen(fd, "rb")) {
        if (file_ == nullptr) {
            ::close(fd);
            throw CaptureError("cannot start gzip decompression");
        }
        gzbuffer(file_, 1 << 18);
    }
    ~GzipSource() override { gzclose(file_); }
    std::size_t read(std::uint8_t* out, std::size_t n) override {
        const int got =
            gzread(file_, out, static_cast<unsigned>(std::min<std::size_t>(n, 1 << 30)));
        int error = Z_OK;
        const char* message = gzerror(file_, &error);
        // A stream cut short reads as a short end with Z_BUF_ERROR set, not always as -1.
        if (got < 0 || (error != Z_OK && error != Z_STREAM_END)) {
            if (error == Z_ERRNO) throw CaptureError("cannot read: " + errno_text(errno));
            throw CaptureError("corrupt gzip stream: " + without_fd_name(message));
        }
        return static_cast<std::size_t>(got);
    }

  private:
    gzFile file_;
};

int open_readable(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw CaptureError("cannot open: " + errno_text(errno));
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        ::close(fd);
        throw CaptureError("cannot read: it is a directory");
    }
    return fd;
}

bool starts_with_gzip_magic(int fd) {
    std::uint8_t magic[2] = {0, 0};
    const ssize_t got = ::pread(fd, magic, 2, 0);
    if (got < 0) throw CaptureError("cannot read: " + errno_text(errno));
    return got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

}  // namespace

bool is_gzip_file(const std::string& path) {
    const int fd = open_readable(path);
    bool gzip = false;
    try {
        gzip = starts_with_gzip_magic(fd);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    return gzip;
}

CaptureReader::CaptureReader(const std::string& path, std::uint64_t begin, std::size_t buffer_bytes)
    : path_(path), buffer_(std::max<std::size_t>(buffer_bytes, kFileHeaderBytes)) {
    const int fd = open_readable(path);
    try {
        compressed_ = starts_with_gzip_magic(fd);
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (compressed_) {
        source_ = std::make_unique<GzipSource>(fd);
    } else {
        source_ = std::make_unique<PlainSource>(fd);
    }
    fill(kFileHeaderBytes);
    format_ = parse_file_header({buffer_.data(), end_});
    pos_ = kFileHeaderBytes;
    offset_ = kFileHeaderBytes;
    if (begin > kFileHeaderBytes) {
        if (compressed_) throw CaptureError("a gzip capture can only be read from its start");
        static_cast<PlainSource&>(*source_).seek(begin);
        pos_ = end_ = 0;
        offset_ = begin;
    }
}

CaptureReader::~CaptureReader() = default;

std::string CaptureReader::compression_error() noexcept {
    if (!compressed_) return {};
    try {
        while (source_->read(buffer_.data(), buffer_.size()) > 0) {
        }
    } catch (const CaptureError& e) {
        return e.what();
    }
    return {};
}

bool CaptureReader::fill(std::size_t bytes) {
    if (end_ - pos_ >= bytes) return true;
    if (pos_ > 0) {
        std::memmove(buffer_.data(), buffer_.data() + pos_, end_ - pos_);
        end_ -= pos_;
        pos_ = 0;
    }
    if (buffer_.size() < bytes) buffer_.resize(bytes);
    while (end_ < bytes) {
        const std::size_t got = source_->read(buffer_.data() + end_, buffer_.size() - end_);
        if (got == 0) return false;
        end_ += got;
    }
    return true;
}

bool CaptureReader::next(Record& record) {
    if (!fill(kRecordHeaderBytes)) {
        if (end_ == pos_) return false;
        throw CaptureError("truncated: the record header at byte " + std::to_string(offset_) +
                           " is cut off (" + std::to_string(end_ - pos_) + " of 16 bytes)");
    }
    const RecordHeader h = decode_record_header(buffer_.data() + pos_, format_);
    if (h.incl_len > record_limit(format_) || h.incl_len > h.orig_len) {
        throw CaptureError("corrupt record header at byte " + std::to_string(offset_) +
                           " (captured length " + std::to_string(h.incl_len) + ", wire length " +
                           std::to_string(h.orig_len) + ")");
    }
    const std::size_t total = kRecordHeaderBytes + h.incl_len;
    if (!fill(total)) {
        throw CaptureError("truncated: the record at byte " + std::to_string(offset_) + " has " +
                           std::to_string(end_ - pos_ - kRecordHeaderBytes) + " of its " +
                           std::to_string(h.incl_len) + " bytes");
    }
    record.ts_ns = h.ts_ns;
    record.orig_len = h.orig_len;
    record.data = {buffer_.data() + pos_ + kRecordHeaderBytes, h.incl_len};
    pos_ += total;
    offset_ += total;
    return true;
}

std::vector<std::uint64_t> find_record_boundaries(const std::string& path,
                                                  const CaptureFormat& format,
                                                  std::int64_t first_ts_ns,
                                                  const std::vector<std::uint64_t>& offsets) {
    const int fd = open_readable(path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        throw CaptureError("cannot stat: " + errno_text(errno));
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    constexpr std::size_t kWindow = 1 << 16;
    constexpr int kChain = 8;
    std::vector<std::uint8_t> window(kWindow);
    std::vector<std::uint64_t> found;
    std::uint8_t header[kRecordHeaderBytes];

    for (std::uint64_t start : offsets) {
        start = std::max(start, kFileHeaderBytes + 1);
        if (start >= size) continue;
        const ssize_t got = ::pread(fd, window.data(), kWindow, static_cast<off_t>(start));
        if (got <= 0) continue;
        const auto have = static_cast<std::uint64_t>(got);
        // A header at p, from the window when it is there, else from the file.
        auto header_at = [&](std::uint64_t p) -> const std::uint8_t* {
            if (p >= start && p + kRecordHeaderBytes <= start + have) return &window[p - start];
            if (::pread(fd, header, kRecordHeaderBytes, static_cast<off_t>(p)) !=
                static_cast<ssize_t>(kRecordHeaderBytes))
                return nullptr;
            return header;
        };
        for (std::uint64_t candidate = start; candidate + kRecordHeaderBytes <= start + have;
             ++candidate) {
            std::uint64_t p = candidate;
            int links = 0;
            bool ok = true;
            while (links < kChain && p != size) {
                const std::uint8_t* h = p + kRecordHeaderBytes <= size ? header_at(p) : nullptr;
                if (h == nullptr || !plausible(h, format, first_ts_ns)) {
                    ok = false;
                    break;
                }
                p += kRecordHeaderBytes + decode_record_header(h, format).incl_len;
                if (p > size) {
                    ok = false;
                    break;
                }
                ++links;
            }
            if (ok && links > 0) {
                if (found.empty() || found.back() < candidate) found.push_back(candidate);
                break;
            }
        }
    }
    ::close(fd);
    return found;
}

}  // namespace pcapstats
