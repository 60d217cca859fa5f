#!/usr/bin/env bash
# The scaling report of the performance issue: how the per-task overhead of Pool::map grows with
# the number of workers and the number of tasks. Runs `mproc_bench --scaling` for every cell of
# the grid and writes a Markdown table and a PNG plot. It builds nothing: scripts/bench --scaling
# builds the release preset, then runs this.
# Usage: bench/scaling.sh [--bench PATH] [--table FILE] [--plot PNG] [--rounds N]
#                         [--workers LIST] [--tasks LIST]
#   --bench PATH    the mproc_bench to run; build/release/bench/mproc_bench by default
#   --table FILE    write the Markdown table to FILE; to stdout by default
#   --plot PNG      draw the plot there; docs/scaling.png by default
#   --rounds N      run the whole grid N times and report each cell's median; 3 by default
#   --workers LIST  worker counts, comma-separated; 1,2,4,8 by default
#   --tasks LIST    task counts, comma-separated; 1000,10000,100000,1000000 by default
# Progress goes to stderr. Relative default paths are from the repository root. The plot needs
# gnuplot (Debian's gnuplot-nox). Exit status: 1 if a cell or the plot failed, 2 for a bad
# command line.
set -euo pipefail
# Numbers with a decimal point, whatever the caller's locale.
export LC_ALL=C

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '6,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; }
usage_error() { echo "error: $1" >&2; usage; exit 2; }
# The value of an option given as "--opt value": $2, which must be there.
value_of() {
  if (($# < 2)); then usage_error "$1 needs a value"; fi
  printf '%s' "$2"
}

bench="$root/build/release/bench/mproc_bench"
table=""
plot="$root/docs/scaling.png"
rounds=3
workers_list="1,2,4,8"
tasks_list="1000,10000,100000,1000000"
while (($#)); do
  case "$1" in
    --bench) bench="$(value_of "$@")"; shift ;;
    --bench=*) bench="${1#*=}" ;;
    --table) table="$(value_of "$@")"; shift ;;
    --table=*) table="${1#*=}" ;;
    --plot) plot="$(value_of "$@")"; shift ;;
    --plot=*) plot="${1#*=}" ;;
    --rounds) rounds="$(value_of "$@")"; shift ;;
    --rounds=*) rounds="${1#*=}" ;;
    --workers) workers_list="$(value_of "$@")"; shift ;;
    --workers=*) workers_list="${1#*=}" ;;
    --tasks) tasks_list="$(value_of "$@")"; shift ;;
    --tasks=*) tasks_list="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done
