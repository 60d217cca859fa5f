#pragma once

// The task functions of the workloads, the C++ twins of those in python_baseline.py: the same
// work per call. They live in a file of their own so that the serial runs of primes_speedup call
// count_primes through a call the compiler cannot inline, just as the workers do.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace mproc_bench {

// square(x) = x * x; 64-bit, since Python's ints do not overflow at 1e6 squared.
std::int64_t square(std::int64_t x);

// The size of a byte vector (Python's len(b)).
std::size_t length(const std::vector<std::uint8_t>& bytes);

// The primes in [lo, hi) by trial division with every divisor 2, 3, 4, ... up to sqrt(k), as
// python_baseline.py's count_primes does: deliberately plain, pure CPU.
using PrimeRange = std::pair<std::int64_t, std::int64_t>;
std::int64_t count_primes(PrimeRange range);

// primes_speedup's work: the numbers below 400000 in 16 equal ranges.
std::vector<PrimeRange> prime_ranges();
// The primes below 400000.
inline constexpr std::int64_t primes_below_limit = 33860;

}  // namespace mproc_bench
