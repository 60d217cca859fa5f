"""Sets the runs of scripts/bench side by side: medians per row, the ratio mproc / Python, and
whether each goal of the performance issue is met in this run.

Usage: python3 bench/compare.py RESULTS_DIR COMPARE RUNS WORKERS
RESULTS_DIR holds one file per side and run: mproc.N and, when COMPARE is 1, python.N (lines
WORKLOAD VALUE UNIT) and limits.N (the output of physical_limits.c)."""
import glob
import os
import re
import statistics
import sys

# The goals of the performance issue, as minimum ratios mproc / Python.
RATIO_GOALS = {
    "map_small_default": 10,
    "map_small_chunk1": 20,
    "apply_async": 20,
    "queue_throughput": 20,
    "manager_dict_write": 20,
    "manager_dict_read": 20,
    "apply_roundtrip": 5,
    "large_arg_16mib": 5,
    "pool_start_fork": 5,
    "pool_start_spawn": 3,
    "pool_start_forkserver": 3,
}
PRIMES_SPEEDUP_GOAL = 1.9          # on 2 workers: a parallel efficiency of 95 %
PRIMES_THREADS_TOLERANCE = 0.97    # within 3 % of the same work on std::threads
ROUND_TRIP_TOLERANCE = 1.5         # an apply within 1.5x of a bare socketpair round trip


def medians(results, side):
    """{name: (median, unit)} over the runs of one side, in the order rows first appeared."""
    values, units = {}, {}
    for path in sorted(glob.glob(os.path.join(results, side + ".*"))):
        for line in open(path):
            parts = line.split()
            if len(parts) != 3:
                continue
            name, value, unit = parts
            values.setdefault(name, []).append(float(value))
            units[name] = unit
    return {name: (statistics.median(v), units[name]) for name, v in values.items()}


def socketpair_round_trip_us(results):
    """The median socketpair round trip of physical_limits.c over the runs, or None."""
    found = []
    for path in glob.glob(os.path.join(results, "limits.*")):
        match = re.search(r"unix socketpair round trip: ([0-9.]+) us", open(path).read())
        if match:
            found.append(float(match.group(1)))
    return statistics.median(found) if found else None


def fmt(value):
    return f"{value:.6g}"


def markdown(header, rows):
    """A Markdown table whose columns are also aligned: text left, numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = [i for i in range(len(header)) if all(
        re.fullmatch(r"[-+0-9.e]+x?", row[i]) for row in rows)]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in numeric else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if i in numeric else "-" * w
                             for i, w in enumerate(widths)) + " |"
    return "\n".join([line(header), rule, *map(line, rows)])


def goals(mproc, python, round_trip_us):
    """Rows of the goal table: goal, measured, met."""
    rows = []
    for name, goal in RATIO_GOALS.items():
        if name in mproc and name in python and python[name][0] > 0:
            ratio = mproc[name][0] / python[name][0]
            rows.append((f"{name} >= {goal}x Python", f"{ratio:.2f}x",
                         "yes" if ratio >= goal else "NO"))
    if "apply_roundtrip" in mproc and round_trip_us:
        apply_us = 1e6 / mproc["apply_roundtrip"][0]
        rows.append((f"apply_roundtrip within {ROUND_TRIP_TOLERANCE}x of a socketpair round trip",
                     f"{apply_us:.1f} us vs {round_trip_us:.1f} us",
                     "yes" if apply_us <= ROUND_TRIP_TOLERANCE * round_trip_us else "NO"))
    if "primes_speedup" in mproc:
        speedup = mproc["primes_speedup"][0]
        rows.append((f"primes_speedup >= {PRIMES_SPEEDUP_GOAL}", f"{speedup:.3f}",
                     "yes" if speedup >= PRIMES_SPEEDUP_GOAL else "NO"))
        if "primes_threads_speedup" in mproc:
            threads = mproc["primes_threads_speedup"][0]
            rows.append(("primes_speedup within 3% of std::thread pool",
                         f"{speedup:.3f} vs {threads:.3f} ({speedup / threads:.3f})",
                         "yes" if speedup >= PRIMES_THREADS_TOLERANCE * threads else "NO"))
    return rows


def main():
    results, compare, runs, workers = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
    mproc = medians(results, "mproc")
    if not compare:
        for name, (value, unit) in mproc.items():
            print(f"{name} {fmt(value)} {unit}")
        return

    python = medians(results, "python")
    what = f"median of {runs} runs" if runs > 1 else "one run"
    rows = [(name, unit, fmt(value), fmt(python[name][0]), f"{value / python[name][0]:.2f}")
            for name, (value, unit) in mproc.items() if name in python and python[name][0] > 0]
    print(f"mproc vs Python multiprocessing, {workers} workers, {what}; larger is better")
    print(markdown(("workload", "unit", "mproc", "Python", "mproc/Python"), rows))
    only_mproc = [name for name in mproc if name not in python]
    only_python = [name for name in python if name not in mproc]
    if only_mproc:
        print("\nmproc only: " + ", ".join(f"{n} {fmt(mproc[n][0])} {mproc[n][1]}"
                                           for n in only_mproc))
    if only_python:
        print("Python only (not measured by mproc_bench here): " + ", ".join(only_python))
    if workers == "2":
        print("\nGoals of the performance issue (2 workers)")
        print(markdown(("goal", "measured", "met"), goals(mproc, python,
                                                           socketpair_round_trip_us(results))))


if __name__ == "__main__":
    main()
