#include "tasks.hpp"

#include <algorithm>

namespace mproc_bench {

std::int64_t square(std::int64_t x) {
    return x * x;
}

std::size_t length(const std::vector<std::uint8_t>& bytes) {
    return bytes.size();
}

std::int64_t count_primes(PrimeRange range) {
    std::int64_t count = 0;
    for (std::int64_t k = std::max<std::int64_t>(range.first, 2); k < range.second; ++k) {
        bool prime = true;
        for (std::int64_t i = 2; i * i <= k; ++i) {
            if (k % i == 0) {
                prime = false;
                break;
            }
        }
        count += prime ? 1 : 0;
    }
    return count;
}

std::vector<PrimeRange> prime_ranges() {
    constexpr std::int64_t limit = 400'000;
    constexpr std::int64_t ranges = 16;
    std::vector<PrimeRange> out;
    for (std::int64_t i = 0; i < ranges; ++i)
        out.emplace_back(i * limit / ranges, (i + 1) * limit / ranges);
    return out;
}

}  // namespace mproc_bench
