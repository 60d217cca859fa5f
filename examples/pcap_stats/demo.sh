#!/usr/bin/env bash
# pcap_stats demo: makes a synthetic data set (or takes your captures), analyses it serially
# and with the pool, checks that both give the same CSV, and prints both times and the speed-up.
#
#   demo.sh [--size BYTES[K|M|G]] [--files N] [--repeat N] [--bin DIR] [--keep DIR] [CAPTURE...]
#
#   --size   total size of the generated data set (default 400M, over --files files)
#   --files  how many files to generate (default 8)
#   --repeat runs of each mode, alternating; the fastest of each counts, as timeit does, since
#            other processes on the machine only ever add time (default 3)
#   --bin    where pcap_stats and pcap_generate are (default: build/release/examples/pcap_stats,
#            then build/dev/..., then PATH)
#   --keep   write the data set, CSVs and plots here and keep them (default: a temporary
#            directory, removed at the end)
#   CAPTURE  your own .pcap/.pcap.gz files: analysed instead of a generated data set
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
size=400M
files=8
repeat=3
bin=""
keep=""
captures=()
while (($#)); do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --files) files="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "demo.sh: unknown option $1" >&2; exit 1 ;;
    *) captures+=("$1"); shift ;;
  esac
done

if [[ -z "$bin" ]]; then
  for candidate in "$root/build/release/examples/pcap_stats" "$root/build/dev/examples/pcap_stats"; do
    if [[ -x "$candidate/pcap_stats" ]]; then bin="$candidate"; break; fi
  done
fi
if [[ -n "$bin" ]]; then
  pcap_stats="$bin/pcap_stats"; pcap_generate="$bin/pcap_generate"
else
  pcap_stats="$(command -v pcap_stats || true)"; pcap_generate="$(command -v pcap_generate || true)"
fi
if [[ ! -x "$pcap_stats" ]]; then
  echo "demo.sh: pcap_stats not found; build it: cmake --preset release && cmake --build --preset release --target pcap_stats pcap_generate" >&2
  exit 1
fi

if [[ -n "$keep" ]]; then
  work="$keep"; mkdir -p "$work"
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/pcap_stats_demo.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
fi

if ((${#captures[@]} == 0)); then
  total_bytes="$(numfmt --from=si "$size")"
  per_file=$((total_bytes / files))
  echo "Generating $files captures, $size in all, in $work ..."
  for ((i = 0; i < files; i++)); do
    "$pcap_generate" "$work/capture_$i.pcap" --size "$per_file" --seed "$((i + 1))" >/dev/null
    captures+=("$work/capture_$i.pcap")
  done
fi

# The serial run first also brings the files into the page cache, for both runs alike.
cat "${captures[@]}" >/dev/null 2>&1 || true
elapsed=0 run_status=0
measure() {  # runs a command; sets elapsed (seconds) and run_status
  local start end
  start=$(date +%s.%N)
  set +e; "$@"; run_status=$?; set -e
  end=$(date +%s.%N)
  elapsed=$(echo "$start $end" | awk '{printf "%.3f", $2 - $1}')
}
serial_s="" pool_s=""
fastest() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
for ((run = 0; run < repeat; run++)); do
  measure "$pcap_stats" --serial -o "$work/serial.csv" "${captures[@]}" 2>"$work/serial.err"
  serial_s=$(fastest "$serial_s" "$elapsed") serial_status=$run_status
  measure "$pcap_stats" -o "$work/pool.csv" "${captures[@]}" 2>"$work/pool.err"
  pool_s=$(fastest "$pool_s" "$elapsed") pool_status=$run_status
done
# The plots are drawn after the timing: gnuplot's time is not the analysis's.
"$pcap_stats" -o /dev/null --plots "$work/plots" "${captures[@]}" 2>"$work/plots.log" || true

# What pcap_stats said (skipped files, with the reasons), once.
cat "$work/pool.err" >&2
if ((serial_status == 1 || pool_status == 1)); then
  echo "demo.sh: pcap_stats failed" >&2; exit 1
fi
if ! cmp -s "$work/serial.csv" "$work/pool.csv"; then
  # Same up to the last printed digit of a moment is fine; anything else is a bug.
  python3 - "$work/serial.csv" "$work/pool.csv" <<'PY'
import csv, sys
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:3])
assert len(a) == len(b), "row counts differ"
for ra, rb in zip(a[1:], b[1:]):
    for x, y in zip(ra, rb):
        if x == y: continue
        fx, fy = float(x), float(y)
        assert abs(fx - fy) <= 1e-9 * max(abs(fx), abs(fy)), f"{ra[0]} window {ra[1]}: {x} != {y}"
PY
fi
echo "windows: $(($(wc -l <"$work/serial.csv") - 1)) rows, the same serially and with the pool"
echo "plots: $(find "$work/plots" -name '*.png' 2>/dev/null | wc -l) PNG files${keep:+ in $work/plots}"
echo "serial: $serial_s s (fastest of $repeat)"
echo "pool:   $pool_s s (fastest of $repeat, $(nproc) CPUs)"
awk -v s="$serial_s" -v p="$pool_s" 'BEGIN { printf "speed-up: %.2fx\n", s / p }'
exit "$pool_status"
