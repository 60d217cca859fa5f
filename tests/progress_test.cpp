// The progress contract: what the bar says (pure formatting), where it is drawn and where it
// stays silent, and that wrapping a range changes nothing about its elements.

#include "mproc/progress.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/unique_fd.hpp"
#include "mproc/pool.hpp"
#include "progress/format.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::ProgressBar;
using mproc::ProgressOptions;
using mproc::detail::format_bar_line;
using mproc::detail::format_plain_line;
using mproc::detail::ProgressSnapshot;
using mproc::detail::UniqueFd;

int square(int x) {
    return x * x;
}

std::string repeat(const std::string& piece, std::size_t times) {
    std::string text;
    for (std::size_t i = 0; i < times; ++i) text += piece;
    return text;
}

const std::string kFull = "\u2588";
const std::string kEmpty = "\u2591";

// A pipe, the simplest descriptor that is not a terminal.
struct Pipe {
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        read_end.reset(fds[0]);
        write_end.reset(fds[1]);
    }
    // Closes the write end and reads everything written to it.
    std::string close_and_read() {
        write_end.reset();
        std::string text;
        char buffer[4096];
        for (;;) {
            const ssize_t n = ::read(read_end.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return text;
            text.append(buffer, static_cast<std::size_t>(n));
        }
    }
    // What has been written so far, without waiting for more.
    std::string read_available() {
        ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
        std::string text;
        char buffer[4096];
        ssize_t n;
        while ((n = ::read(read_end.get(), buffer, sizeof buffer)) > 0) {
            text.append(buffer, static_cast<std::size_t>(n));
        }
        return text;
    }

    UniqueFd read_end;
    UniqueFd write_end;
};

// A pseudo-terminal of the given width: the bar draws on its terminal side, and a thread reads
// what a terminal would receive from the other side, so that the writer never blocks on a full
// buffer.
class PseudoTerminal {
  public:
    explicit PseudoTerminal(unsigned short columns) {
        master_.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!master_ || ::grantpt(master_.get()) != 0 || ::unlockpt(master_.get()) != 0) {
            throw std::runtime_error("cannot open a pseudo-terminal");
        }
        char name[128];
        if (::ptsname_r(master_.get(), name, sizeof name) != 0) {
            throw std::runtime_error("ptsname_r failed");
        }
        terminal_.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!terminal_) throw std::runtime_error("cannot open the pseudo-terminal's slave");
        winsize size{};
        size.ws_row = 24;
        size.ws_col = columns;
        if (::ioctl(terminal_.get(), TIOCSWINSZ, &size) != 0) {
            throw std::runtime_error("TIOCSWINSZ failed");
        }
        reader_ = std::thread([this] { read_until_closed(); });
    }
    ~PseudoTerminal() { close_and_read(); }

    int terminal() const { return terminal_.get(); }

    // Closes the terminal side and returns all that was written to it.
    std::string close_and_read() {
        terminal_.reset();
        closed_ = true;
        if (reader_.joinable()) reader_.join();
        return output_;
    }

  private:
    void read_until_closed() {
        // The master reads EIO once every descriptor of the terminal side is closed. Should a
        // forked process hold one, the reader still stops two seconds after close_and_read.
        const auto give_up = std::chrono::steady_clock::now() + 120s;
        auto quiet_since = std::chrono::steady_clock::now();
        char buffer[4096];
        while (std::chrono::steady_clock::now() < give_up) {
            pollfd ready{master_.get(), POLLIN, 0};
            const int polled = ::poll(&ready, 1, 50);
            if (polled > 0) {
                const ssize_t n = ::read(master_.get(), buffer, sizeof buffer);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) return;
                output_.append(buffer, static_cast<std::size_t>(n));
                quiet_since = std::chrono::steady_clock::now();
            } else if (closed_ && std::chrono::steady_clock::now() - quiet_since > 2s) {
                return;
            }
        }
    }

    UniqueFd master_;
    UniqueFd terminal_;
    std::atomic<bool> closed_ = false;
    std::string output_;
    std::thread reader_;
};

