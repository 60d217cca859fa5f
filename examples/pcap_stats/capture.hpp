#pragma once

// Reading classic pcap captures, plain or gzip-compressed, record by record, from any byte
// offset: the reader of pcap_stats. It parses the format itself rather than through libpcap,
// for three reasons: a worker must start at a byte offset in the middle of a file, which
// libpcap's offline reader cannot do; a .gz file is then read through zlib with the same code
// (no FILE* adapter, no helper thread); and every failure can say precisely what is wrong and
// where. libpcap is used by the generator's tests as an independent reader of the same files.

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pcapstats {

// Whatever makes a capture unusable: the message says what and where, for the user.
class CaptureError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// What the 24-byte file header says.
struct CaptureFormat {
    bool swapped = false;     // written on a host of the other byte order
    bool nanosecond = false;  // timestamps' second fraction is in ns (magic 0xa1b23c4d)
    std::uint32_t snaplen = 0;
    std::uint32_t linktype = 0;
};

// One record: the timestamp in ns since the epoch, the bytes captured, the length on the wire.
struct Record {
    std::int64_t ts_ns = 0;
    std::uint32_t orig_len = 0;
    std::span<const std::uint8_t> data;
};

inline constexpr std::uint64_t kFileHeaderBytes = 24;
inline constexpr std::uint64_t kRecordHeaderBytes = 16;
// Records longer than this are taken as corruption (libpcap's own limit is 256 KiB).
inline constexpr std::uint32_t kMaxRecordBytes = 262144;

// Decodes a file header; throws CaptureError when the bytes are not one.
CaptureFormat parse_file_header(std::span<const std::uint8_t> bytes);

// Reads the records of one capture in order. Plain files can start at any record boundary and
// stop at a byte offset; gzip files (recognised by their magic, whatever their name) are read
// whole. Memory is one buffer, whatever the capture's size.
class CaptureReader {
  public:
    // Opens `path` and reads its file header; then positions at `begin` (a record boundary
    // past the header, or 0 for the first record). buffer_bytes is how much it reads at a time
    // (it grows for a larger record). Throws CaptureError.
    explicit CaptureReader(const std::string& path, std::uint64_t begin = 0,
                           std::size_t buffer_bytes = 1 << 20);
    ~CaptureReader();
    CaptureReader(const CaptureReader&) = delete;
    CaptureReader& operator=(const CaptureReader&) = delete;

    const CaptureFormat& format() const noexcept { return format_; }
    bool compressed() const noexcept { return compressed_; }
    // The byte offset (in the uncompressed stream) where the next record starts.
    std::uint64_t offset() const noexcept { return offset_; }

    // The next record, or false at the end of the capture. A record that is cut off or whose
    // header is impossible throws CaptureError. The record's bytes stay valid until the next
    // call.
    bool next(Record& record);

    // After a record could not be parsed in a gzip capture: reads the rest of the stream, and
    // returns the decompressor's error if it finds one (bad data often inflates to garbage
    // before the stream's check fails), else "". Always "" for a plain capture.
    std::string compression_error() noexcept;

    // Where the bytes come from (a descriptor, or zlib over one); defined in capture.cpp.
    class Source;

  private:
    // Makes at least `bytes` bytes available from buffer_[pos_]; false if the source ends first.
    bool fill(std::size_t bytes);

    std::string path_;
    std::unique_ptr<Source> source_;
    bool compressed_ = false;
    CaptureFormat format_;
    std::vector<std::uint8_t> buffer_;
    std::size_t pos_ = 0;
    std::size_t end_ = 0;
    std::uint64_t offset_ = 0;
};

// True if the file starts with the gzip magic; throws CaptureError if it cannot be read.
bool is_gzip_file(const std::string& path);

// Where record boundaries fall in a plain capture: for each of `offsets`, the first offset at
// or after it where a chain of plausible record headers starts (one that runs on to further
// plausible headers or to the exact end of the file). Offsets with no such boundary before the
// next one are dropped. The result is sorted and unique, and never contains the header's end.
// A boundary found this way is a strong guess; readers check it (see RangeResult::end_offset).
std::vector<std::uint64_t> find_record_boundaries(const std::string& path,
                                                  const CaptureFormat& format,
                                                  std::int64_t first_ts_ns,
                                                  const std::vector<std::uint64_t>& offsets);

}  // namespace pcapstats