for list in "$workers_list" "$tasks_list"; do
  if [[ ! "$list" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
    usage_error "--workers and --tasks need positive whole numbers separated by commas, not '$list'"
  fi
done
if [[ ! "$rounds" =~ ^[1-9][0-9]*$ ]]; then
  usage_error "--rounds needs a positive whole number, not '$rounds'"
fi
# In increasing order and once each, as the table's rows and columns and the plot's lines need.
mapfile -t workers < <(tr , '\n' <<<"$workers_list" | sort -nu)
mapfile -t tasks < <(tr , '\n' <<<"$tasks_list" | sort -nu)

# Checked before the grid runs, so that a missing tool does not waste minutes of measuring.
if [[ ! -x "$bench" ]]; then
  echo "error: no mproc_bench at $bench; build it (scripts/bench --scaling builds and runs" \
       "this script) or give its path with --bench" >&2
  exit 1
fi
if ! command -v gnuplot >/dev/null; then
  echo "error: gnuplot is missing (apt-get install gnuplot-nox)" >&2
  exit 1
fi

# 1000000 -> 1e6, for the table; other numbers as they are.
short_count() {
  if [[ "$1" =~ ^10+$ ]]; then printf '1e%d' $((${#1} - 1)); else printf '%s' "$1"; fi
}
load_average() { cut -d' ' -f1-3 /proc/loadavg; }
# plural 1 worker -> "1 worker"; plural 4 worker -> "4 workers".
plural() { printf '%s %s' "$1" "$2"; (($1 == 1)) || printf 's'; }

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
load_before="$(load_average)"
started=$SECONDS

# One line per measurement in $results/cells: MODE WORKERS TASKS NS. A cell that fails is
# reported and left out; the others still make the table. Whole rounds of the grid, rather than
# one cell repeated, so that a burst of load elsewhere on the machine hits one round of many
# cells rather than every round of one.
failed=0
cells=$((${#workers[@]} * ${#tasks[@]}))
for ((round = 1; round <= rounds; round++)); do
  cell=0
  for w in "${workers[@]}"; do
    for n in "${tasks[@]}"; do
      cell=$((cell + 1))
      if ! output="$("$bench" --scaling --workers "$w" --tasks "$n")"; then
        echo "error: mproc_bench --scaling --workers $w --tasks $n failed (see above)" >&2
        failed=1
        continue
      fi
      echo "[round $round/$rounds, $cell/$cells] $(plural "$w" worker)," \
           "$(short_count "$n") tasks: $(tr '\n' ' ' <<<"$output")" >&2
      awk -v w="$w" -v n="$n" 'NF == 3 && $3 == "ns/task" { print $1, w, n, $2 }' \
        <<<"$output" >>"$results/cells"
    done
  done
done
touch "$results/cells"
elapsed=$((SECONDS - started))
load_after="$(load_average)"

# The ns per task of one cell (mode, workers, tasks), the median over the rounds; nothing if
# that cell failed in every round.
cell_value() {
  awk -v m="$1" -v w="$2" -v n="$3" '$1 == m && $2 == w && $3 == n { print $4 }' "$results/cells" |
    sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The table: one row per chunking mode and task count, one column per worker count.
write_table() {
  echo "Per-task overhead of \`Pool(W).map(square, 0..N)\`, in ns per task: the wall time of one"
  echo "\`map()\` call on a warmed pool divided by N (\`square\` itself costs about 1 ns). Each cell"
  echo "is the median over $(plural "$rounds" round) of the grid; in each round, a fresh process"
  echo "gives the median of 5 to 101 repetitions (see bench/scaling.cpp). Lower is better."
  echo
  local cpu commit
  cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  commit="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs ($cpu, $(uname -sr));" \
       "source at commit $commit."
  echo "Load average before: $load_before; after: $load_after. Measuring took ${elapsed} s."
  echo
  local header="| chunk size | tasks |" rule="| --- | ---: |" mode n w value
  for w in "${workers[@]}"; do
    header+=" $(plural "$w" worker) |"
    rule+=" ---: |"
  done
  echo "$header"
  echo "$rule"
  for mode in map_default map_chunk1; do
    for n in "${tasks[@]}"; do
      printf '| %s | %s |' "$([[ $mode == map_default ]] && echo default || echo 1)" \
        "$(short_count "$n")"
      for w in "${workers[@]}"; do
        value="$(cell_value "$mode" "$w" "$n")"
        if [[ -z "$value" ]]; then printf ' failed |'; continue; fi
        # Three significant figures or so: the noise is larger than that.
        awk -v v="$value" 'BEGIN { printf(" %.*f |", v < 100 ? 1 : 0, v) }'
      done
      echo
    done
  done
}
if [[ -n "$table" ]]; then write_table >"$table"; else write_table; fi

# The plot, from one data file per mode (a row per task count, a column per worker count):
# per-task ns against tasks, both axes logarithmic (the values span orders of
# magnitude), one line per worker count, one panel per chunking mode.
for mode in map_default map_chunk1; do
  for n in "${tasks[@]}"; do
    printf '%s' "$n"
    for w in "${workers[@]}"; do
      value="$(cell_value "$mode" "$w" "$n")"
      printf ' %s' "${value:-NaN}"
    done
    echo
  done >"$results/$mode.dat"
done
mkdir -p "$(dirname "$plot")"
if ! gnuplot 2>"$results/gnuplot.err" <<EOF; then
set terminal pngcairo size 1200,500 font ",10"
set output "$results/plot.png"
set multiplot layout 1,2 title "mproc Pool.map(square) per-task overhead, $(nproc) CPUs, $(date -u '+%Y-%m-%d')"
set logscale xy
# Half a decade past the smallest and largest task counts, so that no point sits on the frame.
set xrange [${tasks[0]} / 3.0 : ${tasks[-1]} * 3.0]
set format x "10^{%L}"
set xlabel "tasks per map()"
set ylabel "ns per task (wall time / tasks)"
set grid xtics ytics mytics
set key top right
set datafile missing "NaN"
counts = "${workers[*]}"
label(i) = word(counts, i) . (word(counts, i) eq "1" ? " worker" : " workers")
set title "default chunk size"
plot for [i=1:words(counts)] "$results/map_default.dat" using 1:(column(i+1)) \
  with linespoints lw 2 pt 7 title label(i)
set title "chunk size 1"
plot for [i=1:words(counts)] "$results/map_chunk1.dat" using 1:(column(i+1)) \
  with linespoints lw 2 pt 7 title label(i)
unset multiplot
EOF
  echo "error: gnuplot failed to draw $plot:" >&2
  cat "$results/gnuplot.err" >&2
  failed=1
else
  # Drawn aside and moved, so that a failed run leaves the previous plot whole.
  mv "$results/plot.png" "$plot"
  echo "plot written to $plot" >&2
fi
exit "$failed"