// The lines a terminal shows after receiving output: '\r' returns to the start of the line
// and later text overwrites, '\n' starts the next line; one column per code point.
std::vector<std::string> screen_lines(const std::string& output) {
    std::vector<std::vector<std::string>> lines(1);
    std::size_t column = 0;
    for (std::size_t i = 0; i < output.size();) {
        const char c = output[i];
        if (c == '\r') {
            column = 0;
            ++i;
            continue;
        }
        if (c == '\n') {
            lines.emplace_back();
            column = 0;
            ++i;
            continue;
        }
        std::size_t length = 1;
        while (i + length < output.size() &&
               (static_cast<unsigned char>(output[i + length]) & 0xC0) == 0x80) {
            ++length;
        }
        auto& line = lines.back();
        if (line.size() <= column) line.resize(column + 1, " ");
        line[column++] = output.substr(i, length);
        i += length;
    }
    std::vector<std::string> screen;
    for (const auto& cells : lines) {
        std::string text;
        for (const auto& cell : cells) text += cell;
        screen.push_back(text);
    }
    return screen;
}

std::string trim_right(std::string text) {
    text.erase(text.find_last_not_of(' ') + 1);
    return text;
}

// The last line of the screen that shows anything, without its padding.
std::string final_screen_line(const std::string& output) {
    const auto lines = screen_lines(output);
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
        if (const std::string line = trim_right(*it); !line.empty()) return line;
    }
    return {};
}

std::size_t shown_lines(const std::string& output) {
    const auto lines = screen_lines(output);
    return static_cast<std::size_t>(
        std::count_if(lines.begin(), lines.end(),
                      [](const std::string& line) { return !trim_right(line).empty(); }));
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
        lines.push_back(text.substr(start, end - start));
    }
    return lines;
}

// ---- What the bar says ----

TEST(ProgressFormatTest, DurationsShowMinutesAndSecondsAndHoursOnlyOnceThereAreSome) {
    using mproc::detail::format_duration;
    EXPECT_EQ(format_duration(0s), "00:00");
    EXPECT_EQ(format_duration(7s), "00:07");
    EXPECT_EQ(format_duration(3599s), "59:59");
    EXPECT_EQ(format_duration(3600s), "1:00:00");
    EXPECT_EQ(format_duration(10h + 1min + 2s), "10:01:02");
}

TEST(ProgressFormatTest, RateIsTheAverageSinceTheStart) {
    EXPECT_EQ(mproc::detail::format_rate(420, 3500ms), "120.0 it/s");
    EXPECT_EQ(mproc::detail::format_rate(1000, 3s), "333.3 it/s");
}

TEST(ProgressFormatTest, RateBelowOneItemASecondIsShownAsSecondsPerItem) {
    EXPECT_EQ(mproc::detail::format_rate(2, 5s), "2.5 s/it");
}

TEST(ProgressFormatTest, RateIsUnknownUntilThereIsSomethingToAverage) {
    EXPECT_EQ(mproc::detail::format_rate(0, 3s), "? it/s");
    EXPECT_EQ(mproc::detail::format_rate(5, 0ns), "? it/s");
}

TEST(ProgressFormatTest, AtZeroTheBarIsEmptyAndTheRemainingTimeUnknown) {
    const ProgressSnapshot start{.done = 0, .total = 1000, .elapsed = 0ns};
    EXPECT_EQ(format_bar_line(start, "", 60, true),
              "  0% |" + repeat(kEmpty, 24) + "|    0/1000  [00:00<?, ? it/s]");
}

TEST(ProgressFormatTest, HalfWayTheBarShowsPercentCountsElapsedRemainingAndRate) {
    const ProgressSnapshot halfway{.done = 420, .total = 1000, .elapsed = 3500ms};
    EXPECT_EQ(format_bar_line(halfway, "resize", 60, true),
              "resize  42% |" + repeat(kFull, 3) + repeat(kEmpty, 6) +
                  "|  420/1000  [00:03<00:04, 120.0 it/s]");
}

TEST(ProgressFormatTest, AtTheEndTheBarIsFullAndNothingRemains) {
    const ProgressSnapshot end{.done = 1000, .total = 1000, .elapsed = 8s};
    EXPECT_EQ(format_bar_line(end, "", 60, true),
              "100% |" + repeat(kFull, 16) + "| 1000/1000  [00:08<00:00, 125.0 it/s]");
}

TEST(ProgressFormatTest, WithoutUtf8TheBarIsAscii) {
    const ProgressSnapshot halfway{.done = 420, .total = 1000, .elapsed = 3500ms};
    EXPECT_EQ(format_bar_line(halfway, "resize", 60, false),
              "resize  42% |###------|  420/1000  [00:03<00:04, 120.0 it/s]");
}

