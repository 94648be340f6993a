#!/bin/sh
# Runs the cpu_bound example RUNS times (default 10) at each quantum given
# in milliseconds (default: 1 and 10), under the benchmark lock, and
# prints every first/last ratio and their median per quantum, and what
# equal turns of the same work would have given (the example's own
# replay of its recording: the ratio a perfect round-robin reaches).
#
#   examples/cpu_bound_runs.sh [RUNS] [QUANTUM_MS...]
set -eu
cd "$(dirname "$0")/.."
runs=${1:-10}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- 1 10
cargo build --release --example cpu_bound >/dev/null 2>&1
# Median of the numbers in $*.
median() {
    echo "$@" | tr ' ' '\n' | sort -n |
        awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
for q in "$@"; do
    ratios=""
    equal=""
    i=0
    while [ "$i" -lt "$runs" ]; do
        out=$(flock /tmp/bench.lock target/release/examples/cpu_bound "$q")
        r=$(echo "$out" | sed -n 's/^preemption.*first\/last = \([0-9.]*\).*/\1/p')
        e=$(echo "$out" | sed -n 's/.*would give \([0-9.]*\).*/\1/p')
        ratios="$ratios $r"
        equal="$equal $e"
        i=$((i + 1))
    done
    median=$(median $ratios)
    min=$(echo $ratios | tr ' ' '\n' | sort -n | head -1)
    emedian=$(median $equal)
    echo "quantum $q ms: first/last =$ratios; median $median, min $min"
    echo "  equal turns of the same work would give:$equal; median $emedian"
done