TEST(ProgressFormatTest, AnUnknownTotalShowsACountAndARatePaddedToTheWidth) {
    const ProgressSnapshot counting{.done = 420, .total = std::nullopt, .elapsed = 3500ms};
    EXPECT_EQ(format_bar_line(counting, "scan", 40, true),
              "scan 420 it  [00:03, 120.0 it/s]        ");
}

TEST(ProgressFormatTest, AnEmptyTotalIsComplete) {
    const ProgressSnapshot nothing{.done = 0, .total = 0, .elapsed = 1s};
    EXPECT_EQ(format_bar_line(nothing, "", 40, false), "100% |######| 0/0  [00:01<00:00, ? it/s]");
}

TEST(ProgressFormatTest, CountsPastTheTotalStayAtAFullBar) {
    const ProgressSnapshot over{.done = 1200, .total = 1000, .elapsed = 10s};
    EXPECT_EQ(format_bar_line(over, "", 50, false),
              "100% |######| 1200/1000  [00:10<00:00, 120.0 it/s]");
}

TEST(ProgressFormatTest, ANarrowLineDropsTheBarAndAnEvenNarrowerOneIsCut) {
    const ProgressSnapshot halfway{.done = 420, .total = 1000, .elapsed = 3500ms};
    EXPECT_EQ(format_bar_line(halfway, "", 45, true),
              " 42%  420/1000  [00:03<00:04, 120.0 it/s]    ");
    EXPECT_EQ(format_bar_line(halfway, "", 10, true), " 42%  420/");
}

TEST(ProgressFormatTest, APlainLineSaysWhatTheBarSaysWithoutTheBar) {
    const ProgressSnapshot halfway{.done = 420, .total = 1000, .elapsed = 3500ms};
    EXPECT_EQ(format_plain_line(halfway, "resize"),
              "resize  42%  420/1000  [00:03<00:04, 120.0 it/s]");
    const ProgressSnapshot counting{.done = 7, .total = std::nullopt, .elapsed = 2s};
    EXPECT_EQ(format_plain_line(counting, ""), "7 it  [00:02, 3.5 it/s]");
}

TEST(ProgressFormatTest, TheFirstLocaleVariableSetDecidesWhetherBlocksCanBeShown) {
    using mproc::detail::locale_is_utf8;
    EXPECT_TRUE(locale_is_utf8(nullptr, nullptr, "en_US.UTF-8"));
    EXPECT_TRUE(locale_is_utf8("", "de_DE.utf8", "C"));
    EXPECT_FALSE(locale_is_utf8("C", nullptr, "en_US.UTF-8"));
    EXPECT_FALSE(locale_is_utf8(nullptr, nullptr, nullptr));
}

// ---- Where it is drawn ----

TEST(ProgressTest, NothingIsWrittenWhereTheDescriptorIsNotATerminal) {
    Pipe pipe;
    {
        ProgressBar bar(100, {.fd = pipe.write_end.get()});
        for (int i = 0; i < 100; ++i) bar.advance();
    }
    EXPECT_EQ(pipe.close_and_read(), "");
}

TEST(ProgressTest, PlainLinesAreWrittenToANonTerminalWhenAskedFor) {
    Pipe pipe;
    {
        ProgressBar bar(3, {.label = "job", .fd = pipe.write_end.get(), .plain_every = 1ms});
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(5ms);
            bar.advance();
        }
    }
    const std::string output = pipe.close_and_read();
    EXPECT_EQ(output.find('\r'), std::string::npos);
    ASSERT_FALSE(output.empty());
    EXPECT_EQ(output.back(), '\n');
    const auto lines = split_lines(output);
    // A line after each item, each more than an interval after the last, and one at the end.
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0].rfind("job  33% 1/3  [", 0), 0u) << lines[0];
    EXPECT_EQ(lines[3].rfind("job 100% 3/3  [", 0), 0u) << lines[3];
}

TEST(ProgressTest, PlainLinesComeNoMoreOftenThanAskedFor) {
    Pipe pipe;
    {
        ProgressBar bar(1000, {.fd = pipe.write_end.get(), .plain_every = 1h});
        for (int i = 0; i < 1000; ++i) bar.advance();
    }
    const auto lines = split_lines(pipe.close_and_read());
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].rfind("100% 1000/1000  [", 0), 0u) << lines[0];
}

TEST(ProgressTest, AForcedBarIsDrawnOnANonTerminalEightyColumnsWide) {
    Pipe pipe;
    {
        ProgressBar bar(10, {.fd = pipe.write_end.get(), .force = true, .unicode = false});
        bar.advance(10);
    }
    const std::string output = pipe.close_and_read();
    ASSERT_FALSE(output.empty());
    EXPECT_EQ(output.front(), '\r');
    EXPECT_EQ(output.back(), '\n');
    const std::string last = output.substr(output.rfind('\r') + 1);
    EXPECT_EQ(last.size(), 80u);  // 79 columns and the newline
    EXPECT_EQ(last.rfind("100% |#", 0), 0u) << last;
}

TEST(ProgressTest, RedrawsAreRateLimited) {
    Pipe pipe;
    std::size_t items = 0;
    const auto start = std::chrono::steady_clock::now();
    {
        ProgressBar bar(std::nullopt, {.fd = pipe.write_end.get(), .force = true});
        while (std::chrono::steady_clock::now() - start < 350ms) {
            bar.advance();
            ++items;
        }
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    const std::string output = pipe.close_and_read();
    const auto draws = static_cast<std::size_t>(std::count(output.begin(), output.end(), '\r'));
    // The first drawing, at most one per 100 ms after it, and the last.
    EXPECT_LE(draws, 2 + static_cast<std::size_t>(elapsed / 100ms));
    EXPECT_LT(draws, items);
}

TEST(ProgressTest, AdvanceFromSeveralThreadsCountsEveryItem) {
    Pipe pipe;
    std::string output;
    {
        ProgressBar bar(40000, {.fd = pipe.write_end.get(), .force = true});
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&bar] {
                for (int i = 0; i < 10000; ++i) bar.advance();
            });
        }
        for (auto& thread : threads) thread.join();
        EXPECT_EQ(bar.count(), 40000u);
    }
    EXPECT_NE(final_screen_line(pipe.close_and_read()).find("40000/40000"), std::string::npos);
}

// ---- Wrapping a range ----

TEST(ProgressTest, TheWrappedRangeIsAnInputView) {
    using Wrapped = decltype(mproc::progress(std::declval<std::vector<int>&>()));
    static_assert(std::ranges::input_range<Wrapped>);
    static_assert(std::ranges::view<Wrapped>);
    SUCCEED();
}

TEST(ProgressTest, WrappingAVectorYieldsTheSameElementsInOrder) {
    Pipe pipe;
    const std::vector<int> numbers{3, 1, 4, 1, 5, 9, 2, 6};
    std::vector<int> seen;
    for (int x : mproc::progress(numbers, {.fd = pipe.write_end.get()})) seen.push_back(x);
    EXPECT_EQ(seen, numbers);
}

TEST(ProgressTest, TheTotalOfASizedRangeIsItsSize) {
    Pipe pipe;
    const std::vector<int> numbers{1, 2, 3, 4, 5};
    for (int x : mproc::progress(numbers, {.fd = pipe.write_end.get(), .force = true})) (void)x;
    const std::string line = final_screen_line(pipe.close_and_read());
    EXPECT_EQ(line.rfind("100% |", 0), 0u) << line;
    EXPECT_NE(line.find(" 5/5  ["), std::string::npos) << line;
}

TEST(ProgressTest, AnUnsizedRangeShowsACount) {
    Pipe pipe;
    auto below_seven = std::views::iota(0) | std::views::take_while([](int i) { return i < 7; });
    for (int x : mproc::progress(below_seven, {.fd = pipe.write_end.get(), .force = true})) {
        (void)x;
    }
    EXPECT_EQ(final_screen_line(pipe.close_and_read()).rfind("7 it  [", 0), 0u);
}

TEST(ProgressTest, AGivenTotalStandsForTheSizeARangeCannotTell) {
    Pipe pipe;
    auto below_seven = std::views::iota(0) | std::views::take_while([](int i) { return i < 7; });
    for (int x : mproc::progress(below_seven, 7, {.fd = pipe.write_end.get(), .force = true})) {
        (void)x;
    }
    const std::string line = final_screen_line(pipe.close_and_read());
    EXPECT_EQ(line.rfind("100% |", 0), 0u) << line;
    EXPECT_NE(line.find(" 7/7  ["), std::string::npos) << line;
}

TEST(ProgressTest, TheLineEndsAsSoonAsTheLastElementIsRead) {
    Pipe pipe;
    const std::vector<int> numbers{1, 2, 3};
    auto wrapped = mproc::progress(numbers, {.fd = pipe.write_end.get(), .force = true});
    for (int x : wrapped) (void)x;
    // The view is still alive, so its destructor has not ended the line.
    const std::string output = pipe.read_available();
    ASSERT_FALSE(output.empty());
    EXPECT_EQ(output.back(), '\n');
    EXPECT_NE(final_screen_line(output).find("3/3"), std::string::npos);
}

TEST(ProgressTest, BreakingOutOfTheLoopStillEndsTheLine) {
    Pipe pipe;
    const std::vector<int> numbers(10, 0);
    int read = 0;
    for (int x : mproc::progress(numbers, {.fd = pipe.write_end.get(), .force = true})) {
        (void)x;
        // The fourth element is read, but the loop is not done with it: three are counted.
        if (++read == 4) break;
    }
    const std::string output = pipe.close_and_read();
    ASSERT_FALSE(output.empty());
    EXPECT_EQ(output.back(), '\n');
    const std::string line = final_screen_line(output);
    EXPECT_EQ(line.rfind(" 30% |", 0), 0u) << line;
    EXPECT_NE(line.find(" 3/10  ["), std::string::npos) << line;
}

TEST(ProgressTest, AnElementThatThrowsStillEndsTheBarLine) {
    Pipe pipe;
    const std::vector<int> numbers{0, 1, 2, 3, 4};
    auto fails_at_two = numbers | std::views::transform([](int x) {
                            if (x == 2) throw std::runtime_error("element 2 failed");
                            return x;
                        });
    const auto read_all = [&] {
        for (int x : mproc::progress(fails_at_two, {.fd = pipe.write_end.get(), .force = true})) {
            (void)x;
        }
    };
    EXPECT_THROW(read_all(), std::runtime_error);
    const std::string output = pipe.close_and_read();
    ASSERT_FALSE(output.empty());
    EXPECT_EQ(output.back(), '\n');
    EXPECT_NE(final_screen_line(output).find(" 2/5  ["), std::string::npos);
}

// ---- Under a terminal ----

TEST(ProgressTerminalTest, TheFinalScreenLineShowsEveryItemDone) {
    PseudoTerminal terminal(60);
    const std::vector<int> numbers(50, 1);
    int sum = 0;
    for (int x : mproc::progress(numbers, {.fd = terminal.terminal()})) sum += x;
    const std::string line = final_screen_line(terminal.close_and_read());
    EXPECT_EQ(sum, 50);
    EXPECT_NE(line.find("100%"), std::string::npos) << line;
    EXPECT_NE(line.find("50/50"), std::string::npos) << line;
}

TEST(ProgressTerminalTest, TheBarRedrawsInPlaceOnOneLine) {
    PseudoTerminal terminal(60);
    {
        ProgressBar bar(30, {.fd = terminal.terminal()});
        for (int i = 0; i < 30; ++i) {
            std::this_thread::sleep_for(10ms);
            bar.advance();
        }
    }
    const std::string output = terminal.close_and_read();
    EXPECT_GE(std::count(output.begin(), output.end(), '\r'), 2);
    EXPECT_EQ(shown_lines(output), 1u) << output;
}

TEST(ProgressTerminalTest, TheBarTakesTheTerminalsWidthUpToAHundredColumns) {
    const auto drawn_width = [](unsigned short columns) {
        PseudoTerminal terminal(columns);
        { ProgressBar bar(5, {.fd = terminal.terminal()}); }
        const auto lines = screen_lines(terminal.close_and_read());
        return mproc::detail::display_width(lines.front());
    };
    EXPECT_EQ(drawn_width(72), 71u);
    EXPECT_EQ(drawn_width(200), 100u);
}

TEST(ProgressTerminalTest, APoolsImapUnorderedResultsDriveTheBar) {
    // The pool first: its processes are forked now, and so never hold the terminal open.
    mproc::Pool pool(2);
    std::vector<int> xs(40);
    std::iota(xs.begin(), xs.end(), 0);
    PseudoTerminal terminal(80);
    long sum = 0;
    for (int r : mproc::progress(pool.imap_unordered(square, xs), xs.size(),
                                 {.label = "squares", .fd = terminal.terminal()})) {
        sum += r;
    }
    const std::string line = final_screen_line(terminal.close_and_read());
    EXPECT_EQ(sum, 20540);  // 0² + 1² + ... + 39²
    EXPECT_EQ(line.rfind("squares 100% |", 0), 0u) << line;
    EXPECT_NE(line.find("40/40"), std::string::npos) << line;
}

}  // namespace
